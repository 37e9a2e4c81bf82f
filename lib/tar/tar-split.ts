// tar-split records, as containers/storage keeps them in <driver>-layers/<id>.tar-split.gz
// (docs/tar-engine.md, "tar-split records"): gzip of JSON lines, one per entry of the stream
// github.com/vbatts/tar-split's storage.Packer writes. A segment entry holds raw tar bytes
// (headers, PAX and GNU extension data, padding, end blocks, trailing bytes); a file entry names
// the file whose body sits between two segments, its size and the body's CRC-64/ISO. The tar
// is rebuilt byte for byte from the segments and the layer's files, the bodies copied by the
// native side (writeSegments), never through JS.
//
// Here: the record's codec (readTarSplit, TarSplitWriter), the split of an existing tar file
// into a record (disassembleTar), and the reassembly (assembleTar). An import's record is made
// natively in the read that hashes the tar (native/tar-split.cc, the same rules);
// disassembleTar is the reference it is tested against and the fallback for the tars that walk
// declines (lib/store/tar-split-file.ts).
import fs from 'node:fs';
import path from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import zlib from 'node:zlib';
import { isUtf8 } from 'node:buffer';
import { LayersError } from '../errors.ts';
import { AtomicFile } from '../atomic.ts';
import { native } from '../native.ts';
import type { CopyMethod, CopyRequest, TarSegment } from '../native.ts';
import { padding, readEntry } from './header.ts';
import { decodeName, encodeName, fsPath, hasSurrogates, normalizeEntryName } from './names.ts';
import { FileSource } from './source.ts';
import { SegmentBatcher } from './write.ts';
import { TarError } from './errors.ts';

const BLOCK = 512;

/** tar-split's storage.Type values */
const FILE_TYPE = 1;
const SEGMENT_TYPE = 2;

export type TarSplitEntry =
  /** raw bytes of the tar, written as they are */
  | { type: 'segment'; position: number; payload: Buffer }
  /**
   * a tar member. `size` is the header's size; the body (when size > 0) is the file's content.
   * `name` is the name exactly as the tar stored it ('./etc/', 'usr/bin/x'); when those bytes are
   * not UTF-8 the record has them in `nameRaw` and `name` is their surrogateescape reading
   * (names.ts decodeName; the line holds only `name_raw` then, as Go's tar-split writes it).
   * `crc` is the CRC-64/ISO of the body, 8 bytes big-endian; null for size 0.
   */
  | { type: 'file'; position: number; name: string; nameRaw?: Buffer; size: number; crc: Buffer | null };

/** The name's bytes, as the tar stored them. */
export function entryNameBytes(e: { name: string; nameRaw?: Buffer }): Buffer {
  return e.nameRaw ?? encodeName(e.name);
}

// ------------------------------------------------------------------ JSON lines, as Go writes them

const HEX = '0123456789abcdef';

/**
 * A string as Go's encoding/json (json.Encoder, HTML escaping on) writes it, so our lines are the
 * peer's byte for byte: '<', '>', '&', U+2028 and U+2029 as \u escapes, control characters
 * other than \n, \r and \t as \u00XX (Go before 1.22 also writes \b and \f that way; the peer is
 * built with Go 1.19).
 */
export function goJsonString(s: string): string {
  // most names need nothing: one scan, no rebuild
  if (!/[\u0000-\u001f"\\<>&\u2028\u2029]/.test(s)) return `"${s}"`;
  let out = '"';
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x22) out += '\\"';
    else if (c === 0x5c) out += '\\\\';
    else if (c === 0x0a) out += '\\n';
    else if (c === 0x0d) out += '\\r';
    else if (c === 0x09) out += '\\t';
    else if (c < 0x20 || c === 0x3c || c === 0x3e || c === 0x26) out += `\\u00${HEX[c >> 4]}${HEX[c & 15]}`;
    else if (c === 0x2028 || c === 0x2029) out += `\\u${c.toString(16)}`;
    else out += s[i];
  }
  return out + '"';
}

/** One line of the record, fields in the order and encoding of Go's storage.Entry:
 *  type, name (omitempty), name_raw (omitempty, base64), size (omitempty), payload (base64, null
 *  when absent), position. */
function encodeLine(type: number, position: number, payload: Buffer | null, name?: string, nameRaw?: Buffer, size?: number): string {
  let line = `{"type":${type}`;
  if (name) line += `,"name":${goJsonString(name)}`;
  if (nameRaw && nameRaw.length > 0) line += `,"name_raw":"${nameRaw.toString('base64')}"`;
  if (size) line += `,"size":${size}`;
  line += `,"payload":${payload === null ? 'null' : `"${payload.toString('base64')}"`},"position":${position}}\n`;
  return line;
}

function badRecord(file: string, line: number, why: string): TarError {
  return new TarError('ETARFORMAT', `${file}: line ${line} of the tar-split record: ${why}`);
}

const SEGMENT_HEAD = '{"type":2,"payload":"';

/**
 * A segment line exactly as Go's encoder writes it ({"type":2,"payload":"<base64>","position":N}),
 * read without JSON.parse (the largest JS cost of a reassembly: half the lines are segments);
 * undefined for any other line, which fastFile or JSON.parse then reads.
 */
function fastSegment(text: string): TarSplitEntry | undefined {
  if (!text.startsWith(SEGMENT_HEAD)) return undefined;
  const end = text.indexOf('"', SEGMENT_HEAD.length);
  if (end < 0 || !text.startsWith(',"position":', end + 1) || !text.endsWith('}')) return undefined;
  const digits = text.slice(end + 13, -1);
  if (!/^\d{1,15}$/.test(digits)) return undefined;
  return { type: 'segment', position: Number(digits), payload: Buffer.from(text.slice(SEGMENT_HEAD.length, end), 'base64') };
}

const FILE_HEAD = '{"type":1,"name":"';

/** The decimal integer of Go's encoder (no sign, no leading zeros but 0) in text[from, to), or -1. */
function goUint(text: string, from: number, to: number): number {
  if (to <= from || to - from > 15 || (text.charCodeAt(from) === 0x30 && to - from > 1)) return -1;
  let v = 0;
  for (let i = from; i < to; i++) {
    const c = text.charCodeAt(i) - 0x30;
    if (c < 0 || c > 9) return -1;
    v = v * 10 + c;
  }
  return v;
}

/**
 * A file line exactly as Go's encoder writes it, with a name that needs no unescaping
 * ({"type":1,"name":"<name>"[,"size":N],"payload":"<base64>"|null,"position":N}), read without
 * JSON.parse (the other half of the lines); undefined for anything else (escapes, name_raw, a
 * payload that is not 8 bytes), which decodeLine then reads and checks.
 */
function fastFile(text: string): TarSplitEntry | undefined {
  if (!text.startsWith(FILE_HEAD)) return undefined;
  const nameEnd = text.indexOf('"', FILE_HEAD.length);
  if (nameEnd < 0) return undefined;
  const name = text.slice(FILE_HEAD.length, nameEnd);
  if (name.includes('\\')) return undefined;
  let at = nameEnd + 1;
  let size = 0;
  if (text.startsWith(',"size":', at)) {
    const end = text.indexOf(',', at + 8);
    size = end < 0 ? -1 : goUint(text, at + 8, end);
    if (size <= 0) return undefined;
    at = end;
  }
  let crc: Buffer | null = null;
  if (text.startsWith(',"payload":null', at)) at += 15;
  else if (text.startsWith(',"payload":"', at)) {
    const end = text.indexOf('"', at + 12);
    if (end < 0) return undefined;
    crc = Buffer.from(text.slice(at + 12, end), 'base64');
    at = end + 1;
  } else return undefined;
  if (!text.startsWith(',"position":', at) || !text.endsWith('}')) return undefined;
  const position = goUint(text, at + 12, text.length - 1);
  if (position < 0 || (size > 0 && crc?.length !== 8)) return undefined;
  return { type: 'file', position, name, size, crc };
}

function decodeLine(text: string, file: string, lineNo: number): TarSplitEntry {
  const fast = fastSegment(text) ?? fastFile(text);
  if (fast) return fast;
  let v: { type?: unknown; name?: unknown; name_raw?: unknown; size?: unknown; payload?: unknown; position?: unknown };
  try {
    v = JSON.parse(text);
  } catch (err) {
    throw badRecord(file, lineNo, `not JSON (${(err as Error).message})`);
  }
  if (v === null || typeof v !== 'object') throw badRecord(file, lineNo, 'not an object');
  const position = v.position ?? 0;
  if (typeof position !== 'number' || !Number.isSafeInteger(position)) throw badRecord(file, lineNo, 'position is not an integer');
  const payload = v.payload ?? null;
  if (payload !== null && typeof payload !== 'string') throw badRecord(file, lineNo, 'payload is not a base64 string');
  const bytes = payload === null ? null : Buffer.from(payload, 'base64');
  if (v.type === SEGMENT_TYPE) return { type: 'segment', position, payload: bytes ?? Buffer.alloc(0) };
  if (v.type !== FILE_TYPE) throw badRecord(file, lineNo, `unknown entry type ${JSON.stringify(v.type)}`);
  const size = v.size ?? 0;
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) throw badRecord(file, lineNo, 'size is not a non-negative integer');
  if (v.name !== undefined && typeof v.name !== 'string') throw badRecord(file, lineNo, 'name is not a string');
  if (v.name_raw !== undefined && v.name_raw !== null && typeof v.name_raw !== 'string') throw badRecord(file, lineNo, 'name_raw is not a base64 string');
  const nameRaw = typeof v.name_raw === 'string' && v.name_raw.length > 0 ? Buffer.from(v.name_raw, 'base64') : undefined;
  const name = nameRaw ? decodeName(nameRaw) : ((v.name as string | undefined) ?? '');
  if (size > 0 && (bytes === null || bytes.length !== 8)) throw badRecord(file, lineNo, `${name}: payload is not an 8-byte CRC-64`);
  return { type: 'file', position, name, ...(nameRaw && { nameRaw }), size, crc: bytes };
}

/**
 * The entries of a .tar-split.gz record, in order, read as a stream: only the current line is
 * in memory, however many entries the record has. A malformed line fails with ETARFORMAT naming
 * the file and line.
 */
export async function* readTarSplit(file: string): AsyncGenerator<TarSplitEntry> {
  const input = fs.createReadStream(file, { highWaterMark: 256 << 10 });
  const gunzip = zlib.createGunzip({ chunkSize: 256 << 10 });
  // an error of the file stream (ENOENT) must reach the reader of the lines
  input.on('error', (err) => gunzip.destroy(err));
  // lines split here rather than by readline (its per-line events and regex showed in profiles);
  // the decoder keeps a UTF-8 sequence cut by a chunk boundary whole
  const decoder = new StringDecoder('utf8');
  let lineNo = 0;
  let rest = '';
  try {
    for await (const chunk of input.pipe(gunzip) as AsyncIterable<Buffer>) {
      const text = rest + decoder.write(chunk);
      let start = 0;
      for (let nl = text.indexOf('\n'); nl >= 0; nl = text.indexOf('\n', start)) {
        lineNo++;
        if (nl > start) yield decodeLine(text.slice(start, nl), file, lineNo);
        start = nl + 1;
      }
      rest = text.slice(start);
    }
    rest += decoder.end();
    if (rest.length > 0) yield decodeLine(rest, file, ++lineNo);
  } catch (err) {
    if (err instanceof LayersError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    if (typeof code === 'string' && code.startsWith('Z_')) throw new TarError('ETARFORMAT', `${file}: the tar-split record is not valid gzip (${(err as Error).message})`, undefined, undefined, { cause: err });
    throw err;
  } finally {
    input.destroy();
    gunzip.destroy();
  }
}

// ------------------------------------------------------------------ writing a record

/**
 * A tar a record cannot be made of, though it can be applied: a sparse member, or a second
 * member with the same name (the peer's packer refuses both; docs/tar-engine.md, "Limits").
 */
export class UnrecordableTarError extends TarError {
  constructor(message: string, entry?: string, offset?: number) {
    super('ETARFORMAT', message, entry, offset);
    this.name = 'UnrecordableTarError';
  }
}

/** filepath.Clean, as tar-split applies it before looking for duplicate names */
function cleanName(name: string): string {
  if (name === '') return '.';
  // most names are clean but for GNU tar's './' prefix or a directory's trailing '/'
  let plain = name.startsWith('./') ? name.slice(2) : name;
  if (plain.endsWith('/')) plain = plain.slice(0, -1);
  if (plain !== '' && !plain.startsWith('/') && !plain.includes('//') && !plain.includes('/.') && !plain.startsWith('.')) return plain;
  const rooted = name.startsWith('/');
  const out: string[] = [];
  for (const part of name.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (out.length > 0 && out[out.length - 1] !== '..') out.pop();
      else if (!rooted) out.push('..');
      continue;
    }
    out.push(part);
  }
  const joined = out.join('/');
  return rooted ? `/${joined}` : joined || '.';
}

/** Bytes of JSON lines gathered before they are handed to gzip. */
const WRITE_CHUNK = 1 << 20;

/**
 * Writes a record as a stream: entries go through gzip (level 1, as the peer's pgzip BestSpeed)
 * into a temp file beside `file`; commit() fsyncs it and renames it into place (the pattern of
 * lib/atomic.ts: readers see no record or the whole one), abort() removes it. Positions are
 * numbered as tar-split's packer numbers them (0, 1, 2, ... over all entries). Like the packer,
 * a second file entry with the same cleaned name fails (ETARFORMAT): the peer cannot read such
 * a record. Keeping the names to check costs memory in proportion to the entries (~100 bytes each).
 */
export class TarSplitWriter {
  private position = 0;
  /** lines not yet handed to gzip, UTF-8 encoded as they come (no joined string to convert
   *  again); a fresh buffer after each flush, as gzip holds the one it was given */
  private pending = Buffer.allocUnsafe(WRITE_CHUNK);
  private pendingBytes = 0;
  private readonly seen = new Set<string>();
  private done = false;
  private failure: Error | undefined;
  private readonly finished: Promise<void>;

  private constructor(
    readonly file: string,
    private readonly out: AtomicFile,
    private readonly gzip: zlib.Gzip,
  ) {
    const stream = fs.createWriteStream('', { fd: out.fd, autoClose: false });
    // 'finish': every byte is handed to the fd, which commit() then fsyncs and closes
    this.finished = new Promise<void>((resolve, reject) => {
      const fail = (err: Error) => {
        this.failure ??= err;
        reject(err);
      };
      stream.on('finish', resolve);
      stream.on('error', fail);
      gzip.on('error', fail);
    });
    this.finished.catch(() => undefined); // reported by commit()
    gzip.pipe(stream);
  }

  /** A writer for `file` (mode 0600, as the peer writes it); nothing appears at `file` before commit(). */
  static async create(file: string): Promise<TarSplitWriter> {
    return new TarSplitWriter(file, await AtomicFile.create(file), zlib.createGzip({ level: zlib.constants.Z_BEST_SPEED }));
  }

  /** raw tar bytes, one segment entry (an empty payload is written as such: the peer ends records with one) */
  async addSegment(payload: Buffer): Promise<void> {
    await this.add(encodeLine(SEGMENT_TYPE, this.position, payload));
  }

  /** a tar member: name as the tar stored it (bytes that are not UTF-8 go to name_raw), the
   *  header's size, and for size > 0 the body's CRC-64 (Crc64.sum()) */
  async addFile(name: string | Buffer, size: number, crc: Buffer | null): Promise<void> {
    const bytes = typeof name === 'string' ? (hasSurrogates(name) ? encodeName(name) : undefined) : name;
    const raw = bytes === undefined || isUtf8(bytes) ? undefined : bytes;
    const text = typeof name === 'string' ? name : decodeName(name);
    const key = cleanName(text); // surrogateescape: one string per byte string
    if (this.seen.has(key)) throw new UnrecordableTarError(`${text}: a second entry for this path (tar-split records cannot hold duplicates, as the peer's cannot)`, text);
    this.seen.add(key);
    if (size > 0 && (crc === null || crc.length !== 8)) throw new TypeError(`addFile(${text}): a body needs its 8-byte CRC-64`);
    await this.add(encodeLine(FILE_TYPE, this.position, size > 0 ? crc : null, raw ? undefined : text, raw, size));
  }

  /** entries written so far */
  get entries(): number {
    return this.position;
  }

  private async add(line: string): Promise<void> {
    if (this.done) throw new Error(`tar-split writer for ${this.file}: entry after commit or abort`);
    this.position++;
    // a UTF-16 unit takes at most 3 bytes of UTF-8
    if (this.pendingBytes + line.length * 3 > this.pending.length) {
      await this.flush();
      // a line longer than the buffer (a 1 MiB segment of trailing bytes) goes on its own
      if (line.length * 3 > this.pending.length) return this.write(Buffer.from(line));
    }
    this.pendingBytes += this.pending.write(line, this.pendingBytes);
  }

  private async flush(): Promise<void> {
    if (this.pendingBytes === 0) return;
    const chunk = this.pending.subarray(0, this.pendingBytes);
    this.pending = Buffer.allocUnsafe(WRITE_CHUNK);
    this.pendingBytes = 0;
    await this.write(chunk);
  }

  private async write(chunk: Buffer): Promise<void> {
    if (this.failure) throw this.failure;
    // a failing gzip or file never drains: the failure ends the wait
    if (!this.gzip.write(chunk)) await Promise.race([new Promise<void>((resolve) => this.gzip.once('drain', resolve)), this.finished]);
  }

  /** Finish the gzip, fsync, rename into place, fsync the directory (AtomicFile). */
  async commit(): Promise<void> {
    try {
      await this.flush();
      this.done = true;
      this.gzip.end();
      await this.finished;
    } catch (err) {
      await this.abort();
      throw err;
    }
    await this.out.commit();
  }

  /** Drop the record: the temp file is removed, nothing appears at `file`. */
  async abort(): Promise<void> {
    this.done = true;
    this.gzip.unpipe();
    this.gzip.destroy();
    await this.out.abort();
  }
}
// ------------------------------------------------------------------ splitting an existing tar

/** Bodies up to this size are read here and checksummed with one native call: a worker-thread
 *  round trip per tiny file costs more than the read (50 000 files of 300 bytes: 6.9 s -> 2.6 s). */
const SMALL_BODY = 64 << 10;

/** disassembleTar reads headers through a window of this size */
const READ_WINDOW = 256 << 10;

/** tar-split reads what follows the end blocks in chunks of this size, one segment each */
const TRAILING_CHUNK = 1 << 20;

function cstr(b: Buffer, off: number, len: number): Buffer {
  let end = off;
  while (end < off + len && b[end] !== 0) end++;
  return b.subarray(off, end);
}

function octal(b: Buffer, off: number, len: number): number {
  let v = 0;
  for (let i = off; i < off + len; i++) {
    const c = b[i];
    if (c >= 0x30 && c <= 0x37) v = v * 8 + (c - 0x30);
    else if (c !== 0x20 || v !== 0) break;
  }
  return v;
}

/** the 'path' value of PAX records (empty: none), as bytes */
function paxPath(data: Buffer): Buffer | undefined {
  let found: Buffer | undefined;
  let i = 0;
  while (i < data.length) {
    const sp = data.indexOf(0x20, i);
    if (sp < 0) break;
    const len = Number(data.toString('latin1', i, sp));
    if (!Number.isSafeInteger(len) || len <= 0) break;
    const rec = data.subarray(sp + 1, i + len - 1); // without the trailing '\n'
    const eq = rec.indexOf(0x3d);
    if (eq === 4 && rec.toString('latin1', 0, 4) === 'path') found = rec.length > 5 ? rec.subarray(5) : undefined;
    i += len;
  }
  return found;
}

/** the name Go's archive/tar gives the member whose header is `block` */
function goHeaderName(block: Buffer): Buffer {
  const name = cstr(block, 0, 100);
  // USTAR and PAX headers (magic "ustar\0"), not GNU ones, join the prefix field
  if (block.toString('latin1', 257, 263) === 'ustar\0') {
    const prefix = cstr(block, 345, 155);
    if (prefix.length > 0) return Buffer.concat([prefix, Buffer.from('/'), name]);
  }
  return name;
}

/** Go's header-only types: their size field, whatever it says, has no body behind it */
function isHeaderOnly(typeflag: number): boolean {
  return typeflag >= 0x31 && typeflag <= 0x36; // '1' link .. '6' fifo
}

export interface DisassembleResult {
  entries: number;
  files: number;
  /** bytes of the tar, trailing bytes included */
  size: number;
}

/**
 * Write the record of the tar in `tarFd` (a regular file), as tar-split's NewInputTarStream
 * makes it: for each member, one segment with everything read since the previous body (its
 * padding, the member's header blocks, PAX and GNU long-name data), then the file entry; at the
 * end, one segment with the last padding and the end blocks, the bytes after them in 1 MiB
 * segments, and an empty segment (what the peer, built with tar-split 0.11, writes last). PAX
 * global headers are members of their own, as Go reads them. Body CRCs are computed natively
 * from the file; no body passes through JS. Sparse members are refused (ETARFORMAT): tar-split
 * records hold the expanded content and do not give back the sparse tar (the peer's `diff` of
 * such a layer is a different tar; docs/tar-engine.md).
 */
export async function disassembleTar(tarFd: number, writer: TarSplitWriter): Promise<DisassembleResult> {
  // one window serves the headers (readEntry) and the raw bytes between bodies (range): 256 KiB
  // holds the headers of many small members, so most members cost no read of their own
  const src = new FileSource(tarFd, 0, READ_WINDOW);
  const crc = native().crc64();
  const result: DisassembleResult = { entries: 0, files: 0, size: src.size };
  let segStart = 0; // first byte not yet in a segment or a body
  for (;;) {
    // the window from the end of the last body: its padding is the next segment's start
    if (segStart < src.size) src.prefetch(segStart);
    const e = readEntry(src);
    if (e === null) break;
    if (e.sparse) {
      throw new UnrecordableTarError(`${e.name}: sparse entries cannot be recorded in tar-split (its record holds the expanded file and does not give back this tar)`, e.name, e.headerOffset);
    }
    // walk the raw header blocks of this member: the name as Go sees it, and the global
    // headers (and volume labels) Go returns as members of their own, size 0
    const raw = src.range(segStart, e.dataOffset);
    let from = 0; // where the current segment starts in raw
    let at = Math.ceil(segStart / BLOCK) * BLOCK - segStart;
    let longName: Buffer | undefined;
    let pax: Buffer | undefined;
    let typeflag = 0;
    let name: Buffer | undefined;
    while (at + BLOCK <= raw.length) {
      const block = raw.subarray(at, at + BLOCK);
      typeflag = block[156];
      const size = octal(block, 124, 12);
      const data = raw.subarray(at + BLOCK, Math.min(raw.length, at + BLOCK + size));
      if (typeflag === 0x67 || typeflag === 0x56) {
        if (typeflag === 0x56 && size > 0) throw new TarError('ETARFORMAT', `volume label at byte ${segStart + at} has a body: not supported in a tar-split record`, undefined, segStart + at);
        // its padding opens the next segment, as the next header read starts with it
        const end = at + BLOCK + size;
        await writer.addSegment(raw.subarray(from, end));
        await writer.addFile(goHeaderName(block), 0, null);
        result.entries += 2;
        from = end;
        longName = pax = undefined;
      } else if (typeflag === 0x78) pax = paxPath(data) ?? pax;
      else if (typeflag === 0x4c) longName = cstr(data, 0, data.length);
      else if (typeflag !== 0x4b) {
        // Go: a GNU long name wins over a PAX path, which wins over the header's fields
        name = longName?.length ? longName : (pax ?? goHeaderName(block));
        break;
      }
      at += BLOCK + size + padding(size);
    }
    if (name === undefined) throw new TarError('ETARFORMAT', `${e.name}: cannot find its header in bytes ${segStart}..${e.dataOffset}`, e.name, e.headerOffset);
    await writer.addSegment(raw.subarray(from));
    const body = isHeaderOnly(typeflag) ? 0 : e.size;
    let sum: Buffer | null = null;
    if (e.size > 0) {
      // Go checksums what it reads of the body: nothing for a header-only type
      crc.reset();
      if (body > SMALL_BODY) await native().crc64Range(tarFd, e.dataOffset, body, crc);
      else if (body > 0) crc.update(src.range(e.dataOffset, e.dataOffset + body));
      sum = crc.sum();
      result.files++;
    }
    await writer.addFile(name, e.size, sum);
    result.entries += 2;
    segStart = e.dataOffset + body;
    src.skip(body + padding(body));
  }
  // the last padding and the end blocks; then what follows them
  const end = src.position;
  if (end > segStart) {
    await writer.addSegment(src.range(segStart, end));
    result.entries++;
  }
  for (let off = end; off < src.size; off += TRAILING_CHUNK) {
    await writer.addSegment(src.range(off, Math.min(src.size, off + TRAILING_CHUNK)));
    result.entries++;
  }
  await writer.addSegment(Buffer.alloc(0));
  result.entries++;
  return result;
}

// ------------------------------------------------------------------ reassembling the tar

/** A file of the layer is not what the record says (changed, grown, shrunk, removed, replaced
 *  by something else than a regular file): the tar cannot be given back byte for byte. */
export class LayerChangedError extends LayersError {
  constructor(
    readonly path: string,
    why: string,
  ) {
    super('ELAYERCHANGED', `${path}: ${why}; the layer was changed after it was applied, its tar cannot be reassembled`);
    this.name = 'LayerChangedError';
  }
}

/** Segments per batch of the SegmentBatcher (lib/tar/write.ts), whose two fixed buffers keep
 *  memory flat however many entries the record has. */
const BATCH_SEGMENTS = 4096;

export interface AssembleOptions {
  /** where the tar starts in outFd; default: the fd's position (-1; pipes, sockets) */
  outOffset?: number;
  /**
   * also compare bodies' CRC-64 with the record's, which costs one more read of each body so
   * compared (the copy itself is zero-copy and never sees the data). true: every body;
   * 'changed': the bodies of files whose ctime is later than the record's mtime (their inode
   * was changed after the record was written; ctime cannot be set back); false/absent: none,
   * only type and size are checked.
   */
  verify?: boolean | 'changed';
  /** force a copy method (tests, benchmarks) */
  method?: CopyRequest;
}

export interface AssembleResult {
  /** tar bytes written */
  written: number;
  /** body bytes by the method that moved them */
  bytes: Partial<Record<CopyMethod, number>>;
  /** file entries with a body */
  files: number;
}

/** The path beneath the layer root a record's name stands for (tar-split joins it to the root). */
function layerPath(e: { name: string; nameRaw?: Buffer }): string {
  // a name that is not UTF-8 is its bytes' surrogateescape reading, as extraction used it (names.ts)
  let name = e.name;
  // GNU tar's './' prefix would send every name to normalizeEntryName's slow path
  while (name.startsWith('/') || name.startsWith('./')) name = name.slice(name.charCodeAt(0) === 0x2f ? 1 : 2);
  return normalizeEntryName(name === '' ? '.' : name);
}

/**
 * A failed copy of a body (the native writer's error, with the segment it names) as
 * LayerChangedError when the file is not what the record says; undefined for other failures.
 */
function layerChanged(err: unknown, layerRoot: string): LayerChangedError | undefined {
  const e = err as { code?: unknown; syscall?: unknown; segment?: TarSegment } | null;
  const seg = e?.segment;
  if (seg?.kind !== 'file') return undefined;
  const rel = seg.path;
  switch (e!.code) {
    case 'ENOENT':
    case 'ENOTDIR':
      return new LayerChangedError(rel, 'is missing');
    case 'ELOOP':
    case 'ENOTREG':
      return new LayerChangedError(rel, 'is no longer a regular file');
    case 'ELAYERCHANGED': {
      if (e!.syscall === 'read') return new LayerChangedError(rel, 'has the recorded size but not the recorded content (CRC-64 differs)');
      const st = fs.lstatSync(path.join(layerRoot, rel), { throwIfNoEntry: false });
      return new LayerChangedError(rel, `has ${st?.size ?? 'no longer'} bytes, the record says ${seg.size}`);
    }
  }
  return undefined;
}

/**
 * Write the tar a record describes to outFd: segments as they are, each body (file entries with
 * size > 0) copied by the native side from `<layerRoot>/<name>`, opened beneath the root without
 * following symlinks. Before a body is copied the file must be a regular file of exactly the
 * recorded size, else LayerChangedError naming it (a file that shrinks during the copy fails
 * with ESHRANK naming it); with `verify`, its CRC-64 must match too.
 */
export async function assembleTar(splitFile: string, layerRoot: string, outFd: number, opts: AssembleOptions = {}): Promise<AssembleResult> {
  const rootFd = fs.openSync(layerRoot, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
  let files = 0;
  // every check runs natively on the descriptor the copy opens anyway: the fstat it needs gives
  // type, size and ctime, so an unchanged file costs no syscall of its own (docs/tar-engine.md)
  const verifyAfterNs = opts.verify === 'changed' ? fs.statSync(splitFile, { bigint: true }).mtimeNs : opts.verify ? 0n : undefined;
  const out = new SegmentBatcher(outFd, rootFd, { outOffset: opts.outOffset, method: opts.method, doing: 'reassembling the tar', verifyAfterNs });
  try {
    for await (const e of readTarSplit(splitFile)) {
      if (e.type === 'segment') {
        await out.addBytes(e.payload);
        continue;
      }
      if (e.size === 0) continue;
      out.addFile({ kind: 'file', path: layerPath(e), size: e.size, exact: true, crc: e.crc });
      files++;
      if (out.segmentCount >= BATCH_SEGMENTS) await out.flush();
    }
    await out.finish();
  } catch (err) {
    throw layerChanged(err, layerRoot) ?? err;
  } finally {
    await out.settle();
    fs.closeSync(rootFd);
  }
  return { written: out.written, bytes: out.bytes, files };
}
