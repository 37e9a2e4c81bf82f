// The id shift of an overlay layer, as the peer's UpdateLayerIDMap does it: chown through a
// read-write mount (with metacopy=on overlayfs copies up metadata only, no file bodies; lowers
// stay as they are), unmount, then rotate the upper: diff becomes diff1 (an older diff1 becomes
// diff2, ...) and a fresh empty diff takes its place, so what is written into the layer afterwards
// stays apart from what the shift copied up.
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
  // index=on: copying up one name of a lower hardlink records the upper inode in the index,
  // so the walk (which shifts each inode once) shifts every name, and copying up the other
  // names links them to it instead of making copies
  const options = ['index=on'];
  if (metacopy) options.push('metacopy=on');
  fs.mkdirSync(merged, { recursive: true, mode: 0o700 });
  await mounts.mountAt(id, merged, { options });
  try {
    await chownTree(merged, from, to);
    copyUpHardlinks(merged);
  } finally {
    await mounts.unmount(id);
  }
  rotateUpper(layerDir, mounts.rotatedUppers(id).length);
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

/**
 * Copy up every name of a multiply linked file: setting its times to what they are is a change
 * of metadata, so with metacopy=on nothing but metadata is copied, and with index=on it is a link
 * to the inode already copied up. Without it, later mounts without the index would show the
 * names the walk did not touch with their lower, unshifted owners.
 */
function copyUpHardlinks(merged: string): void {
  for (const node of walkTree(merged, { xattrs: false })) {
    if (!node.st.isFile() || node.st.nlink < 2n) continue;
    const p = path.join(merged, node.rel);
    const st = fs.lstatSync(fsPath(p), { bigint: true });
    native().lutimes(p, timespec(st.atimeNs), timespec(st.mtimeNs));
  }
}

function timespec(ns: bigint): Timespec {
  return { sec: Number(ns / 1_000_000_000n), nsec: Number(ns % 1_000_000_000n) };
}
