// The id shift of an overlay layer, as the peer's UpdateLayerIDMap does it: chown through a
// read-write mount (with metacopy=on overlayfs copies up metadata only, no file bodies; lowers
// stay as they are), unmount, then rotate the upper: diff becomes diff1 (an older diff1 becomes
// diff2, ...) and a fresh empty diff takes its place, so what is written into the layer afterwards
// stays apart from what the shift copied up.
// The mount has no index=on, as the peer's has none: the kernel refuses index=on (EBUSY) while a
// lower is another mount's upper, i.e. while the parent is mounted read-write (the peer's suite,
// idmaps.bats, makes children of mounted parents). Without the index, copying up one name of a
// lower hardlink does not link the others to it: the names are linked in the upper afterwards.
import fs from 'node:fs';
import path from 'node:path';
import { LayersError } from '../../lib/errors.ts';
import type { IdMappings } from '../../lib/idmap.ts';
import { native, type Timespec } from '../../lib/native.ts';
import { walkTree } from '../../lib/tar/tree.ts';
import { fsPath } from '../../lib/tar/names.ts';
import { isOverlayXattr } from '../../lib/tar/whiteout.ts';
import { chownTree, removeTree } from '../trees.ts';
import type { MountStack } from './mounts.ts';

export async function shiftLayer(
  layerDir: string,
  id: string,
  mounts: MountStack,
  metacopy: boolean,
  from: IdMappings | undefined,
  to: IdMappings | undefined,
): Promise<void> {
  // the upper of a live mount cannot be rotated (the peer renames it under the mount)
  if (mounts.isMounted(id)) throw new LayersError('EDRIVER', `overlay: layer ${id} is mounted; unmount it before shifting its owners`);
  const merged = path.join(layerDir, 'merged');
  const options = metacopy ? ['metacopy=on'] : [];
  fs.mkdirSync(merged, { recursive: true, mode: 0o700 });
  // the stack is seen in the parent's ids (`from`), whatever the layer's own mappings say; a
  // driver without the store's records knows no layer's ids, and sees them all as they are
  await mounts.mountAt(id, merged, { options }, mounts.layerMappings ? from : mounts.idmap(id));
  let links: string[][];
  try {
    links = hardlinkGroups(merged);
    await chownTree(merged, from, to);
    copyUpParents(merged, path.join(layerDir, 'diff'), links);
  } finally {
    await mounts.unmount(id);
  }
  linkUpHardlinks(path.join(layerDir, 'diff'), links);
  rotateUpper(layerDir, mounts.rotatedUppers(id).length);
}

/** The names of each multiply linked file of the tree, grouped by inode (before anything is copied up). */
function hardlinkGroups(merged: string): string[][] {
  const groups = new Map<bigint, string[]>();
  for (const node of walkTree(merged, { xattrs: false })) {
    if (!node.st.isFile() || node.st.nlink < 2n) continue;
    const names = groups.get(node.st.ino);
    if (names) names.push(node.rel);
    else groups.set(node.st.ino, [node.rel]);
  }
  return [...groups.values()].filter((g) => g.length > 1);
}

/**
 * Copy up (metadata only: their times set to what they are) the directories holding the names
 * linkUpHardlinks links, where the shift left them below (owners both mappings keep).
 */
function copyUpParents(merged: string, upper: string, groups: string[][]): void {
  for (const names of groups)
    for (const n of names)
      for (let dir = path.dirname(n); dir !== '.' && dir !== '/' && dir !== ''; dir = path.dirname(dir)) {
        if (fs.existsSync(fsPath(path.join(upper, dir)))) break;
        const p = path.join(merged, dir);
        const st = fs.lstatSync(fsPath(p), { bigint: true });
        native().lutimes(p, timespec(st.atimeNs), timespec(st.mtimeNs));
      }
}

/**
 * The walk shifts an inode once, through its first name, which copies that name up (metadata
 * only with metacopy=on); the other names of the lower inode stay below with the old owners. Each
 * is linked in the upper to the copied-up name, so every name shows the shifted owner and the
 * names stay one inode, as index=on would have made them.
 */
function linkUpHardlinks(upper: string, groups: string[][]): void {
  for (const names of groups) {
    const up = names.map((n) => fsPath(path.join(upper, n)));
    const first = up.find((p) => fs.existsSync(p));
    if (first === undefined) continue; // nothing shifted (an owner both mappings keep)
    for (const [i, p] of up.entries()) {
      if (p === first || fs.existsSync(p)) continue;
      // the directory keeps the times the copy-up gave it (the lower's)
      const dir = path.dirname(path.join(upper, names[i]));
      const st = fs.lstatSync(fsPath(dir), { bigint: true });
      fs.linkSync(first, p);
      native().lutimes(dir, timespec(st.atimeNs), timespec(st.mtimeNs));
    }
  }
}

/**
 * diff -> diff1 (diffN -> diffN+1 first) and a fresh empty diff, as the peer rotates them. The
 * fresh diff is the root a mount shows, so it takes the shifted root's owner, mode, xattrs and
 * times (the peer gives it the mode and the new mapping's root as owner: the same for a root
 * owned by container root). work is made anew: its index names inodes of the old upper.
 */
function rotateUpper(d: string, rotated: number): void {
  const diff = path.join(d, 'diff');
  const fresh = path.join(d, 'diff-rotating');
  const st = fs.lstatSync(diff, { bigint: true });
  removeTree(fresh); // left by a process that died here
  fs.mkdirSync(fresh, { mode: 0o700 });
  native().lchown(fresh, Number(st.uid), Number(st.gid));
  fs.chmodSync(fresh, Number(st.mode & 0o7777n));
  for (const name of native().llistxattr(diff)) {
    if (isOverlayXattr(name)) continue;
    const value = native().lgetxattr(diff, name);
    if (value !== undefined) native().lsetxattr(fresh, name, value);
  }
  for (let i = rotated + 1; i > 1; i--) fs.renameSync(path.join(d, `diff${i - 1}`), path.join(d, `diff${i}`));
  fs.renameSync(diff, path.join(d, 'diff1'));
  fs.renameSync(fresh, diff);
  native().lutimes(diff, timespec(st.atimeNs), timespec(st.mtimeNs));
  const work = path.join(d, 'work');
  removeTree(work);
  fs.mkdirSync(work, { mode: 0o700 });
  fs.chmodSync(work, 0o555);
  native().lchown(work, Number(st.uid), Number(st.gid));
}

function timespec(ns: bigint): Timespec {
  return { sec: Number(ns / 1_000_000_000n), nsec: Number(ns % 1_000_000_000n) };
}
