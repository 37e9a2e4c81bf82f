// Whole-tree operations several drivers share: copy a tree (reflinked where the filesystem can),
// shift its owners by id mappings, remove it. The copy goes through the native apply batch with
// the tar engine's entry ops (lib/tar/ops.ts), so there is one copy loop for copies and extraction.
import fs from 'node:fs';
import path from 'node:path';
import { LayersError } from '../lib/errors.ts';
import { native } from '../lib/native.ts';
import type { ApplyOp } from '../lib/native.ts';
import type { IdMappings } from '../lib/idmap.ts';
import { nodeItem, type TarItem } from '../lib/tar/write.ts';
import { walkTree } from '../lib/tar/tree.ts';
import { isOverlayXattr } from '../lib/tar/whiteout.ts';
import { entryOp, givableOwners } from '../lib/tar/ops.ts';
import { nativeToTarError } from '../lib/tar/native-errors.ts';
import { fsPath } from '../lib/tar/names.ts';

/**
 * rm -r that also gets through directories without write permission (a base layer's root is
 * 0555; an unprivileged owner cannot unlink inside it until it is made writable).
 */
export function removeTree(dir: string): void {
  try {
    fs.rmSync(dir, { recursive: true, force: true });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EACCES' && code !== 'EPERM') throw err;
    makeDirsWritable(dir);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function makeDirsWritable(dir: string): void {
  const st = fs.lstatSync(dir);
  if (!st.isDirectory()) return;
  fs.chmodSync(dir, (st.mode & 0o7777) | 0o700);
  for (const name of fs.readdirSync(dir)) makeDirsWritable(path.join(dir, name));
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
export async function copyTree(src: string, dst: string, opts: { ignoreChownErrors?: boolean } = {}): Promise<CopyTreeResult> {
  const skipped: string[] = [];
  const seen = new Map<string, string>();
  function* items(): Generator<TarItem> {
    for (const node of walkTree(src, { includeRoot: true })) {
      const item = nodeItem(node, seen);
      if (item) yield item;
      else skipped.push(node.rel);
    }
  }
  await copyItems(src, items(), dst, opts);
  return { skipped };
}

/**
 * Make the items in dst, bodies cloned or copied from the files they name under src (the tree
 * copy's engine: copyTree, and rechunk's new layers, lib/rechunk/rechunk.ts). The item named '.'
 * gives dst's own metadata. Directory times are set last.
 */
export async function copyItems(src: string, items: Iterable<TarItem>, dst: string, opts: { ignoreChownErrors?: boolean } = {}): Promise<void> {
  const givable = opts.ignoreChownErrors ? givableOwners() : undefined;
  const dstFd = fs.openSync(dst, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
  const dirTimes: ApplyOp[] = [];
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
    for (const item of items) {
      const e = item.entry;
      if (e.name === '.') {
        root = item;
        continue;
      }
      let body;
      if (e.type === 'file') {
        const from = path.join(src, item.bodyPath ?? e.name);
        // not blocking, and still a regular file: a FIFO put where the walk saw a file would
        // otherwise block the open, and the store lock with it, for ever
        const fd = fs.openSync(fsPath(from), fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
        fds.push(fd);
        if (!fs.fstatSync(fd).isFile())
          throw new LayersError('EINPUT', `${from}: not a regular file any more (changed since it was listed)`);
        body = { srcFd: fd, srcOffset: 0 };
      }
      ops.push(entryOp(e, ...(givable ? givable(e.uid, e.gid) : ([e.uid, e.gid] as const)), body));
      if (e.type === 'dir') dirTimes.push({ op: 'times', path: e.name, mtime: e.mtime });
      if (fds.length >= COPY_BATCH_FILES || ops.length >= 4 * COPY_BATCH_FILES) await run();
    }
    ops.push(...dirTimes);
    await run();
    await pending;
    if (root) setRootMeta(dst, root, givable);
  } finally {
    await pending.catch(() => undefined);
    for (const fd of fds) fs.closeSync(fd);
    fs.closeSync(dstFd);
  }
}

/** The root of a tree is the driver's directory: no op can replace it, so set its metadata directly. */
function setRootMeta(dst: string, item: TarItem, givable?: (uid: number, gid: number) => [number, number]): void {
  const e = item.entry;
  native().lchown(dst, ...(givable ? givable(e.uid, e.gid) : ([e.uid, e.gid] as const)));
  fs.chmodSync(dst, e.mode);
  for (const [k, v] of e.xattrs ?? []) if (!isOverlayXattr(k)) native().lsetxattr(dst, k, v);
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
