// What the drivers share (docs/architecture.md, "Driver interface"): a two-tree diff, a tree copy with reflinks, a
// chown walk by id mappings, and applying a tar onto a full tree. Each is built on the tar
// engine (lib/tar) and the native apply batch, so there is one walk and one copy loop.
import fs from 'node:fs';
import path from 'node:path';
import { native } from '../../lib/native.ts';
import type { ApplyOp } from '../../lib/native.ts';
import { containerMapper, type IdMappings } from '../../lib/idmap.ts';
import { extractTar, type ExtractResult } from '../../lib/tar/extract.ts';
import { nodeItem, treeItems, writeTar, type TarItem, type WriteTarOptions } from '../../lib/tar/write.ts';
import { inodeKey, walkTree } from '../../lib/tar/tree.ts';
import { whiteoutName } from '../../lib/tar/whiteout.ts';
import { entryOp } from '../../lib/tar/ops.ts';
import { nativeToTarError } from '../../lib/tar/native-errors.ts';
import type { Change, DiffOptions } from '../driver.ts';
import { compareTrees, type OwnerMappings, type TreeChange } from './compare.ts';

export { compareTrees, type TreeChange };

export interface ApplyTarOptions {
  idMappings?: IdMappings;
  /** 'delete': whiteouts remove what they name (full-tree drivers); 'overlay': they become char 0/0 devices and opaque xattrs */
  whiteouts: 'delete' | 'overlay';
}

/** Extract the uncompressed tar on fd into layerDir. */
export function applyTar(layerDir: string, fd: number, opts: ApplyTarOptions): Promise<ExtractResult> {
  return extractTar(fd, layerDir, { whiteouts: opts.whiteouts, idMappings: opts.idMappings });
}

/** Tar items for the changes of layerDir against parentDir: deletions become AUFS whiteouts. */
export function* diffItems(layerDir: string, parentDir: string | undefined, opts: DiffOptions = {}): Generator<TarItem> {
  const mapOwner = containerMapper(opts.idMappings);
  if (!parentDir) return yield* treeItems(layerDir, mapOwner);
  const seen = new Map<string, string>();
  for (const c of compareTrees(layerDir, parentDir, ownerMappings(opts))) {
    if (c.kind === 'Delete') {
      // a fixed time, not "now": the same two trees always give the same tar
      yield { entry: { name: whiteoutName(c.rel), type: 'file', mode: 0o644, uid: 0, gid: 0, size: 0, mtime: { sec: 0, nsec: 0 } } };
      continue;
    }
    const item = nodeItem(c.node!, seen, mapOwner);
    if (item) yield item;
  }
}

/** Write the changes of layerDir against parentDir (undefined: everything) as a tar to fd. */
export async function treeDiff(
  layerDir: string,
  parentDir: string | undefined,
  fd: number,
  opts: DiffOptions & WriteTarOptions = {},
): Promise<void> {
  await writeTar(layerDir, diffItems(layerDir, parentDir, opts), fd, opts);
}

/** The two trees' mappings as the comparison takes them. */
function ownerMappings(opts: DiffOptions): OwnerMappings {
  return { layer: opts.idMappings, parent: opts.parentIdMappings };
}

/** The change list, sorted by path as the peer prints it. */
export async function treeChanges(layerDir: string, parentDir: string | undefined, opts: DiffOptions = {}): Promise<Change[]> {
  const out: Change[] = [];
  for (const c of compareTrees(layerDir, parentDir, ownerMappings(opts))) out.push({ path: '/' + c.rel, kind: c.kind });
  return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/** Bytes of file bodies that treeDiff would write, each inode counted once. */
export async function treeDiffSize(layerDir: string, parentDir: string | undefined, opts: DiffOptions = {}): Promise<number> {
  const seen = new Set<string>();
  let size = 0;
  for (const c of compareTrees(layerDir, parentDir, ownerMappings(opts))) {
    const st = c.node?.st;
    if (!st || !st.isFile()) continue;
    const key = inodeKey(st);
    if (seen.has(key)) continue;
    seen.add(key);
    size += Number(st.size);
  }
  return size;
}

/** Files copied per native batch: each holds an open source fd until its batch is done. */
const COPY_BATCH_FILES = 1024;

export interface CopyTreeResult {
  /** paths that cannot be copied (sockets), left out */
  skipped: string[];
}

/**
 * Copy the contents of src into the existing directory dst, keeping owners, modes, times (with
 * nanoseconds), xattrs, hardlinks, devices and fifos. File data goes through the same native
 * apply batch as tar extraction, with source and destination offsets at 0, so btrfs and xfs
 * reflink it. trusted.overlay.* attributes are not copied. Directory times are set last.
 */
export async function copyTree(src: string, dst: string): Promise<CopyTreeResult> {
  const dstFd = fs.openSync(dst, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
  const skipped: string[] = [];
  const dirTimes: ApplyOp[] = [];
  const seen = new Map<string, string>();
  let ops: ApplyOp[] = [];
  let fds: number[] = [];
  let pending: Promise<void> = Promise.resolve();
  const run = async () => {
    const batch = ops;
    const open = fds;
    ops = [];
    fds = [];
    await pending;
    pending = native().applyBatch(dstFd, batch).then(
      () => open.forEach((fd) => fs.closeSync(fd)),
      (err) => {
        open.forEach((fd) => fs.closeSync(fd));
        throw nativeToTarError(err, batch, `copying ${src} to ${dst}`);
      },
    );
    pending.catch(() => undefined);
  };
  try {
    let root: TarItem | undefined;
    for (const node of walkTree(src, { includeRoot: true })) {
      const item = nodeItem(node, seen);
      if (!item) {
        skipped.push(node.rel);
        continue;
      }
      const e = item.entry;
      if (node.rel === '.') {
        root = item;
        continue;
      }
      let body;
      if (e.type === 'file') {
        const fd = fs.openSync(path.join(src, node.rel), fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
        fds.push(fd);
        body = { srcFd: fd, srcOffset: 0 };
      }
      ops.push(entryOp(e, e.uid, e.gid, body));
      if (e.type === 'dir') dirTimes.push({ op: 'times', path: e.name, mtime: e.mtime });
      if (fds.length >= COPY_BATCH_FILES || ops.length >= 4 * COPY_BATCH_FILES) await run();
    }
    ops.push(...dirTimes);
    await run();
    await pending;
    if (root) setRootMeta(dst, root);
  } finally {
    await pending.catch(() => undefined);
    for (const fd of fds) fs.closeSync(fd);
    fs.closeSync(dstFd);
  }
  return { skipped };
}

/** The root of a tree is the driver's directory: no op can replace it, so set its metadata directly. */
function setRootMeta(dst: string, item: TarItem): void {
  const e = item.entry;
  native().lchown(dst, e.uid, e.gid);
  fs.chmodSync(dst, e.mode);
  for (const [k, v] of e.xattrs ?? []) if (!k.startsWith('trusted.overlay.')) native().lsetxattr(dst, k, v);
  native().lutimes(dst, e.mtime, e.mtime);
}

/**
 * Shift every owner in dir from one mapping to another (host ids under `from` -> the same
 * container ids -> host ids under `to`). An id that has no place in `to` (or was outside `from`)
 * becomes the overflow id 65534, as the kernel would show it, and is counted. chown clears
 * setuid/setgid bits and file capabilities, so both are put back. The walk and the chowns run
 * in native code on a worker thread (`native/shift.cc`): one call for the tree, as chown -R.
 */
export async function chownTree(dir: string, from: IdMappings | undefined, to: IdMappings | undefined): Promise<{ overflowed: number }> {
  const overflowed = await native().shiftOwners(dir, from?.uidmap ?? [], from?.gidmap ?? [], to?.uidmap ?? [], to?.gidmap ?? []);
  return { overflowed };
}
