// Our own tar header codec: ustar, PAX and GNU, read and written. It handles headers only; file
// bodies are moved by the native side. tar-stream cannot do this job: its packer wants every
// body piped through it, and it clamps big ids and re-encodes binary PAX values.
import type { Timespec } from '../native.ts';
import { TarError } from './errors.ts';
import { decodeName, encodeName, normalizeEntryName } from './names.ts';
import type { BlockSource } from './source.ts';
import type { EntryType, ReadEntry, SparseMap, TarEntry } from './types.ts';

const BLOCK = 512;
/** extension headers (PAX records, GNU long names, sparse maps) larger than this are refused */
export const MAX_EXTENSION = 1 << 20;
/** two zero blocks: the end of an archive */
export const END_OF_ARCHIVE = Buffer.alloc(2 * BLOCK);

/** zero bytes after a body of `size` bytes, up to the next 512-byte boundary */
export function padding(size: number): number {
  return (BLOCK - (size % BLOCK)) % BLOCK;
}

// ---------------------------------------------------------------- reading

// ustar header layout
const NAME = 0;
const MODE = 100;
const UID = 108;
const GID = 116;
const SIZE = 124;
const MTIME = 136;
const CHKSUM = 148;
const TYPEFLAG = 156;
const LINKNAME = 157;
const MAGIC = 257;
const UNAME = 265;
const GNAME = 297;
const DEVMAJOR = 329;
const DEVMINOR = 337;
const PREFIX = 345;
// GNU old sparse header fields
const GNU_SPARSE = 386;
const GNU_ISEXTENDED = 482;
const GNU_REALSIZE = 483;

const SCHILY_XATTR = 'SCHILY.xattr.';
const LIBARCHIVE_XATTR = 'LIBARCHIVE.xattr.';

/** a PAX value that holds a name: its bytes, whatever they are (names.ts) */
function decodeValue(v: Buffer | undefined): string | undefined {
  return v === undefined ? undefined : decodeName(v);
}

/** NUL-terminated string field */
function str(b: Buffer, off: number, len: number): string {
  let end = off;
  const max = off + len;
  while (end < max && b[end] !== 0) end++;
  return end === off ? '' : decodeName(b, off, end);
}

/**
 * Numeric field: octal (leading spaces, NUL/space terminated) or GNU base-256. NaN when it is
 * not a number, negative or beyond 2^53; the caller names the entry in the error.
 */
function num(b: Buffer, off: number, len: number): number {
  const end = off + len;
  if (b[off] & 0x80) {
    if (b[off] !== 0x80) return NaN; // 0xff: negative; other high bits: not base-256 at all
    let v = 0;
    for (let i = off + 1; i < end; i++) v = v * 256 + b[i];
    return Number.isSafeInteger(v) ? v : NaN;
  }
  let i = off;
  while (i < end && b[i] === 0x20) i++;
  let v = 0;
  for (; i < end; i++) {
    const c = b[i];
    if (c === 0x20 || c === 0) break;
    if (c < 0x30 || c > 0x37) return NaN;
    v = v * 8 + (c - 0x30);
  }
  for (; i < end; i++) if (b[i] !== 0x20 && b[i] !== 0) return NaN;
  return Number.isSafeInteger(v) ? v : NaN;
}

/** mtime may be negative (before 1970): GNU writes those in base-256 two's complement */
function numSigned(b: Buffer, off: number, len: number): number {
  if (b[off] !== 0xff) return num(b, off, len);
  let v = 0;
  for (let i = off; i < off + len; i++) v = v * 256 + (0xff - b[i]);
  v = -(v + 1);
  return Number.isSafeInteger(v) ? v : NaN;
}

function isZeroBlock(b: Buffer): boolean {
  for (let i = 0; i < BLOCK; i++) if (b[i] !== 0) return false;
  return true;
}

/** both the POSIX (unsigned) sum and the signed one old tars wrote */
function checksumOk(b: Buffer): boolean {
  const want = num(b, CHKSUM, 8);
  let unsigned = 0;
  let high = 0;
  for (let i = 0; i < CHKSUM; i++) {
    const c = b[i];
    unsigned += c;
    if (c > 127) high++;
  }
  for (let i = CHKSUM + 8; i < BLOCK; i++) {
    const c = b[i];
    unsigned += c;
    if (c > 127) high++;
  }
  unsigned += 8 * 0x20;
  return want === unsigned || want === unsigned - 256 * high;
}

/** the name a header block gives, for error messages before the entry is known */
function headerName(b: Buffer): string {
  const name = str(b, NAME, 100);
  const prefix = isUstar(b) ? str(b, PREFIX, 155) : '';
  return prefix ? `${prefix}/${name}` : name;
}

function isUstar(b: Buffer): boolean {
  // 'ustar\0' (POSIX); GNU's 'ustar  \0' has no prefix field (atime/ctime live there)
  return b[MAGIC] === 0x75 && b[MAGIC + 1] === 0x73 && b[MAGIC + 2] === 0x74 && b[MAGIC + 3] === 0x61 && b[MAGIC + 4] === 0x72 && b[MAGIC + 5] === 0;
}

/** decimal digits only, as PAX numbers are; NaN otherwise */
function decimal(b: Buffer, start = 0, end = b.length): number {
  if (start >= end) return NaN;
  let v = 0;
  for (let i = start; i < end; i++) {
    const c = b[i];
    if (c < 0x30 || c > 0x39) return NaN;
    v = v * 10 + (c - 0x30);
  }
  return Number.isSafeInteger(v) ? v : NaN;
}

/** "1600000000.123456789" -> exact seconds and nanoseconds, digit by digit (never a float) */
function paxTime(v: Buffer): Timespec | undefined {
  let i = 0;
  const neg = v[0] === 0x2d;
  if (neg) i++;
  const dot = v.indexOf(0x2e, i);
  const intEnd = dot < 0 ? v.length : dot;
  let sec = decimal(v, i, intEnd);
  if (Number.isNaN(sec)) return undefined;
  let nsec = 0;
  if (dot >= 0) {
    let scale = 100_000_000;
    for (let j = dot + 1; j < v.length; j++) {
      const c = v[j];
      if (c < 0x30 || c > 0x39) return undefined;
      nsec += (c - 0x30) * scale; // digits past the ninth are below a nanosecond: dropped
      scale = Math.floor(scale / 10);
    }
  }
  if (neg) {
    sec = -sec;
    if (nsec > 0) {
      sec -= 1;
      nsec = 1_000_000_000 - nsec;
    }
  }
  return { sec, nsec };
}

/** What came before the real header: PAX records, GNU long names, extension bytes read. */
interface Extensions {
  pax?: Map<string, Buffer>;
  /** GNU.sparse.offset/numbytes pairs of PAX sparse 0.0, in order (they repeat) */
  sparse00?: number[];
  longName?: string;
  longLink?: string;
  /** a global header's own `path` record: its name as Go reads it */
  globalPath?: string;
  bytes: number;
  /** the extension headers seen for this entry: type flag -> header offset */
  kinds: Map<number, number>;
}

/** PAX values a NUL would cut short (a link target, owner names), refused instead; names of
 *  entries are refused by names.ts, which sees every name whatever header it came from */
const NUL_FREE = new Set(['linkpath', 'uname', 'gname']);

/** The largest uid or gid a layer may hold: (uid_t)-1 means "leave as is" to chown(2). */
const MAX_ID = 2 ** 32 - 2;
/** Linux device numbers: 12 bits of major, 20 of minor; more would wrap in the kernel. */
const MAX_DEVMAJOR = 0xfff;
const MAX_DEVMINOR = 0xfffff;

/** Entry types whose size field must be 0: Go's reader (the peer) takes whatever follows their
 *  header for the next header, other readers skip `size` bytes first. */
const HEADER_ONLY: ReadonlySet<EntryType> = new Set(['hardlink', 'symlink', 'char', 'block', 'dir', 'fifo']);

/** PAX records: keys as text, values as raw bytes (binary xattrs must survive). */
function parsePax(data: Buffer, ext: Extensions, global: boolean, what: string, at: number): void {
  let pos = 0;
  while (pos < data.length) {
    if (data[pos] === 0) break; // NUL padding after the last record
    const sp = data.indexOf(0x20, pos);
    const len = sp < 0 || sp - pos > 8 ? NaN : decimal(data, pos, sp);
    if (!(len > 0) || pos + len > data.length || data[pos + len - 1] !== 0x0a) {
      throw new TarError('ETARFORMAT', `${what}: malformed PAX record at byte ${pos} of its extended header`, what, at);
    }
    const recEnd = pos + len - 1;
    const eq = data.indexOf(0x3d, sp + 1);
    if (eq < 0 || eq > recEnd) throw new TarError('ETARFORMAT', `${what}: PAX record without '=' at byte ${pos} of its extended header`, what, at);
    const key = data.toString('utf8', sp + 1, eq);
    // data is a fresh buffer of this header: values can be views into it
    const value = data.subarray(eq + 1, recEnd);
    pos += len;
    if (data.indexOf(0, sp + 1) !== -1 && data.indexOf(0, sp + 1) < eq)
      throw new TarError('ETARFORMAT', `${what}: NUL byte in PAX key ${JSON.stringify(key)} (header at byte ${at})`, what, at);
    if (NUL_FREE.has(key) && value.includes(0))
      throw new TarError(key === 'linkpath' ? 'ETARPATH' : 'ETARFORMAT', `${what}: NUL byte in PAX ${key} (header at byte ${at}); readers would cut the value there`, what, at);
    if (global) {
      // parsed for its format only: containers/storage (Go's archive/tar) applies no global
      // record to later entries, so neither do we (docs/tar-engine.md, "One tree"); but Go
      // merges them into the global header's own name, which the peer then acts on (fuzzer
      // seed 1735709091)
      if (key === 'path') ext.globalPath = decodeValue(value);
    } else if (key === 'GNU.sparse.offset' || key === 'GNU.sparse.numbytes') {
      const n = decimal(value);
      if (Number.isNaN(n)) throw new TarError('ETARFORMAT', `${what}: PAX ${key} is not a number`, what, at);
      (ext.sparse00 ??= []).push(n);
    } else {
      (ext.pax ??= new Map()).set(key, value);
    }
  }
}

function readExtension(src: BlockSource, ext: Extensions, size: number, kind: string, what: string, at: number): Buffer {
  ext.bytes += size;
  if (size > MAX_EXTENSION || ext.bytes > MAX_EXTENSION) {
    throw new TarError('ETARTOOBIG', `${what}: ${kind} header at byte ${at} claims ${size} bytes (limit ${MAX_EXTENSION} for the extension headers of one entry)`, what, at);
  }
  const data = src.read(size, what);
  src.skip(padding(size), what);
  return data;
}

/** PAX keys folded into entry fields (or meaningless once read): not kept in `pax` */
const FOLDED = new Set(['path', 'linkpath', 'size', 'uid', 'gid', 'uname', 'gname', 'mtime', 'atime', 'ctime', 'comment', 'charset', 'hdrcharset', 'SCHILY.devmajor', 'SCHILY.devminor']);

/**
 * The next entry of the tar, with PAX ('x' and global 'g'), GNU long names and sparse maps
 * folded in; null at the end of the archive. The source stands at the entry's body afterwards
 * (`dataOffset`): the caller skips or consumes `size` bytes and then `padding(size)`.
 * `onGlobal` is told the name of each member that is no entry, a PAX global header or a volume
 * label (the peer makes its parent directories).
 */
export function readEntry(src: BlockSource, onGlobal?: (name: string) => void): ReadEntry | null {
  let headerOffset = src.position;
  let ext: Extensions | undefined;
  for (;;) {
    const at = src.position;
    const block = src.readBlock();
    if (block.length < BLOCK) {
      // the input may end right after the last entry, without end blocks
      if (block.length === 0 && ext === undefined) return null;
      // a cut header may still hold its name field
      const name = block.length >= 100 ? str(block, NAME, 100) : ext?.longName;
      const what = name ? `${name} (header at byte ${at})` : ext ? `the entry whose extension header starts at byte ${headerOffset}` : `header at byte ${at}`;
      throw new TarError('ETARTRUNCATED', `${what}: unexpected EOF: the tar ends at byte ${at + block.length}, inside a header`, name || undefined, at);
    }
    if (block[0] === 0 && isZeroBlock(block)) {
      if (ext) throw new TarError('ETARFORMAT', `invalid tar header: the extension header at byte ${headerOffset} is followed by an end block, not by its entry`, undefined, at);
      // the second end block, if there is one; a zero block and then data is no end but a
      // damaged tar, which Go's reader refuses (ErrHeader) and so do we
      const next = src.readBlock();
      if (next.length === BLOCK && !isZeroBlock(next))
        throw new TarError('ETARFORMAT', `invalid tar header: a single zero block at byte ${at} is followed by more data at byte ${at + BLOCK}`, undefined, at);
      return null;
    }
    if (!checksumOk(block)) {
      const name = headerName(block);
      throw new TarError('ETARFORMAT', `${name ? `${name} (header at byte ${at})` : `header at byte ${at}`}: invalid tar header: bad checksum (not a tar, or corrupt)`, name || undefined, at);
    }
    const type = block[TYPEFLAG];
    const headerSize = num(block, SIZE, 12);
    if (Number.isNaN(headerSize)) {
      const name = ext?.longName ?? headerName(block);
      throw new TarError('ETARFORMAT', `${name}: the size field of its header (byte ${at}) is not a valid number`, name, at);
    }
    switch (type) {
      case 0x78: // 'x'
      case 0x67: // 'g'
      case 0x4c: // 'L'
      case 0x4b: {
        // 'K'
        const what = headerName(block);
        const kind = type === 0x78 ? 'PAX' : type === 0x67 ? 'PAX global' : type === 0x4c ? 'GNU long name' : 'GNU long link name';
        // Two extension headers of one kind before one entry, or one before a global header:
        // readers disagree on which applies (Go's keeps the last and drops an 'x' before a 'g';
        // others merge), so the same tar would give different trees. Refused, naming both.
        const seen = ext?.kinds.get(type);
        if (seen !== undefined || (type === 0x67 && ext !== undefined)) {
          const first = seen ?? ext!.kinds.values().next().value;
          throw new TarError('ETARFORMAT', `invalid tar header: ${what}: ${kind} header at byte ${at} follows the extension header at byte ${first} of the same entry; readers disagree on which applies`, what, at);
        }
        ext ??= { bytes: 0, kinds: new Map() };
        ext.kinds.set(type, at);
        const data = readExtension(src, ext, headerSize, kind, what, at);
        if (type === 0x78) parsePax(data, ext, false, what, at);
        else if (type === 0x67) {
          parsePax(data, ext, true, what, at);
          onGlobal?.(ext.globalPath ?? what);
          // a global header is an archive member of its own, not part of the next entry
          ext = undefined;
          headerOffset = src.position;
        } else if (type === 0x4c) ext.longName = str(data, 0, data.length);
        else ext.longLink = str(data, 0, data.length);
        continue;
      }
      case 0x56: // 'V': a volume label, nothing to extract
        onGlobal?.(headerName(block));
        src.skip(headerSize + padding(headerSize), headerName(block));
        ext = undefined;
        headerOffset = src.position;
        continue;
    }
    return finishEntry(src, block, type, headerSize, at, headerOffset, ext);
  }
}

/** the PAX records of an entry (its own 'x' header; global ones apply to nothing) */
interface Records {
  pax: Map<string, Buffer>;
}

/** a PAX value for a standard key; an empty 'x' value means "as the header says" */
function paxValue(r: Records | undefined, k: string): Buffer | undefined {
  const v = r?.pax.get(k);
  return v === undefined || v.length === 0 ? undefined : v;
}

/** a numeric field from its PAX record, else from the header */
function numField(block: Buffer, r: Records | undefined, key: string, off: number, len: number, name: string, at: number): number {
  const v = paxValue(r, key);
  const n = v !== undefined ? decimal(v) : num(block, off, len);
  if (Number.isNaN(n)) {
    const shown = v !== undefined ? JSON.stringify(v.toString('latin1', 0, 40)) : `field at byte ${off} of its header`;
    throw new TarError('ETARFORMAT', `${name}: ${key} is not a valid number (${shown})`, name, at);
  }
  return n;
}

/** a uid or gid, refused beyond what a layer can hold instead of wrapping on disk */
function idField(block: Buffer, r: Records | undefined, key: 'uid' | 'gid', off: number, name: string, at: number): number {
  const n = numField(block, r, key, off, 8, name, at);
  if (n > MAX_ID) throw new TarError('ETARFORMAT', `${name}: ${key} ${n} is out of range (at most ${MAX_ID})`, name, at);
  return n;
}

function paxTimeField(r: Records | undefined, key: 'mtime' | 'atime' | 'ctime', name: string, at: number): Timespec | undefined {
  const v = paxValue(r, key);
  if (v === undefined) return undefined;
  const t = paxTime(v);
  if (t === undefined || !Number.isSafeInteger(t.sec)) throw new TarError('ETARFORMAT', `${name}: PAX ${key} is not a time: ${JSON.stringify(v.toString('latin1', 0, 40))}`, name, at);
  return t;
}

function entryType(type: number): EntryType | undefined {
  switch (type) {
    case 0x30: // '0'
    case 0x00: // '\0' (pre-POSIX)
    case 0x37: // '7' contiguous file
    case 0x53: // 'S' GNU sparse file
      return 'file';
    case 0x31:
      return 'hardlink';
    case 0x32:
      return 'symlink';
    case 0x33:
      return 'char';
    case 0x34:
      return 'block';
    case 0x35: // '5'
    case 0x44: // 'D' GNU dumpdir: a directory with a listing as its body
      return 'dir';
    case 0x36:
      return 'fifo';
  }
  return undefined;
}

function finishEntry(src: BlockSource, block: Buffer, type: number, headerSize: number, at: number, headerOffset: number, ext: Extensions | undefined): ReadEntry {
  const pax = ext?.pax;
  // most entries have no PAX records at all: then every lookup is skipped
  const recs: Records | undefined = pax !== undefined ? { pax } : undefined;

  const paxPath = decodeValue(paxValue(recs, 'path'));
  if (paxPath !== undefined && ext?.longName !== undefined && paxPath !== ext.longName) {
    // Go's reader takes the GNU long name, GNU tar the PAX path: two trees from one tar
    throw new TarError('ETARFORMAT', `invalid tar header: ${paxPath}: its PAX path and its GNU long name ${JSON.stringify(ext.longName)} differ (header at byte ${at}); readers disagree on which applies`, paxPath, at);
  }
  let rawName = paxPath ?? ext?.longName ?? headerName(block);
  const what = rawName;
  const sparseName = paxValue(recs, 'GNU.sparse.name');
  if (sparseName !== undefined) rawName = decodeName(sparseName);

  let etype = entryType(type);
  if (etype === undefined) {
    throw new TarError('ETARFORMAT', `${what}: unsupported entry type ${JSON.stringify(String.fromCharCode(type))}`, what, at);
  }
  if (type === 0 && rawName.endsWith('/')) etype = 'dir'; // old V7 directories
  let name: string;
  try {
    name = normalizeEntryName(rawName);
  } catch (err) {
    if (err instanceof TarError) throw new TarError(err.code, `${JSON.stringify(rawName)}: ${pathReason(err)} (header at byte ${at})`, rawName, at);
    throw err;
  }

  let mtime = paxTimeField(recs, 'mtime', name, at);
  if (mtime === undefined) {
    const sec = numSigned(block, MTIME, 12);
    if (Number.isNaN(sec)) throw new TarError('ETARFORMAT', `${name}: mtime is not a valid number`, name, at);
    mtime = { sec, nsec: 0 };
  }
  const entry: ReadEntry = {
    name,
    type: etype,
    mode: numField(block, recs, 'mode', MODE, 8, name, at) & 0o7777,
    uid: idField(block, recs, 'uid', UID, name, at),
    gid: idField(block, recs, 'gid', GID, name, at),
    size: paxValue(recs, 'size') !== undefined ? numField(block, recs, 'size', SIZE, 12, name, at) : headerSize,
    mtime,
    headerOffset,
    dataOffset: 0,
  };
  if (recs) {
    const atime = paxTimeField(recs, 'atime', name, at);
    if (atime) entry.atime = atime;
    const ctime = paxTimeField(recs, 'ctime', name, at);
    if (ctime) entry.ctime = ctime;
  }
  const uname = paxValue(recs, 'uname')?.toString('utf8') ?? str(block, UNAME, 32);
  if (uname) entry.uname = uname;
  const gname = paxValue(recs, 'gname')?.toString('utf8') ?? str(block, GNAME, 32);
  if (gname) entry.gname = gname;
  if (etype === 'char' || etype === 'block') {
    // a V7 header (neither ustar's nor GNU's magic) has no device fields: Go's reader and GNU
    // tar read 0:0 whatever bytes are there (found by the differential fuzzer)
    const v7 = !hasDeviceFields(block);
    entry.devmajor = v7 && paxValue(recs, 'SCHILY.devmajor') === undefined ? 0 : numField(block, recs, 'SCHILY.devmajor', DEVMAJOR, 8, name, at);
    entry.devminor = v7 && paxValue(recs, 'SCHILY.devminor') === undefined ? 0 : numField(block, recs, 'SCHILY.devminor', DEVMINOR, 8, name, at);
    if (entry.devmajor > MAX_DEVMAJOR || entry.devminor > MAX_DEVMINOR)
      throw new TarError('ETARFORMAT', `${name}: device ${entry.devmajor}:${entry.devminor} is out of range (major at most ${MAX_DEVMAJOR}, minor at most ${MAX_DEVMINOR}); it would wrap to another device`, name, at);
    // Go's reader (the peer) and GNU tar ignore SCHILY.devmajor/devminor and take the header's
    // fields: a PAX value that differs from them would give another device (docs/tar-engine.md, "One tree")
    for (const [key, off, value] of [['SCHILY.devmajor', DEVMAJOR, entry.devmajor], ['SCHILY.devminor', DEVMINOR, entry.devminor]] as const) {
      const inHeader = v7 ? 0 : num(block, off, 8);
      if (paxValue(recs, key) !== undefined && inHeader !== value)
        throw new TarError('ETARFORMAT', `invalid tar header: ${name}: its PAX ${key} ${value} and its header's ${inHeader} differ; readers disagree on which applies`, name, at);
    }
  }
  if (HEADER_ONLY.has(etype) && entry.size !== 0 && type !== 0x44) {
    throw new TarError('ETARFORMAT', `invalid tar header: ${name}: a ${etype} entry with a body of ${entry.size} bytes (header at byte ${at}); readers disagree on where the next header starts`, name, at);
  }
  if (etype === 'symlink' || etype === 'hardlink') {
    const paxLink = decodeValue(paxValue(recs, 'linkpath'));
    if (paxLink !== undefined && ext?.longLink !== undefined && paxLink !== ext.longLink)
      throw new TarError('ETARFORMAT', `invalid tar header: ${name}: its PAX linkpath and its GNU long link name differ (header at byte ${at}); readers disagree on which applies`, name, at);
    const link = paxLink ?? ext?.longLink ?? str(block, LINKNAME, 100);
    if (etype === 'symlink') entry.linkname = link; // a symlink's target is data: kept verbatim
    else {
      try {
        entry.linkname = normalizeEntryName(link);
        if (entry.linkname !== link) entry.linknameAsWritten = link;
      } catch (err) {
        if (err instanceof TarError) throw new TarError(err.code, `${name}: hardlink target ${JSON.stringify(link)}: ${pathReason(err)}`, name, at);
        throw err;
      }
    }
  }
  if (recs) collectPax(entry, recs.pax, name, at);

  if (type === 0x53) entry.sparse = gnuOldSparse(src, block, entry, name, at);
  else if (ext?.sparse00 || (recs && isPaxSparse(recs))) entry.sparse = paxSparse(src, recs, ext?.sparse00, entry, name, at);

  if (type === 0x44 && entry.size > 0) {
    // a dumpdir's body lists the directory for incremental restores; a directory has no data
    src.skip(entry.size + padding(entry.size), name);
    entry.size = 0;
  }
  entry.dataOffset = src.position;
  if (src.size !== undefined && entry.dataOffset + entry.size > src.size) {
    const left = Math.max(0, src.size - entry.dataOffset);
    throw new TarError('ETARTRUNCATED', `${name}: unexpected EOF: the header says ${entry.size} bytes but only ${left} remain in the tar`, name, at);
  }
  return entry;
}

/** any of the PAX sparse formats (0.0 may have no segments at all: a file that is one hole) */
function isPaxSparse(r: Records): boolean {
  return paxValue(r, 'GNU.sparse.major') !== undefined || paxValue(r, 'GNU.sparse.map') !== undefined || paxValue(r, 'GNU.sparse.numblocks') !== undefined || paxValue(r, 'GNU.sparse.size') !== undefined || paxValue(r, 'GNU.sparse.realsize') !== undefined;
}

/** the reason part of a names.ts error ("<name>: reason") */
function pathReason(err: TarError): string {
  const i = err.message.lastIndexOf(': ');
  return i < 0 ? err.message : err.message.slice(i + 2);
}

/** xattrs and the PAX records no field holds */
function collectPax(entry: ReadEntry, pax: Map<string, Buffer>, name: string, at: number): void {
  for (const [k, v] of pax) collectRecord(entry, k, v, name, at);
}

function collectRecord(entry: ReadEntry, k: string, v: Buffer, name: string, at: number): void {
  if (k.startsWith(SCHILY_XATTR)) {
    // copied: the value is a view into the whole extension header
    (entry.xattrs ??= new Map()).set(k.slice(SCHILY_XATTR.length), Buffer.from(v));
  } else if (k.startsWith(LIBARCHIVE_XATTR)) {
    let xname: string;
    try {
      xname = decodeURIComponent(k.slice(LIBARCHIVE_XATTR.length));
    } catch {
      throw new TarError('ETARFORMAT', `${name}: bad xattr name in PAX key ${JSON.stringify(k)}`, name, at);
    }
    (entry.xattrs ??= new Map()).set(xname, Buffer.from(v.toString('latin1'), 'base64'));
  } else if (!FOLDED.has(k) && !k.startsWith('GNU.sparse.')) {
    (entry.pax ??= {})[k] = v.toString('utf8');
  }
}

function sparseError(what: string, at: number, msg: string): TarError {
  return new TarError('ETARFORMAT', `${what}: ${msg}`, what, at);
}

/** GNU tar ends the map of a file that ends in a hole with a zero-length segment at the real
 *  size (its extractor truncates there); the map we report holds data segments only */
function dataSegments(map: SparseMap['map']): SparseMap['map'] {
  for (const s of map) if (s.length === 0) return map.filter((x) => x.length > 0);
  return map;
}

function checkSparse(map: SparseMap['map'], realSize: number, stored: number, what: string, at: number): void {
  let end = 0;
  let total = 0;
  for (const s of map) {
    if (s.offset < end || s.offset + s.length > realSize) throw sparseError(what, at, `sparse map segment ${s.offset}+${s.length} overlaps, goes backwards or passes the file size ${realSize}`);
    end = s.offset + s.length;
    total += s.length;
  }
  if (total !== stored) throw sparseError(what, at, `sparse map holds ${total} bytes but the entry stores ${stored}`);
}

/** GNU's own sparse format: the map is in the header and in extension blocks after it. */
function gnuOldSparse(src: BlockSource, block: Buffer, entry: ReadEntry, what: string, at: number): SparseMap {
  const realSize = num(block, GNU_REALSIZE, 12);
  if (Number.isNaN(realSize)) throw sparseError(what, at, 'sparse real size is not a valid number');
  const map: SparseMap['map'] = [];
  const take = (b: Buffer, off: number, count: number): void => {
    for (let i = 0; i < count; i++) {
      const o = off + i * 24;
      if (b[o] === 0) break;
      const offset = num(b, o, 12);
      const length = num(b, o + 12, 12);
      if (Number.isNaN(offset) || Number.isNaN(length)) throw sparseError(what, at, 'sparse map entry is not a valid number');
      map.push({ offset, length });
    }
  };
  take(block, GNU_SPARSE, 4);
  let extended = block[GNU_ISEXTENDED] !== 0;
  let bytes = 0;
  while (extended) {
    bytes += BLOCK;
    if (bytes > MAX_EXTENSION) throw new TarError('ETARTOOBIG', `${what}: sparse map larger than ${MAX_EXTENSION} bytes`, what, at);
    const ext = src.read(BLOCK, what);
    take(ext, 0, 21);
    extended = ext[504] !== 0;
  }
  checkSparse(map, realSize, entry.size, what, at);
  return { realSize, map: dataSegments(map) };
}

/** PAX sparse formats 0.0 (repeated offset/numbytes), 0.1 (GNU.sparse.map) and 1.0 (map at the start of the body). */
function paxSparse(src: BlockSource, r: Records | undefined, sparse00: number[] | undefined, entry: ReadEntry, what: string, at: number): SparseMap {
  const get = (k: string) => paxValue(r, k);
  const rs = get('GNU.sparse.realsize') ?? get('GNU.sparse.size');
  // Go's reader (the peer) takes GNU.sparse.size first, GNU tar GNU.sparse.realsize: two values are an ambiguity
  const other = get('GNU.sparse.size');
  if (rs !== undefined && other !== undefined && !rs.equals(other))
    throw sparseError(what, at, `GNU.sparse.realsize ${rs.toString('latin1')} and GNU.sparse.size ${other.toString('latin1')} differ; readers disagree on which applies`);
  const realSize = rs === undefined ? entry.size : decimal(rs);
  if (Number.isNaN(realSize)) throw sparseError(what, at, 'GNU.sparse.realsize is not a valid number');
  let nums: number[];
  const major = get('GNU.sparse.major');
  const map01 = get('GNU.sparse.map');
  if (major !== undefined) {
    if (major.toString('latin1') !== '1') throw sparseError(what, at, `unsupported PAX sparse version ${major.toString('latin1')}`);
    nums = readSparseMap10(src, entry, what, at);
  } else if (map01 !== undefined) {
    nums = [];
    let start = 0;
    for (let i = 0; i <= map01.length; i++) {
      if (i < map01.length && map01[i] !== 0x2c) continue;
      const n = decimal(map01, start, i);
      if (Number.isNaN(n)) throw sparseError(what, at, 'GNU.sparse.map holds something other than numbers');
      nums.push(n);
      start = i + 1;
    }
  } else if (sparse00 !== undefined) {
    nums = sparse00;
  } else {
    // no map at all: Go's reader takes a plain file of the stored bytes, GNU tar a sparse one
    throw sparseError(what, at, 'PAX sparse records without a map (no GNU.sparse.map, offset/numbytes or major); readers disagree on whether it is sparse');
  }
  if (nums.length % 2) throw sparseError(what, at, 'sparse map has an odd number of values');
  const map: SparseMap['map'] = [];
  for (let i = 0; i < nums.length; i += 2) map.push({ offset: nums[i], length: nums[i + 1] });
  checkSparse(map, realSize, entry.size, what, at);
  return { realSize, map: dataSegments(map) };
}

/** PAX 1.0: decimal lines (count, then offset/length pairs) at the start of the body, padded
 *  to a block. Reads them and takes them off the entry's stored size. */
function readSparseMap10(src: BlockSource, entry: ReadEntry, what: string, at: number): number[] {
  const nums: number[] = [];
  let count = -1;
  let cur = 0;
  let digits = 0;
  let consumed = 0;
  while (count < 0 || nums.length < count * 2) {
    if (consumed + BLOCK > entry.size) throw sparseError(what, at, 'sparse map runs past the entry body');
    if (consumed + BLOCK > MAX_EXTENSION) throw new TarError('ETARTOOBIG', `${what}: sparse map larger than ${MAX_EXTENSION} bytes`, what, at);
    const b = src.read(BLOCK, what);
    consumed += BLOCK;
    for (let i = 0; i < BLOCK && (count < 0 || nums.length < count * 2); i++) {
      const c = b[i];
      if (c === 0x0a) {
        if (digits === 0 || !Number.isSafeInteger(cur)) throw sparseError(what, at, 'malformed sparse map');
        if (count < 0) count = cur;
        else nums.push(cur);
        cur = 0;
        digits = 0;
      } else if (c >= 0x30 && c <= 0x39) {
        cur = cur * 10 + (c - 0x30);
        digits++;
      } else {
        throw sparseError(what, at, 'malformed sparse map');
      }
    }
  }
  entry.size -= consumed;
  return nums;
}

// ---------------------------------------------------------------- writing

const TYPE_FLAG: Record<EntryType, number> = { file: 0x30, hardlink: 0x31, symlink: 0x32, char: 0x33, block: 0x34, dir: 0x35, fifo: 0x36 };
const MAX_OCTAL7 = 0o7777777;
const MAX_OCTAL11 = 0o77777777777;

function isPrintableAscii(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c > 0x7e) return false;
  }
  return true;
}

/** ASCII stand-in for a field whose real value is in a PAX record */
function asciiFallback(s: string, max: number): string {
  if (isPrintableAscii(s)) return s.length <= max ? s : s.slice(0, max);
  let out = '';
  for (let i = 0; i < s.length && out.length < max; i++) {
    const c = s.charCodeAt(i);
    out += c < 0x20 || c > 0x7e ? '_' : s[i];
  }
  return out;
}

/** zero-padded octal digits and a NUL terminator, written in place */
function writeOctal(b: Buffer, off: number, len: number, v: number): void {
  b[off + len - 1] = 0;
  let x = v;
  for (let i = off + len - 2; i >= off; i--) {
    b[i] = 0x30 + (x % 8);
    x = Math.floor(x / 8);
  }
}

/** GNU base-256 for a device number beyond what 7 octal digits hold (the PAX record is SCHILY.dev*) */
function writeNumber(b: Buffer, off: number, len: number, v: number): void {
  if (v <= MAX_OCTAL7) return writeOctal(b, off, len, v);
  let x = v;
  for (let i = off + len - 1; i > off; i--) {
    b[i] = x % 256;
    x = Math.floor(x / 256);
  }
  b[off] = 0x80;
}

/** a PAX record "<len> <key>=<value>\n"; len counts its own digits (in bytes) */
function paxRecord(key: string, value: Buffer | string): Buffer {
  const keyLen = Buffer.byteLength(key);
  if (typeof value === 'string') value = encodeName(value); // a name's exact bytes, as Go's archive/tar writes them
  const valueLen = value.length;
  const rest = 1 + keyLen + 1 + valueLen + 1; // ' ' key '=' value '\n'
  let len = rest + 1;
  while (String(len).length + rest !== len) len = String(len).length + rest;
  const out = Buffer.allocUnsafe(len);
  let o = out.write(`${len} ${key}=`, 0, 'utf8');
  o += value.copy(out, o);
  out[o] = 0x0a;
  return out;
}

/** a comment record of exactly `total` bytes; total >= 13, so the comment is never empty
 *  (an empty PAX value means "delete the keyword") */
function commentRecord(total: number): Buffer {
  const fill = total - String(total).length - ' comment=\n'.length;
  return Buffer.from(`${total} comment=${'x'.repeat(fill)}\n`, 'latin1');
}
const MIN_COMMENT = 13;

/** ustar's magic 'ustar\0' or GNU's 'ustar  \0': the formats with device fields (Go's reader takes any other as V7) */
function hasDeviceFields(b: Buffer): boolean {
  return isUstar(b) || b.toString('latin1', MAGIC, MAGIC + 8) === 'ustar  \0';
}

/** [prefix, name] for ustar's two name fields, or undefined when the name cannot be split to fit */
function splitUstarName(name: string): [string, string] | undefined {
  // callers pass printable ASCII only, so characters are bytes
  if (name.length <= 100) return ['', name];
  for (let i = name.indexOf('/'); i >= 0 && i <= 155; i = name.indexOf('/', i + 1)) {
    if (name.length - i - 1 <= 100 && i + 1 < name.length) return [name.slice(0, i), name.slice(i + 1)];
  }
  return undefined;
}

/** printable ASCII into a field (callers checked it), without a call into C++ per field */
function writeAscii(b: Buffer, off: number, len: number, s: string): void {
  const n = Math.min(len, s.length);
  for (let i = 0; i < n; i++) b[off + i] = s.charCodeAt(i);
}

/** a ustar header block written into `b` at `at` (zeroed by the caller) */
function ustarInto(b: Buffer, at: number, name: string, prefix: string, type: number, mode: number, uid: number, gid: number, size: number, mtime: number, linkname: string | undefined, uname: string | undefined, gname: string | undefined, devmajor: number, devminor: number): void {
  writeAscii(b, at + NAME, 100, name);
  writeOctal(b, at + MODE, 8, mode);
  writeOctal(b, at + UID, 8, uid);
  writeOctal(b, at + GID, 8, gid);
  writeOctal(b, at + SIZE, 12, size);
  writeOctal(b, at + MTIME, 12, mtime);
  b[at + TYPEFLAG] = type;
  if (linkname) writeAscii(b, at + LINKNAME, 100, linkname);
  writeAscii(b, at + MAGIC, 8, 'ustar\u000000');
  if (uname) writeAscii(b, at + UNAME, 32, uname);
  if (gname) writeAscii(b, at + GNAME, 32, gname);
  writeNumber(b, at + DEVMAJOR, 8, devmajor);
  writeNumber(b, at + DEVMINOR, 8, devminor);
  if (prefix) writeAscii(b, at + PREFIX, 155, prefix);
  let sum = 8 * 0x20; // the checksum field counts as spaces
  for (let i = at; i < at + BLOCK; i++) sum += b[i];
  writeOctal(b, at + CHKSUM, 7, sum);
  b[at + CHKSUM + 7] = 0x20;
}

function checkUint(e: TarEntry, field: string, v: number | undefined): void {
  if (v !== undefined && !(Number.isSafeInteger(v) && v >= 0)) throw new TarError('ETARFORMAT', `${e.name}: cannot encode ${field} ${v}`, e.name);
}

/** fractional seconds as PAX writes them: '.123' for 123000000 ns, '' for 0 */
function fraction(nsec: number): string {
  if (nsec === 0) return '';
  let s = String(nsec).padStart(9, '0');
  let end = s.length;
  while (s.charCodeAt(end - 1) === 0x30) end--;
  s = s.slice(0, end);
  return `.${s}`;
}

function paxTimeString(t: Timespec): string {
  if (t.sec >= 0 || t.nsec === 0) return `${t.sec}${fraction(t.nsec)}`;
  // {sec: -2, nsec: 5e8} is -1.5 s
  return `-${-t.sec - 1}${fraction(1_000_000_000 - t.nsec)}`;
}

/**
 * The header blocks that go before an entry's body: a ustar header, preceded by a PAX header
 * when something does not fit ustar. With `alignTo`, a PAX comment pads the header so that the
 * body starts at a multiple of `block` (for a header written at `offset` of the tar).
 * A sparse entry is written as PAX sparse 1.0: its body must start with `sparseMapBlock(e.sparse)`,
 * then the data segments; the header's size counts both.
 */
export function encodeHeader(e: TarEntry, opts?: { alignTo?: { offset: number; block: number } }): Buffer {
  checkUint(e, 'mode', e.mode);
  checkUint(e, 'uid', e.uid);
  checkUint(e, 'gid', e.gid);
  checkUint(e, 'size', e.size);
  checkUint(e, 'devmajor', e.devmajor);
  checkUint(e, 'devminor', e.devminor);
  if (!Number.isSafeInteger(e.mtime.sec) || !Number.isInteger(e.mtime.nsec) || e.mtime.nsec < 0 || e.mtime.nsec > 999_999_999) {
    throw new TarError('ETARFORMAT', `${e.name}: cannot encode mtime ${JSON.stringify(e.mtime)}`, e.name);
  }
  const records: Buffer[] = [];

  let size = e.type === 'file' ? e.size : 0;
  let full = e.type === 'dir' ? (e.name === '.' ? './' : `${e.name}/`) : e.name;
  if (e.sparse) {
    if (e.type !== 'file') throw new TarError('ETARFORMAT', `${e.name}: only a file can be sparse`, e.name);
    checkSparse(e.sparse.map, e.sparse.realSize, e.size, e.name, 0);
    checkGnuSegments(e.name, e.sparse);
    // PAX 1.0 sparse: the real name is in GNU.sparse.name; readers that know no sparse files
    // see a plain file under a stand-in name holding the map and the data
    records.push(paxRecord('GNU.sparse.major', '1'));
    records.push(paxRecord('GNU.sparse.minor', '0'));
    records.push(paxRecord('GNU.sparse.name', e.name));
    records.push(paxRecord('GNU.sparse.realsize', String(e.sparse.realSize)));
    const slash = e.name.lastIndexOf('/');
    full = `GNUSparseFile.0/${asciiFallback(e.name.slice(slash + 1), 100 - 'GNUSparseFile.0/'.length)}`;
    size += sparseMapLength(e.sparse);
  }

  let split = isPrintableAscii(full) ? splitUstarName(full) : undefined;
  if (!split) {
    records.push(paxRecord('path', full));
    split = ['', asciiFallback(full, 100)];
  }
  let linkname = e.linkname;
  if (linkname !== undefined && (linkname.length > 100 || !isPrintableAscii(linkname))) {
    records.push(paxRecord('linkpath', linkname));
    linkname = asciiFallback(linkname, 100);
  }
  let { uid, gid } = e;
  if (uid > MAX_OCTAL7) {
    records.push(paxRecord('uid', String(uid)));
    uid = 0;
  }
  if (gid > MAX_OCTAL7) {
    records.push(paxRecord('gid', String(gid)));
    gid = 0;
  }
  if (size > MAX_OCTAL11) {
    records.push(paxRecord('size', String(size)));
    size = 0;
  }
  let mtime = e.mtime.sec;
  if (e.mtime.nsec !== 0 || mtime < 0 || mtime > MAX_OCTAL11) {
    records.push(paxRecord('mtime', paxTimeString(e.mtime)));
    mtime = Math.min(Math.max(mtime, 0), MAX_OCTAL11);
  }
  let { uname, gname } = e;
  if (uname && (uname.length > 31 || !isPrintableAscii(uname))) {
    records.push(paxRecord('uname', uname));
    uname = undefined;
  }
  if (gname && (gname.length > 31 || !isPrintableAscii(gname))) {
    records.push(paxRecord('gname', gname));
    gname = undefined;
  }
  const devmajor = e.devmajor ?? 0;
  const devminor = e.devminor ?? 0;
  if (devmajor > MAX_OCTAL7) records.push(paxRecord('SCHILY.devmajor', String(devmajor)));
  if (devminor > MAX_OCTAL7) records.push(paxRecord('SCHILY.devminor', String(devminor)));
  if (e.pax) for (const k in e.pax) records.push(paxRecord(k, e.pax[k]));
  if (e.xattrs) for (const [k, v] of e.xattrs) records.push(paxRecord(SCHILY_XATTR + k, v));

  let paxLen = 0;
  for (const r of records) paxLen += r.length;

  if (opts?.alignTo) {
    const { offset, block } = opts.alignTo;
    if (!(block > 0 && block % BLOCK === 0) || offset % BLOCK !== 0) {
      throw new TarError('ETARFORMAT', `${e.name}: cannot align to ${block} bytes at offset ${offset} (both must be multiples of ${BLOCK})`, e.name);
    }
    if (alignedEnd(offset, paxLen) % block !== 0) {
      // grow the PAX data to whole blocks, one more at a time, until the body lands on the boundary
      let target = paxLen + padding(paxLen);
      while (target - paxLen < MIN_COMMENT || alignedEnd(offset, target) % block !== 0) target += BLOCK;
      records.push(commentRecord(target - paxLen));
      paxLen = target;
    }
  }
  const total = paxLen === 0 ? BLOCK : BLOCK + paxLen + padding(paxLen) + BLOCK;
  const out = Buffer.allocUnsafe(total).fill(0);
  if (paxLen > 0) {
    const base = asciiFallback(e.name.slice(e.name.lastIndexOf('/') + 1), 100 - 'PaxHeaders/'.length);
    ustarInto(out, 0, `PaxHeaders/${base}`, '', 0x78, 0o644, 0, 0, paxLen, mtime, undefined, undefined, undefined, 0, 0);
    let o = BLOCK;
    for (const r of records) o += r.copy(out, o);
  }
  ustarInto(out, total - BLOCK, split[1], split[0], TYPE_FLAG[e.type], e.mode & 0o7777, uid, gid, size, mtime, linkname, uname, gname, devmajor, devminor);
  return out;
}

/** GNU tar's extractor reads every data segment but the last in whole 512-byte blocks, so a
 *  shorter one would shift everything after it; maps made from SEEK_DATA/SEEK_HOLE extents
 *  (file system blocks) always qualify */
function checkGnuSegments(name: string, s: SparseMap): void {
  for (let i = 0; i < s.map.length - 1; i++) {
    if (s.map[i].length % BLOCK !== 0) {
      throw new TarError('ETARFORMAT', `${name}: sparse segment ${s.map[i].offset}+${s.map[i].length} is not a whole number of ${BLOCK}-byte blocks (only the last may be)`, name);
    }
  }
}

/** where the body starts when the header is written at `offset` with `paxLen` bytes of PAX data */
function alignedEnd(offset: number, paxLen: number): number {
  return offset + BLOCK + (paxLen > 0 ? BLOCK + paxLen + padding(paxLen) : 0);
}

function sparseMapText(s: SparseMap): string {
  const map = dataSegments(s.map);
  const last = map[map.length - 1];
  // a file that ends in a hole: GNU tar extends the file to the real size only on a zero-length last segment
  const tail = last === undefined || last.offset + last.length < s.realSize;
  let text = `${map.length + (tail ? 1 : 0)}\n`;
  for (const seg of map) text += `${seg.offset}\n${seg.length}\n`;
  if (tail) text += `${s.realSize}\n0\n`;
  return text;
}

function sparseMapLength(s: SparseMap): number {
  const n = sparseMapText(s).length;
  return n + padding(n);
}

/**
 * The PAX 1.0 sparse map that starts the body of a sparse entry (decimal lines padded to a
 * block): the caller writes it right after `encodeHeader(e)`, then the data segments.
 */
export function sparseMapBlock(s: SparseMap): Buffer {
  const text = sparseMapText(s);
  const out = Buffer.alloc(text.length + padding(text.length));
  out.write(text, 0, 'latin1');
  return out;
}
