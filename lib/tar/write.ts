// Write an uncompressed tar to a file descriptor (docs/tar-engine.md): headers are encoded
// here, file bodies are moved by the native addon (copy_file_range / sendfile / buffered,
// picked per filesystem), so no file data passes through JS. Batches are double-buffered:
// while one batch is written on a worker thread the next one's headers are encoded.
import fs from 'node:fs';
import { native } from '../native.ts';
import type { CopyMethod, CopyRequest, TarSegment } from '../native.ts';
import type { OwnerMapper } from '../idmap.ts';
import { encodeHeader, END_OF_ARCHIVE, padding, sparseMapBlock } from './header.ts';
import { entryFromNode, hasLinks, inodeKey, walkTree, type TreeNode } from './tree.ts';
import type { SparseMap, TarEntry } from './types.ts';
import { nativeToTarError } from './native-errors.ts';

export interface TarItem {
  entry: TarEntry;
  /** file entries with a body: the file's path relative to the root given to writeTar */
  bodyPath?: string;
}

export interface WriteTarOptions {
  /** start each body of at least ALIGN_MIN_BODY bytes at a multiple of this many bytes (4096
   *  lets btrfs and xfs reflink bodies); such a tar is slightly larger and its digest differs
   *  from a 512-aligned one */
  align?: number;
  /** force a copy method (tests, benchmarks); default: picked per filesystem */
  method?: CopyRequest;
  /** offset of the tar in outFd; default: the fd's position */
  outOffset?: number;
  /** write files with holes as PAX 1.0 sparse entries (GNU tar's --sparse): only their data
   *  ranges are stored, and extractors that know the format (GNU tar, ours, Go's) make the
   *  holes again. Off by default: the tar of a file then does not depend on where it has holes */
  sparse?: boolean;
}

export interface WriteTarResult {
  /** body bytes by the method that moved them */
  bytes: Partial<Record<CopyMethod, number>>;
  /** tar bytes written, end blocks included */
  written: number;
  entries: number;
}

/** Header bytes per batch. Two batch buffers of this size are reused in turn (one being written
 *  by the native side while the next is filled), so memory stays flat however many files. */
const BATCH_BYTES = 4 << 20;
const BATCH_ENTRIES = 4096;
/** Bodies smaller than this are not aligned: a clone call costs more than copying them
 *  (measured on btrfs: 50 000 files of ~21 KB, all aligned, wrote 1.6x slower than unaligned). */
export const ALIGN_MIN_BODY = 64 << 10;
/** Files smaller than this are not looked at for holes: the lseek calls would cost more than
 *  the few blocks a hole in them could save. */
export const SPARSE_MIN_SIZE = 64 << 10;

/** The file's data ranges when it has holes worth leaving out of the tar, else undefined. */
function holesOf(rootFd: number, entry: TarEntry, bodyPath: string): SparseMap | undefined {
  const flat = native().dataRanges(rootFd, bodyPath);
  const map: SparseMap['map'] = [];
  let stored = 0;
  for (let i = 0; i < flat.length; i += 2) {
    // the file may have grown since it was listed: the entry's size is what the tar holds
    const offset = flat[i];
    const length = Math.min(flat[i + 1], entry.size - offset);
    if (length <= 0) break;
    map.push({ offset, length });
    stored += length;
  }
  return stored < entry.size ? { realSize: entry.size, map } : undefined;
}

export async function writeTar(root: string, items: Iterable<TarItem>, outFd: number, opts: WriteTarOptions = {}): Promise<WriteTarResult> {
  const rootFd = fs.openSync(root, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
  const result: WriteTarResult = { bytes: {}, written: 0, entries: 0 };
  const base = opts.outOffset ?? -1;
  const buffers = [Buffer.allocUnsafe(BATCH_BYTES), Buffer.allocUnsafe(BATCH_BYTES)];
  let data = buffers[0];
  let used = 0; // bytes of data filled
  let offset = 0; // bytes of tar planned so far
  let flushedTo = 0; // bytes of tar handed to the native side
  let segments: TarSegment[] = [];
  let pending: Promise<void> = Promise.resolve();

  const flush = async () => {
    if (segments.length === 0) return;
    const batch = data.subarray(0, used);
    const segs = segments;
    const at = base < 0 ? -1 : base + flushedTo;
    flushedTo = offset;
    segments = [];
    await pending; // writes go out in order, and the other buffer is free again
    data = data === buffers[0] ? buffers[1] : buffers[0];
    used = 0;
    pending = native()
      .writeSegments(outFd, batch, segs, { rootFd, outOffset: at, method: opts.method ?? 'auto' })
      .then(
        (r) => {
          for (const [m, n] of Object.entries(r.bytes)) result.bytes[m as CopyMethod] = (result.bytes[m as CopyMethod] ?? 0) + (n ?? 0);
          result.written += r.written;
        },
        (err) => {
          throw nativeToTarError(err, segs, 'writing the tar');
        },
      );
    pending.catch(() => undefined); // handled when awaited; until then it must not count as unhandled
  };
  /** append header bytes (or `zeros` zero bytes) to the batch, flushing first when it is full */
  const addBytes = async (b: Buffer | undefined, zeros = 0) => {
    const len = b ? b.length : zeros;
    if (used + len > data.length) await flush();
    if (len > data.length) data = Buffer.allocUnsafe(len); // a header with huge PAX records: a buffer of its own
    if (b) b.copy(data, used);
    else data.fill(0, used, used + len);
    // a body's padding and the next header are one segment: fewer objects for the native side to read
    const last = segments[segments.length - 1];
    if (last?.kind === 'bytes' && last.offset + last.length === used) last.length += len;
    else segments.push({ kind: 'bytes', offset: used, length: len });
    used += len;
    offset += len;
  };

  try {
    for (const item of items) {
      let { entry } = item;
      const { bodyPath } = item;
      if (entry.type === 'file' && entry.size > 0 && bodyPath === undefined) throw new Error(`writeTar: entry ${entry.name} has a body but no file`);
      const sparse = opts.sparse && entry.type === 'file' && entry.size >= SPARSE_MIN_SIZE ? holesOf(rootFd, entry, bodyPath!) : undefined;
      if (sparse) {
        // the header, then the PAX 1.0 map at the start of the body, then the data ranges only
        entry = { ...entry, size: sparse.map.reduce((n, r) => n + r.length, 0), sparse };
        await addBytes(encodeHeader(entry));
        await addBytes(sparseMapBlock(sparse));
      } else {
        const align = opts.align && entry.type === 'file' && entry.size >= ALIGN_MIN_BODY;
        await addBytes(encodeHeader(entry, align ? { alignTo: { offset, block: opts.align! } } : undefined));
      }
      if (entry.type === 'file' && entry.size > 0) {
        segments.push({ kind: 'file', path: bodyPath!, size: entry.size, ...(sparse && { sparse: sparse.map }) });
        offset += entry.size;
        const pad = padding(entry.size);
        if (pad) await addBytes(undefined, pad);
      }
      result.entries++;
      if (segments.length >= BATCH_ENTRIES) await flush();
    }
    await addBytes(END_OF_ARCHIVE);
    await flush();
    await pending;
  } finally {
    // a failed batch must not leave a write running on a closed fd
    await pending.catch(() => undefined);
    fs.closeSync(rootFd);
  }
  return result;
}

/** Items for every node of a tree below root, hardlinks after the first as link entries. */
export function* treeItems(root: string, mapOwner?: OwnerMapper): Generator<TarItem> {
  const seen = new Map<string, string>();
  for (const node of walkTree(root)) {
    const item = nodeItem(node, seen, mapOwner);
    if (item) yield item;
  }
}

/** The tar item for one node; `seen` maps inode -> first name, so later names become hardlinks. */
export function nodeItem(node: TreeNode, seen: Map<string, string>, mapOwner?: OwnerMapper): TarItem | undefined {
  const entry = entryFromNode(node, mapOwner);
  if (!entry) return undefined; // a socket: tar has no type for it
  if (entry.type === 'file' && hasLinks(node.st)) {
    const key = inodeKey(node.st);
    const first = seen.get(key);
    if (first !== undefined) {
      return { entry: { ...entry, type: 'hardlink', linkname: first, size: 0, xattrs: undefined } };
    }
    seen.set(key, node.rel);
  }
  return entry.type === 'file' ? { entry, bodyPath: node.rel } : { entry };
}
