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
   *  from a 512-aligned one. Aligned in the file: relative to outOffset when given (a section
   *  appended to a tar, lib/tar/sections.ts) */
  align?: number;
  /** with align: the smallest body aligned (default ALIGN_MIN_BODY); rechunk aligns every body of
   *  a block or more, as it is cloned twice and a copy would cost space (lib/rechunk/rechunk.ts) */
  alignMinBody?: number;
  /** force a copy method (tests, benchmarks); default: picked per filesystem */
  method?: CopyRequest;
  /** offset of the tar in outFd; default: the fd's position */
  outOffset?: number;
  /** which files (of SPARSE_MIN_SIZE or more) become PAX 1.0 sparse entries: only their data
   *  ranges are stored, and extractors that know the format (GNU tar, ours, Go's) make the holes
   *  again. true: every file with a hole (GNU tar's --sparse); false: none, every byte written
   *  (as the peer does); unset: those whose holes are most of them (MOSTLY_HOLES), so that a
   *  disk image of a few MiB of data in 100 GiB of holes is not written as 100 GiB of zeros
   *  (docs/tar-engine.md, "Sparse files") */
  sparse?: boolean;
  /** false: leave out the end-of-archive blocks, for a tar more sections follow (sections.ts) */
  endOfArchive?: boolean;
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

/** By default a file becomes a sparse entry when its data is at most this share of its size. */
export const MOSTLY_HOLES = 0.5;

/** The file's data ranges when it has holes worth leaving out of the tar (any hole, or with
 *  `mostly`, holes that are most of it), else undefined. */
function holesOf(rootFd: number, entry: TarEntry, bodyPath: string, mostly: boolean): SparseMap | undefined {
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
  const worth = mostly ? stored <= entry.size * MOSTLY_HOLES : stored < entry.size;
  return worth ? { realSize: entry.size, map } : undefined;
}

/**
 * A tar written through the native segment writer in batches: header bytes go into one of two
 * fixed buffers while the native side writes the other, bodies are file segments read by the
 * addon, so memory stays flat whatever the tar's size. Shared by writeTar and the tar-split
 * reassembly (tar-split.ts, assembleTar).
 */
export class SegmentBatcher {
  /** bytes of tar planned so far */
  planned = 0;
  readonly bytes: Partial<Record<CopyMethod, number>> = {};
  written = 0;
  private readonly buffers = [Buffer.allocUnsafe(BATCH_BYTES), Buffer.allocUnsafe(BATCH_BYTES)];
  private data = this.buffers[0];
  private used = 0; // bytes of data filled
  private flushedTo = 0; // bytes of tar handed to the native side
  private segments: TarSegment[] = [];
  private pending: Promise<void> = Promise.resolve();

  constructor(
    private readonly outFd: number,
    private readonly rootFd: number,
    private readonly opts: { outOffset?: number; method?: CopyRequest; doing: string; verifyAfterNs?: bigint },
  ) {}

  get segmentCount(): number {
    return this.segments.length;
  }

  async flush(): Promise<void> {
    if (this.segments.length === 0) return;
    const batch = this.data.subarray(0, this.used);
    const segs = this.segments;
    const base = this.opts.outOffset ?? -1;
    const at = base < 0 ? -1 : base + this.flushedTo;
    this.flushedTo = this.planned;
    this.segments = [];
    await this.pending; // writes go out in order, and the other buffer is free again
    this.data = this.data === this.buffers[0] ? this.buffers[1] : this.buffers[0];
    this.used = 0;
    this.pending = native()
      .writeSegments(this.outFd, batch, segs, { rootFd: this.rootFd, outOffset: at, method: this.opts.method ?? 'auto', verifyAfterNs: this.opts.verifyAfterNs })
      .then(
        (r) => {
          for (const [m, n] of Object.entries(r.bytes)) this.bytes[m as CopyMethod] = (this.bytes[m as CopyMethod] ?? 0) + (n ?? 0);
          this.written += r.written;
        },
        (err) => {
          // the segment that failed, for a caller that explains it (assembleTar: which file changed)
          const index = (err as { index?: unknown } | null)?.index;
          const segment = typeof index === 'number' ? segs[index] : undefined;
          throw Object.assign(nativeToTarError(err, segs, this.opts.doing), { segment });
        },
      );
    this.pending.catch(() => undefined); // handled when awaited; until then it must not count as unhandled
  }

  /** append bytes (or `zeros` zero bytes) to the batch, flushing first when it is full */
  async addBytes(b: Buffer | undefined, zeros = 0): Promise<void> {
    const len = b ? b.length : zeros;
    if (len === 0) return;
    if (this.used + len > this.data.length) await this.flush();
    if (len > this.data.length) this.data = Buffer.allocUnsafe(len); // huge PAX records: a buffer of its own
    if (b) b.copy(this.data, this.used);
    else this.data.fill(0, this.used, this.used + len);
    // a body's padding and the next header are one segment: fewer objects for the native side to read
    const last = this.segments[this.segments.length - 1];
    if (last?.kind === 'bytes' && last.offset + last.length === this.used) last.length += len;
    else this.segments.push({ kind: 'bytes', offset: this.used, length: len });
    this.used += len;
    this.planned += len;
  }

  /** a body: `size` bytes of the file at path (relative to the root) */
  addFile(seg: TarSegment & { kind: 'file' }): void {
    this.segments.push(seg);
    this.planned += seg.size;
  }

  /** the last batch written */
  async finish(): Promise<void> {
    await this.flush();
    await this.pending;
  }

  /** after a failure: no write may still run on a descriptor the caller closes */
  async settle(): Promise<void> {
    await this.pending.catch(() => undefined);
  }
}

export async function writeTar(root: string, items: Iterable<TarItem>, outFd: number, opts: WriteTarOptions = {}): Promise<WriteTarResult> {
  const rootFd = fs.openSync(root, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
  const out = new SegmentBatcher(outFd, rootFd, { outOffset: opts.outOffset, method: opts.method, doing: 'writing the tar' });
  let entries = 0;
  try {
    for (const item of items) {
      let { entry } = item;
      const { bodyPath } = item;
      if (entry.type === 'file' && entry.size > 0 && bodyPath === undefined) throw new Error(`writeTar: entry ${entry.name} has a body but no file`);
      const sparse = opts.sparse !== false && entry.type === 'file' && entry.size >= SPARSE_MIN_SIZE ? holesOf(rootFd, entry, bodyPath!, opts.sparse === undefined) : undefined;
      if (sparse) {
        // the header, then the PAX 1.0 map at the start of the body, then the data ranges only
        entry = { ...entry, size: sparse.map.reduce((n, r) => n + r.length, 0), sparse };
        await out.addBytes(encodeHeader(entry));
        await out.addBytes(sparseMapBlock(sparse));
      } else {
        const align = opts.align && entry.type === 'file' && entry.size >= (opts.alignMinBody ?? ALIGN_MIN_BODY);
        await out.addBytes(encodeHeader(entry, align ? { alignTo: { offset: (opts.outOffset ?? 0) + out.planned, block: opts.align! } } : undefined));
      }
      if (entry.type === 'file' && entry.size > 0) {
        out.addFile({ kind: 'file', path: bodyPath!, size: entry.size, ...(sparse && { sparse: sparse.map }) });
        await out.addBytes(undefined, padding(entry.size));
      }
      entries++;
      if (out.segmentCount >= BATCH_ENTRIES) await out.flush();
    }
    if (opts.endOfArchive !== false) await out.addBytes(END_OF_ARCHIVE);
    await out.finish();
  } finally {
    await out.settle();
    fs.closeSync(rootFd);
  }
  return { bytes: out.bytes, written: out.written, entries };
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
