// containers-storage's `copy`: files or a directory's contents from the host or a mounted layer
// into a mounted layer (or a host path), as the peer's CopyWithTar does it: through a tar, so
// owners are mapped out of the source's id mappings and into the target's, and every name lands
// beneath the target root (the extractor refuses `..` and symlink escapes). The tar is an
// unlinked temp file on the store's filesystem, written and read by the zero-copy tar engine.
import fs from 'node:fs';
import path from 'node:path';
import { LayersError } from '../errors.ts';
import { containerMapper, type IdMappings, type OwnerMapper } from '../idmap.ts';
import { native } from '../native.ts';
import { extractTar } from '../tar/extract.ts';
import { joinRel, statNode, walkTree } from '../tar/tree.ts';
import { nodeItem, writeTar, type TarItem } from '../tar/write.ts';
import { tempFile } from './input.ts';
import { abortError, checkAborted, type LongOperation } from './layers.ts';

/** One side of a copy: a directory tree (a layer's mount, or '/' for the host) and a path in it. */
export interface CopyEnd {
  root: string;
  path: string;
  /** the id mappings of the layer the root is (none for the host) */
  mappings?: IdMappings;
}

/**
 * The real path of `p` resolved inside root as if root were `/` (symlinks, absolute ones too,
 * and `..` stay inside it: RESOLVE_IN_ROOT), so a layer's symlink cannot make the copy read the
 * host's files.
 */
function resolveInRoot(root: string, p: string): string {
  const { O_PATH, RESOLVE_IN_ROOT, AT_FDCWD } = native().constants;
  const rootFd = native().openat2(AT_FDCWD, root, O_PATH | fs.constants.O_DIRECTORY, 0, 0);
  try {
    const fd = native().openat2(rootFd, p === '' ? '.' : p, O_PATH, 0, RESOLVE_IN_ROOT);
    try {
      return fs.readlinkSync(`/proc/self/fd/${fd}`);
    } finally {
      fs.closeSync(fd);
    }
  } finally {
    fs.closeSync(rootFd);
  }
}

/** A path of the target as a name beneath its root: `..` cannot climb above the root. */
function targetName(p: string): string {
  const name = path.posix.normalize('/' + p).replace(/^\/+/, '').replace(/\/+$/, '');
  return name === '' ? '.' : name;
}

/** Whether name exists beneath root (not following a symlink out of it). */
function existsBeneath(root: string, name: string): boolean {
  if (name === '.') return true;
  const { O_PATH, RESOLVE_BENEATH, AT_FDCWD } = native().constants;
  const rootFd = native().openat2(AT_FDCWD, root, O_PATH | fs.constants.O_DIRECTORY, 0, 0);
  try {
    fs.closeSync(native().openat2(rootFd, name, O_PATH | fs.constants.O_NOFOLLOW, 0, RESOLVE_BENEATH));
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  } finally {
    fs.closeSync(rootFd);
  }
}

/**
 * Copy `from` to `to` as the peer does: a directory's contents go into the target directory
 * (made, 0755 and owned by the target's root or the chown ids, when missing); a file becomes the
 * target path, or goes into it when the target path ends with '/'. Owners are the source's,
 * mapped back to container ids, unless chown (container ids of the target) replaces them; the
 * target's mappings then make them host ids.
 *
 * op.signal is checked for each source file as the tar is written and between entries as it is
 * extracted: an abort while writing leaves the target as it was; one while extracting leaves the
 * entries extracted so far, as any failed copy does (docs/api.md, "Progress and cancelling").
 * op.onProgress gets the extraction's bytes and entries of the tar, with its size and entry count.
 * Returns the tar's size and entry count.
 */
export async function copyPath(from: CopyEnd, to: CopyEnd, tmpDir: string, chown: { uid: number; gid: number } | undefined, op: LongOperation = {}): Promise<{ bytes: number; entries: number }> {
  const what = `copying ${from.path}`;
  checkAborted(op.signal, what);
  const real = resolveInRoot(from.root, from.path);
  const st = fs.statSync(real);
  const mapOwner: OwnerMapper | undefined = chown ? () => [chown.uid, chown.gid] : containerMapper(from.mappings);
  let dest = targetName(to.path);
  let srcRoot: string;
  const items: TarItem[] = [];
  const seen = new Map<string, string>();
  const rename = (item: TarItem, name: string): TarItem => {
    const entry = { ...item.entry, name };
    if (entry.type === 'hardlink') entry.linkname = joinRel(dest, entry.linkname!);
    return { ...item, entry };
  };
  let walk: Iterable<TarItem>;
  if (st.isDirectory()) {
    srcRoot = real;
    if (!existsBeneath(to.root, dest)) {
      const [uid, gid] = chown ? [chown.uid, chown.gid] : [0, 0];
      const now = Date.now();
      items.push({ entry: { name: dest, type: 'dir', mode: 0o755, uid, gid, size: 0, mtime: { sec: Math.floor(now / 1000), nsec: (now % 1000) * 1e6 } } });
    }
    walk = (function* () {
      for (const node of walkTree(real)) {
        checkAborted(op.signal, what);
        const item = nodeItem(node, seen, mapOwner);
        if (item) yield rename(item, joinRel(dest, node.rel));
      }
    })();
  } else {
    if (to.path.endsWith('/')) dest = joinRel(dest, path.basename(real));
    if (dest === '.') throw new LayersError('EUSAGE', `cannot copy the file ${from.path} over the root of the target; name a path in it`);
    srcRoot = path.dirname(real);
    const item = nodeItem(statNode(srcRoot, path.basename(real))!, seen, mapOwner);
    if (!item) throw new LayersError('EUSAGE', `${from.path} is a socket: a tar cannot hold it`);
    walk = [rename(item, dest)];
  }
  const fd = tempFile(tmpDir, 'copy');
  try {
    // whole files, never sparse entries: the copy engine keeps their holes in the temp tar and in
    // the target, and the extractor refuses a sparse entry larger than the target's filesystem
    const tar = await writeTar(srcRoot, (function* () {
      yield* items;
      yield* walk;
    })(), fd, { outOffset: 0, sparse: false });
    checkAborted(op.signal, what);
    const onProgress = op.onProgress && ((bytes: number, entries: number) => op.onProgress!({ bytes, totalBytes: tar.written, entries, totalEntries: tar.entries }));
    try {
      await extractTar(fd, to.root, { idMappings: to.mappings, whiteouts: 'keep', signal: op.signal, onProgress });
    } catch (err) {
      throw op.signal?.aborted ? abortError(op.signal, what) : err;
    }
    return { bytes: tar.written, entries: tar.entries };
  } finally {
    fs.closeSync(fd);
  }
}
