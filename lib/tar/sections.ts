// One tar stream, many sections (docs/tar-engine.md, "Sections"): a writer the caller keeps open
// and appends sections to, each under a name prefix (a tree, single files, or another tar such as
// a layer's diff), closed once with the end-of-archive blocks; and the view extractTar takes to
// read only one section of a stream, its names without the prefix, with the digest and size the
// section would have as a tar of its own.
import fs from 'node:fs';
import path from 'node:path';
import { native } from '../native.ts';
import type { CopyMethod, Sha256 } from '../native.ts';
import { encodeHeader, END_OF_ARCHIVE, padding, readEntry, sparseMapBlock } from './header.ts';
import { FileSource } from './source.ts';
import { TarError } from './errors.ts';
import { statNode } from './tree.ts';
import { nodeItem, SegmentBatcher, treeItems, writeTar, type TarItem } from './write.ts';
import type { ReadEntry, TarEntry } from './types.ts';

/** A section prefix as entry names carry it: no leading or trailing '/', no '.' or '..' parts. */
export function normalizePrefix(prefix: string): string {
  const p = prefix.replace(/^\/+|\/+$/g, '');
  const parts = p.split('/');
  if (p === '' || parts.some((s) => s === '' || s === '.' || s === '..') || p.includes('\0'))
    throw new TarError('ETARPATH', `invalid section prefix "${prefix}": one or more names joined by '/', without '.' or '..'`, prefix);
  return p;
}

/** The name under the prefix ('.' for the prefix itself), or undefined when outside it. */
export function stripPrefix(prefix: string, name: string): string | undefined {
  if (name === prefix) return '.';
  return name.startsWith(prefix + '/') ? name.slice(prefix.length + 1) : undefined;
}

function addPrefix(prefix: string, name: string): string {
  return name === '.' ? prefix : `${prefix}/${name}`;
}

/** The entry under the prefix: its name, and a hardlink's target (a name in the same tar). */
function prefixed(prefix: string, entry: TarEntry): TarEntry {
  const e = { ...entry, name: addPrefix(prefix, entry.name) };
  if (e.type === 'hardlink') e.linkname = addPrefix(prefix, entry.linkname!);
  return e;
}

/**
 * Where the end-of-archive blocks of the tar in fd start: the headers are walked and every
 * body passed over by its size (no body byte is read). An empty file is an empty tar (0).
 */
export function endOfArchiveOffset(fd: number): number {
  const src = new FileSource(fd, 0);
  let end = 0;
  for (let e = readEntry(src); e; e = readEntry(src)) {
    src.skip(e.size + padding(e.size), e.name);
    end = src.position;
  }
  return end;
}

/** Host files have no digest to reproduce: their bodies are block-aligned for cloning. */
const HOST_ALIGN = 4096;

export interface AppendResult {
  /** tar bytes this section added */
  written: number;
  entries: number;
  bytes: Partial<Record<CopyMethod, number>>;
}

/**
 * A tar kept open while sections are appended, each under its own name prefix; `close` writes
 * the end-of-archive blocks once. On a regular file every write is positional, starting where the
 * existing tar's end blocks were (`append`), so an append rewrites only those; on a pipe the
 * sections follow one another. Bodies move as in writeTar (copy_file_range, sendfile).
 */
export class TarAppender {
  /** bytes of tar written so far (from the start of the file when it is one) */
  private offset: number | undefined;
  private closed = false;

  private constructor(
    readonly fd: number,
    start: number | undefined,
    private readonly ownsFd: boolean,
  ) {
    this.offset = start;
  }

  /** A tar file: created (or emptied), or with `append` opened after its last entry. */
  static open(file: string, opts: { append?: boolean } = {}): TarAppender {
    let fd: number;
    try {
      fd = fs.openSync(file, opts.append ? fs.constants.O_RDWR | fs.constants.O_CREAT : 'w', 0o644);
    } catch (err) {
      throw new TarError('ETARPATH', `cannot open ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, file);
    }
    try {
      return new TarAppender(fd, opts.append ? endOfArchiveOffset(fd) : 0, true);
    } catch (err) {
      fs.closeSync(fd);
      throw err;
    }
  }

  /** An fd the caller keeps and closes: a pipe or socket, or a regular file appended to at its end. */
  static onFd(fd: number): TarAppender {
    // a regular file is appended to at its end (the caller gives a new or emptied one)
    const st = fs.fstatSync(fd);
    return new TarAppender(fd, st.isFile() ? st.size : undefined, false);
  }

  private async write(root: string, items: Iterable<TarItem>, align: number): Promise<AppendResult> {
    if (this.closed) throw new Error('TarAppender: closed');
    const r = await writeTar(root, items, this.fd, { outOffset: this.offset, endOfArchive: false, align: align || undefined });
    if (this.offset !== undefined) this.offset += r.written;
    return { written: r.written, entries: r.entries, bytes: r.bytes };
  }

  /**
   * Every node of the tree at root (root itself as the prefix's directory), under prefix. Bodies
   * of 64 KiB or more start on a 4 KiB boundary by default (`align`, writeTar's: a PAX comment
   * pads the header), so btrfs and xfs clone them into the tar and out of it; 0 for none.
   */
  async addTree(root: string, prefix: string, opts: { align?: number } = {}): Promise<AppendResult> {
    const p = normalizePrefix(prefix);
    const top = statNode(root, '.');
    if (!top?.st.isDirectory()) throw new TarError('ETARPATH', `${root}: not a directory`, root);
    return this.write(root, withRoot(root, p), opts.align ?? HOST_ALIGN);
  }

  /** Single files (or symlinks, devices, empty directories), each as prefix/<its base name>. */
  async addFiles(files: string[], prefix: string, opts: { align?: number } = {}): Promise<AppendResult> {
    const p = normalizePrefix(prefix);
    const total: AppendResult = { written: 0, entries: 0, bytes: {} };
    for (const file of files) {
      const dir = path.dirname(path.resolve(file));
      const node = statNode(dir, path.basename(file));
      if (!node) throw new TarError('ETARPATH', `${file}: no such file`, file);
      const item = nodeItem(node, new Map());
      if (!item) throw new TarError('ETARFORMAT', `${file}: a socket has no tar form`, file);
      const r = await this.write(dir, [{ ...item, entry: prefixed(p, item.entry) }], opts.align ?? HOST_ALIGN);
      total.written += r.written;
      total.entries += r.entries;
      for (const [m, n] of Object.entries(r.bytes)) total.bytes[m as CopyMethod] = (total.bytes[m as CopyMethod] ?? 0) + (n ?? 0);
    }
    return total;
  }

  /**
   * Every entry of the tar in tarFd (a regular file, read from offset 0 up to its end blocks)
   * under prefix: headers re-encoded with the new names, bodies copied from their offsets in
   * tarFd by the native writer (copy_file_range where the filesystems allow).
   */
  async addTar(tarFd: number, prefix: string): Promise<AppendResult> {
    if (this.closed) throw new Error('TarAppender: closed');
    const p = normalizePrefix(prefix);
    const src = new FileSource(tarFd, 0);
    const rootFd = fs.openSync('/', fs.constants.O_RDONLY | fs.constants.O_DIRECTORY); // bodies come from tarFd, never by path
    const out = new SegmentBatcher(this.fd, rootFd, { outOffset: this.offset, doing: 'appending a section' });
    let entries = 0;
    try {
      for (let e = readEntry(src); e; e = readEntry(src)) {
        const entry = prefixed(p, plainEntry(e));
        await out.addBytes(encodeHeader(entry));
        if (e.sparse) await out.addBytes(sparseMapBlock(e.sparse));
        if (e.type === 'file' && e.size > 0) {
          // one range of tarFd: the body's offset in the inner tar
          out.addFile({ kind: 'file', path: entry.name, fd: tarFd, size: e.size, sparse: [{ offset: e.dataOffset, length: e.size }] });
          await out.addBytes(undefined, padding(e.size));
        }
        src.skip(e.size + padding(e.size), e.name);
        entries++;
      }
      await out.finish();
    } finally {
      await out.settle();
      fs.closeSync(rootFd);
    }
    if (this.offset !== undefined) this.offset += out.written;
    return { written: out.written, entries, bytes: out.bytes };
  }

  /** The end-of-archive blocks, once; a file is cut after them (an appended tar may have had
   *  padding to a blocking factor there). Closes the fd when the appender opened it. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      if (this.offset === undefined) writeAll(this.fd, END_OF_ARCHIVE, null);
      else {
        writeAll(this.fd, END_OF_ARCHIVE, this.offset);
        this.offset += END_OF_ARCHIVE.length;
        fs.ftruncateSync(this.fd, this.offset);
      }
    } finally {
      if (this.ownsFd) fs.closeSync(this.fd);
    }
  }

  /** Without end blocks (after a failure): the fd is closed when the appender opened it. */
  abort(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.ownsFd) fs.closeSync(this.fd);
  }
}

function writeAll(fd: number, b: Buffer, at: number | null): void {
  for (let done = 0; done < b.length; ) done += fs.writeSync(fd, b, done, b.length - done, at === null ? null : at + done);
}

/** The tree's items with the root as the prefix's directory entry and every name under prefix. */
function* withRoot(root: string, prefix: string): Generator<TarItem> {
  const top = nodeItem(statNode(root, '.')!, new Map());
  if (top) yield { entry: prefixed(prefix, top.entry) };
  for (const item of treeItems(root)) yield { ...item, entry: prefixed(prefix, item.entry) };
}

/** A read entry as a TarEntry to encode again (where it was read from is not part of it). */
function plainEntry(e: ReadEntry): TarEntry {
  const { headerOffset: _h, dataOffset: _d, ...entry } = e;
  return entry;
}

/**
 * One section of a stream as extractTar reads it: entries outside the prefix are passed over
 * (their bodies skipped: a seek on a file), the others come back named without the prefix. The
 * section's digest and size are those of its standalone tar, defined as: each entry's header
 * encoded again by encodeHeader with the prefix removed (the prefix's own entry named '.'),
 * then (sparse entries) the map block, the body and its padding, and two zero blocks at the end.
 * A diff written by this engine and the same diff written under a prefix give equal digests.
 */
export class SectionView {
  readonly prefix: string;
  /** the section's digest: header bytes here, bodies fed by the native copy (ApplyOp.hash) */
  readonly hash: Sha256 = native().sha256();
  /** bytes of the standalone tar so far */
  size = 0;
  private readonly zeros = Buffer.alloc(512);
  /** false: names are only mapped, nothing is hashed (end() gives digest '') */
  readonly digesting: boolean;

  constructor(prefix: string, opts: { digest?: boolean } = {}) {
    this.prefix = normalizePrefix(prefix);
    this.digesting = opts.digest !== false;
  }

  /** The entry as the section's own tar has it (its header hashed), or undefined when outside. */
  take(e: ReadEntry): ReadEntry | undefined {
    const name = stripPrefix(this.prefix, e.name);
    if (name === undefined) return undefined;
    const entry: ReadEntry = { ...e, name };
    if (e.type === 'hardlink') {
      const target = stripPrefix(this.prefix, e.linkname ?? '');
      if (target === undefined || target === '.')
        throw new TarError('ETARPATH', `${e.name}: a hardlink to ${e.linkname}, outside the section ${this.prefix}`, e.name, e.headerOffset);
      entry.linkname = target;
    }
    this.feed(encodeHeader(plainEntry(entry)));
    if (e.sparse) this.feed(sparseMapBlock(e.sparse));
    return entry;
  }

  /** after the body of a taken entry went into the hash: its size and padding */
  body(size: number): void {
    this.size += size;
    const pad = padding(size);
    if (pad > 0) this.feed(this.zeros.subarray(0, pad));
  }

  /** the end blocks; then the digest and size of the standalone tar */
  end(): { digest: string; tarSize: number } {
    this.feed(END_OF_ARCHIVE);
    return { digest: this.digesting ? this.hash.digest() : '', tarSize: this.size };
  }

  private feed(b: Buffer): void {
    if (this.digesting) this.hash.update(b);
    this.size += b.length;
  }
}
