// Our own tar header codec: ustar, PAX and GNU, read and written. It handles headers only; file
// bodies are moved by the native side. tar-stream cannot do this job: its packer wants every
// body piped through it, and it clamps big ids and re-encodes binary PAX values.
import type { Timespec } from '../native.ts';
import { TarError } from './errors.ts';
import { normalizeEntryName } from './names.ts';
import type { BlockSource } from './source.ts';
import type { EntryType, ReadEntry, SparseMap, TarEntry } from './types.ts';

const BLOCK = 512;
/** extension headers (PAX records, GNU long names) larger than this are refused */
export const MAX_EXTENSION = 1 << 20;
export const END_OF_ARCHIVE = Buffer.alloc(2 * BLOCK);

/** zero bytes after a body of `size` bytes, up to the next 512-byte boundary */
export function padding(size: number): number {
  return (BLOCK - (size % BLOCK)) % BLOCK;
}

// ---------------------------------------------------------------- reading

const TYPES: Record<string, EntryType> = {
  '0': 'file',
  '\0': 'file',
  '7': 'file',
  '1': 'hardlink',
  '2': 'symlink',
  '3': 'char',
  '4': 'block',
  '5': 'dir',
  '6': 'fifo',
  D: 'dir',
};

function isZero(b: Buffer): boolean {
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}

/** NUL-terminated string field */
function str(b: Buffer, off: number, len: number): string {
  let end = off;
  const max = off + len;
  while (end < max && b[end] !== 0) end++;
  return b.toString('utf8', off, end);
}

/** numeric field: octal (space/NUL terminated) or GNU base-256 */
function num(b: Buffer, off: number, len: number, field: string, at: number): number {
  if (b[off] & 0x80) {
    if (b[off] === 0xff) throw new TarError('ETARFORMAT', `header at byte ${at}: negative ${field}`, undefined, at);
    let v = b[off] & 0x7f;
    for (let i = off + 1; i < off + len; i++) v = v * 256 + b[i];
    if (!Number.isSafeInteger(v)) throw new TarError('ETARFORMAT', `header at byte ${at}: ${field} too large`, undefined, at);
    return v;
  }
  let i = off;
  const end = off + len;
  while (i < end && (b[i] === 0x20 || b[i] === 0)) i++;
  let v = 0;
  let digits = 0;
  for (; i < end; i++) {
    const c = b[i];
    if (c === 0x20 || c === 0) break;
    if (c < 0x30 || c > 0x37) throw new TarError('ETARFORMAT', `header at byte ${at}: ${field} is not an octal number`, undefined, at);
    v = v * 8 + (c - 0x30);
    digits++;
  }
  for (; i < end; i++) if (b[i] !== 0x20 && b[i] !== 0) throw new TarError('ETARFORMAT', `header at byte ${at}: ${field} is not an octal number`, undefined, at);
  return digits ? v : 0;
}

function checksumOk(b: Buffer, at: number): boolean {
  const want = num(b, 148, 8, 'checksum', at);
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const c = i >= 148 && i < 156 ? 0x20 : b[i];
    unsigned += c;
    signed += c > 127 ? c - 256 : c;
  }
  return want === unsigned || want === signed;
}

/** PAX records: keys as text, values as raw bytes (binary xattrs must survive). Repeated
 *  GNU.sparse.offset/numbytes pairs (sparse 0.0) are collected in order. */
function parsePax(data: Buffer, into: Map<string, Buffer>, sparse00: number[], what: string): void {
  let pos = 0;
  while (pos < data.length) {
    if (data[pos] === 0) break; // NUL padding after the last record
    const sp = data.indexOf(0x20, pos);
    const len = sp < 0 ? NaN : Number(data.toString('latin1', pos, sp));
    if (!Number.isInteger(len) || len <= 0 || pos + len > data.length || data[pos + len - 1] !== 0x0a) {
      throw new TarError('ETARFORMAT', `${what}: malformed PAX record at byte ${pos} of its extended header`, what);
    }
    const eq = data.indexOf(0x3d, sp + 1);
    if (eq < 0 || eq > pos + len - 1) throw new TarError('ETARFORMAT', `${what}: PAX record without '='`, what);
    const key = data.toString('utf8', sp + 1, eq);
    const value = data.subarray(eq + 1, pos + len - 1);
    if (key === 'GNU.sparse.offset' || key === 'GNU.sparse.numbytes') sparse00.push(decimal(value, key, what));
    else into.set(key, Buffer.from(value));
    pos += len;
  }
}

function decimal(v: Buffer | string, key: string, what: string): number {
  const s = typeof v === 'string' ? v : v.toString('latin1');
  if (!/^\d+$/.test(s)) throw new TarError('ETARFORMAT', `${what}: PAX ${key} is not a number: ${JSON.stringify(s.slice(0, 40))}`, what);
  const n = Number(s);
  if (!Number.isSafeInteger(n)) throw new TarError('ETARFORMAT', `${what}: PAX ${key} too large`, what);
  return n;
}

/** "1600000000.123456789" -> exact seconds and nanoseconds (never through a float) */
function paxTime(v: Buffer, key: string, what: string): Timespec {
  const s = v.toString('latin1');
  const m = /^(-?\d+)(?:\.(\d*))?$/.exec(s);
  if (!m) throw new TarError('ETARFORMAT', `${what}: PAX ${key} is not a time: ${JSON.stringify(s.slice(0, 40))}`, what);
  let sec = Number(m[1]);
  let nsec = Number((m[2] ?? '').slice(0, 9).padEnd(9, '0'));
  if (s.startsWith('-') && nsec > 0) {
    sec -= 1;
    nsec = 1_000_000_000 - nsec;
  }
  return { sec, nsec };
}

function readExtension(src: BlockSource, size: number, kind: string, at: number): Buffer {
  if (size > MAX_EXTENSION) throw new TarError('ETARTOOBIG', `${kind} header at byte ${at} claims ${size} bytes (limit ${MAX_EXTENSION})`, undefined, at);
  const data = src.read(size, `${kind} header at byte ${at}`);
  src.skip(padding(size), `${kind} header at byte ${at}`);
  return data;
}

const KNOWN_PAX = new Set(['path', 'linkpath', 'size', 'uid', 'gid', 'uname', 'gname', 'mtime', 'atime', 'ctime', 'comment', 'charset', 'hdrcharset']);

/**
 * The next entry of the tar, with PAX, GNU long names and sparse maps folded in; null at the
 * end of the archive. The source stands at the entry's body afterwards: the caller skips or
 * consumes `size` bytes and then `padding(size)`.
 */
export function readEntry(src: BlockSource): ReadEntry | null {
  const headerOffset = src.position;
  const pax = new Map<string, Buffer>();
  const sparse00: number[] = [];
  let longName: string | undefined;
  let longLink: string | undefined;
  for (;;) {
    const at = src.position;
    const block = src.readUpTo(BLOCK);
    const pendingExt = pax.size > 0 || longName !== undefined || longLink !== undefined;
    if (block.length === 0 && !pendingExt) return null; // the input ended at a header boundary
    if (block.length < BLOCK) throw new TarError('ETARTRUNCATED', `the tar ends at byte ${at + block.length}, inside a header`, undefined, at);
    if (isZero(block)) {
      if (pendingExt) throw new TarError('ETARFORMAT', `an extended header at byte ${headerOffset} is followed by an end block`, undefined, at);
      src.readUpTo(BLOCK); // the second end block, if there is one
      return null;
    }
    if (!checksumOk(block, at)) throw new TarError('ETARFORMAT', `header at byte ${at}: bad checksum (not a tar, or corrupt)`, str(block, 0, 100), at);
    const type = String.fromCharCode(block[156]);
    const size = num(block, 124, 12, 'size', at);
    switch (type) {
      case 'x':
        parsePax(readExtension(src, size, 'PAX', at), pax, sparse00, `PAX header at byte ${at}`);
        continue;
      case 'g':
        parsePax(readExtension(src, size, 'PAX global', at), src.globals, sparse00, `PAX global header at byte ${at}`);
        continue;
      case 'L':
        longName = str(readExtension(src, size, 'GNU long name', at), 0, size);
        continue;
      case 'K':
        longLink = str(readExtension(src, size, 'GNU long link', at), 0, size);
        continue;
      case 'V': // volume label: nothing to extract
        src.skip(size + padding(size));
        continue;
    }
    return finishEntry(src, block, type, size, at, headerOffset, pax, sparse00, longName, longLink);
  }
}

function finishEntry(
  src: BlockSource,
  block: Buffer,
  type: string,
  headerSize: number,
  at: number,
  headerOffset: number,
  pax: Map<string, Buffer>,
  sparse00: number[],
  longName: string | undefined,
  longLink: string | undefined,
): ReadEntry {
  const get = (k: string) => pax.get(k) ?? src.globals.get(k);
  const ustar = block.toString('latin1', 257, 263) === 'ustar\0';
  let rawName = get('path')?.toString('utf8') ?? longName;
  if (rawName === undefined) {
    rawName = str(block, 0, 100);
    const prefix = ustar ? str(block, 345, 155) : '';
    if (prefix) rawName = `${prefix}/${rawName}`;
  }
  const what = rawName;
  const sparseName = get('GNU.sparse.name')?.toString('utf8');
  if (sparseName !== undefined) rawName = sparseName;
  let etype: EntryType | undefined = type === 'S' ? 'file' : TYPES[type];
  if (!etype) throw new TarError('ETARFORMAT', `${what}: unsupported entry type ${JSON.stringify(type)}`, what, at);
  if (etype === 'file' && type === '\0' && rawName.endsWith('/')) etype = 'dir'; // old V7 directories
  const name = normalizeEntryName(rawName);

  const field = (key: string, off: number, len: number) => {
    const v = get(key);
    return v !== undefined ? decimal(v, key, what) : num(block, off, len, key, at);
  };
  const entry: ReadEntry = {
    name,
    type: etype,
    mode: num(block, 100, 8, 'mode', at) & 0o7777,
    uid: field('uid', 108, 8),
    gid: field('gid', 116, 8),
    size: field('size', 124, 12),
    mtime: get('mtime') ? paxTime(get('mtime')!, 'mtime', what) : { sec: num(block, 136, 12, 'mtime', at), nsec: 0 },
    headerOffset,
    dataOffset: 0,
  };
  void headerSize;
  const atime = get('atime');
  if (atime) entry.atime = paxTime(atime, 'atime', what);
  const ctime = get('ctime');
  if (ctime) entry.ctime = paxTime(ctime, 'ctime', what);
  const uname = get('uname')?.toString('utf8') ?? str(block, 265, 32);
  const gname = get('gname')?.toString('utf8') ?? str(block, 297, 32);
  if (uname) entry.uname = uname;
  if (gname) entry.gname = gname;
  if (etype === 'char' || etype === 'block') {
    entry.devmajor = num(block, 329, 8, 'devmajor', at);
    entry.devminor = num(block, 337, 8, 'devminor', at);
  }
  const link = get('linkpath')?.toString('utf8') ?? longLink ?? str(block, 157, 100);
  if (etype === 'symlink') entry.linkname = link;
  if (etype === 'hardlink') entry.linkname = normalizeEntryName(link);

  for (const [k, v] of [...src.globals, ...pax]) {
    if (k.startsWith('SCHILY.xattr.')) (entry.xattrs ??= new Map()).set(k.slice('SCHILY.xattr.'.length), v);
    else if (k.startsWith('LIBARCHIVE.xattr.')) (entry.xattrs ??= new Map()).set(decodeURIComponent(k.slice('LIBARCHIVE.xattr.'.length)), Buffer.from(v.toString('latin1'), 'base64'));
    else if (!KNOWN_PAX.has(k) && !k.startsWith('GNU.sparse.')) (entry.pax ??= {})[k] = v.toString('utf8');
  }

  if (type === 'S') entry.sparse = gnuOldSparse(src, block, entry, what, at);
  else if (get('GNU.sparse.major') || get('GNU.sparse.map') || sparse00.length) entry.sparse = paxSparse(src, get, sparse00, entry, what);

  entry.dataOffset = src.position;
  if (src.size !== undefined && entry.dataOffset + entry.size > src.size) {
    const left = Math.max(0, src.size - entry.dataOffset);
    throw new TarError('ETARTRUNCATED', `${name}: header says ${entry.size} bytes but only ${left} remain in the tar`, name, at);
  }
  return entry;
}

function checkSparse(map: SparseMap['map'], realSize: number, stored: number, what: string): void {
  let end = 0;
  let total = 0;
  for (const s of map) {
    if (s.offset < end || s.offset + s.length > realSize) throw new TarError('ETARFORMAT', `${what}: sparse map overlaps, goes backwards or passes the file size`, what);
    end = s.offset + s.length;
    total += s.length;
  }
  if (total !== stored) throw new TarError('ETARFORMAT', `${what}: sparse map holds ${total} bytes but the entry stores ${stored}`, what);
}

/** GNU's own sparse format: the map is in the header and in extension blocks after it. */
function gnuOldSparse(src: BlockSource, block: Buffer, entry: ReadEntry, what: string, at: number): SparseMap {
  const map: SparseMap['map'] = [];
  const take = (b: Buffer, off: number, count: number) => {
    for (let i = 0; i < count; i++) {
      const o = off + i * 24;
      if (b[o] === 0) break;
      const offset = num(b, o, 12, 'sparse offset', at);
      const length = num(b, o + 12, 12, 'sparse length', at);
      map.push({ offset, length });
    }
  };
  take(block, 386, 4);
  let extended = block[482] !== 0;
  while (extended) {
    const ext = src.read(BLOCK, `${what}: sparse extension block`);
    take(ext, 0, 21);
    extended = ext[504] !== 0;
  }
  const realSize = num(block, 483, 12, 'realsize', at);
  checkSparse(map, realSize, entry.size, what);
  return { realSize, map };
}

/** PAX sparse formats 0.0 (repeated offset/numbytes), 0.1 (GNU.sparse.map) and 1.0 (map at the start of the body). */
function paxSparse(src: BlockSource, get: (k: string) => Buffer | undefined, sparse00: number[], entry: ReadEntry, what: string): SparseMap {
  const realSize = decimal(get('GNU.sparse.realsize') ?? get('GNU.sparse.size') ?? Buffer.from(String(entry.size)), 'GNU.sparse.realsize', what);
  let nums: number[];
  if (get('GNU.sparse.major')?.toString() === '1') {
    // the map is decimal lines at the start of the body, padded to a block
    const lines: number[] = [];
    let text = '';
    let consumed = 0;
    let count = -1;
    while (count < 0 || lines.length < count * 2) {
      const b = src.read(BLOCK, `${what}: sparse map`);
      consumed += BLOCK;
      text += b.toString('latin1');
      const parts = text.split('\n');
      text = parts.pop()!;
      for (const p of parts) {
        if (count < 0) count = decimal(p, 'sparse map count', what);
        else if (lines.length < count * 2) lines.push(decimal(p, 'sparse map', what));
      }
      if (consumed > MAX_EXTENSION) throw new TarError('ETARTOOBIG', `${what}: sparse map larger than ${MAX_EXTENSION} bytes`, what);
    }
    entry.size -= consumed;
    nums = lines;
  } else if (get('GNU.sparse.map')) {
    const s = get('GNU.sparse.map')!.toString('latin1');
    nums = s === '' ? [] : s.split(',').map((x) => decimal(x, 'GNU.sparse.map', what));
  } else {
    nums = sparse00;
  }
  if (nums.length % 2) throw new TarError('ETARFORMAT', `${what}: sparse map has an odd number of values`, what);
  const map: SparseMap['map'] = [];
  for (let i = 0; i < nums.length; i += 2) map.push({ offset: nums[i], length: nums[i + 1] });
  checkSparse(map, realSize, entry.size, what);
  return { realSize, map };
}

// ---------------------------------------------------------------- writing

const TYPE_FLAG: Record<EntryType, string> = { file: '0', hardlink: '1', symlink: '2', char: '3', block: '4', dir: '5', fifo: '6' };
const MAX_OCTAL7 = 0o7777777;
const MAX_OCTAL11 = 0o77777777777;
// eslint-disable-next-line no-control-regex
const ASCII = /^[\x20-\x7e]*$/;

function writeOctal(b: Buffer, off: number, len: number, v: number): void {
  b.write(v.toString(8).padStart(len - 1, '0') + '\0', off, len, 'latin1');
}

/** GNU base-256, for device numbers beyond what octal holds (no PAX key exists for them) */
function writeNumber(b: Buffer, off: number, len: number, v: number): void {
  if (v <= MAX_OCTAL7) return writeOctal(b, off, len, v);
  let x = v;
  for (let i = off + len - 1; i > off; i--) {
    b[i] = x % 256;
    x = Math.floor(x / 256);
  }
  b[off] = 0x80;
}

function paxRecord(key: string, value: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(` ${key}=`, 'utf8'), value, Buffer.from('\n')]);
  let len = body.length + 1;
  while (String(len).length + body.length !== len) len = String(len).length + body.length;
  return Buffer.concat([Buffer.from(String(len), 'latin1'), body]);
}

/** a comment record of exactly `total` bytes (total >= 12) */
function commentRecord(total: number): Buffer {
  const digits = String(total).length;
  const fill = total - digits - ' comment='.length - 1;
  return Buffer.from(`${total} comment=${'x'.repeat(fill)}\n`, 'latin1');
}

function splitUstarName(name: string): [string, string] | undefined {
  if (Buffer.byteLength(name) <= 100) return ['', name];
  for (let i = name.indexOf('/'); i >= 0; i = name.indexOf('/', i + 1)) {
    const prefix = name.slice(0, i);
    const rest = name.slice(i + 1);
    if (Buffer.byteLength(prefix) <= 155 && Buffer.byteLength(rest) <= 100 && rest !== '') return [prefix, rest];
    if (Buffer.byteLength(prefix) > 155) break;
  }
  return undefined;
}

function ustarBlock(name: string, prefix: string, type: string, e: { mode: number; uid: number; gid: number; size: number; mtime: number; linkname?: string; uname?: string; gname?: string; devmajor?: number; devminor?: number }): Buffer {
  const b = Buffer.alloc(BLOCK);
  b.write(name, 0, 100, 'utf8');
  writeOctal(b, 100, 8, e.mode);
  writeOctal(b, 108, 8, e.uid);
  writeOctal(b, 116, 8, e.gid);
  writeOctal(b, 124, 12, e.size);
  writeOctal(b, 136, 12, e.mtime);
  b.write(type, 156, 1, 'latin1');
  if (e.linkname) b.write(e.linkname, 157, 100, 'utf8');
  b.write('ustar\0', 257, 6, 'latin1');
  b.write('00', 263, 2, 'latin1');
  if (e.uname) b.write(e.uname, 265, 32, 'utf8');
  if (e.gname) b.write(e.gname, 297, 32, 'utf8');
  writeNumber(b, 329, 8, e.devmajor ?? 0);
  writeNumber(b, 337, 8, e.devminor ?? 0);
  if (prefix) b.write(prefix, 345, 155, 'utf8');
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += b[i];
  b.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'latin1');
  return b;
}

/**
 * The header blocks that go before an entry's body: a ustar header, preceded by a PAX header
 * when something does not fit ustar. With `alignTo`, a PAX comment pads the header so that the
 * body starts at a multiple of `block` (a tar written at `offset`).
 */
export function encodeHeader(e: TarEntry, opts?: { alignTo?: { offset: number; block: number } }): Buffer {
  if (e.sparse) throw new Error(`${e.name}: writing sparse entries is not supported`);
  const records: Buffer[] = [];
  const rec = (k: string, v: string | Buffer) => records.push(paxRecord(k, typeof v === 'string' ? Buffer.from(v, 'utf8') : v));

  const full = e.type === 'dir' && e.name !== '.' ? `${e.name}/` : e.name === '.' ? './' : e.name;
  let split = ASCII.test(full) ? splitUstarName(full) : undefined;
  if (!split) {
    rec('path', full);
    split = ['', Buffer.from(full).subarray(0, 100).toString('latin1').replace(/[^\x20-\x7e]/g, '_')];
  }
  let linkname = e.linkname;
  if (linkname !== undefined && (Buffer.byteLength(linkname) > 100 || !ASCII.test(linkname))) {
    rec('linkpath', linkname);
    linkname = linkname.replace(/[^\x20-\x7e]/g, '_').slice(0, 100);
  }
  let { uid, gid } = e;
  if (uid > MAX_OCTAL7) (rec('uid', String(uid)), (uid = 0));
  if (gid > MAX_OCTAL7) (rec('gid', String(gid)), (gid = 0));
  let size = e.type === 'file' ? e.size : 0;
  if (size > MAX_OCTAL11) (rec('size', String(size)), (size = 0));
  let mtime = e.mtime.sec;
  if (e.mtime.nsec !== 0 || mtime < 0 || mtime > MAX_OCTAL11) {
    rec('mtime', e.mtime.nsec ? `${mtime}.${String(e.mtime.nsec).padStart(9, '0').replace(/0+$/, '')}` : String(mtime));
    mtime = Math.min(Math.max(mtime, 0), MAX_OCTAL11);
  }
  let { uname, gname } = e;
  if (uname && (Buffer.byteLength(uname) > 32 || !ASCII.test(uname))) (rec('uname', uname), (uname = undefined));
  if (gname && (Buffer.byteLength(gname) > 32 || !ASCII.test(gname))) (rec('gname', gname), (gname = undefined));
  for (const [k, v] of Object.entries(e.pax ?? {})) rec(k, v);
  for (const [k, v] of e.xattrs ?? []) rec(`SCHILY.xattr.${k}`, v);

  const ustar = ustarBlock(split[1], split[0], TYPE_FLAG[e.type], { mode: e.mode & 0o7777, uid, gid, size, mtime, linkname, uname, gname, devmajor: e.devmajor, devminor: e.devminor });

  let paxLen = records.reduce((n, r) => n + r.length, 0);
  if (opts?.alignTo) {
    const { offset, block } = opts.alignTo;
    const end = (len: number) => offset + BLOCK + (len > 0 ? BLOCK + len + padding(len) : 0);
    if (end(paxLen) % block !== 0) {
      // grow the PAX data one block at a time until the body lands on the boundary
      let target = paxLen + padding(paxLen);
      while (target - paxLen < 12 || end(target) % block !== 0) target += BLOCK;
      records.push(commentRecord(target - paxLen));
      paxLen = target;
    }
  }
  if (paxLen === 0) return ustar;
  const data = Buffer.concat(records, paxLen);
  const base = e.name.slice(e.name.lastIndexOf('/') + 1).replace(/[^\x20-\x7e]/g, '_');
  const paxHeader = ustarBlock(`PaxHeaders/${base}`.slice(0, 100), '', 'x', { mode: 0o644, uid: 0, gid: 0, size: paxLen, mtime });
  return Buffer.concat([paxHeader, data, Buffer.alloc(padding(paxLen)), ustar]);
}
