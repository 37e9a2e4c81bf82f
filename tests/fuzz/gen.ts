// The tar generator of the differential fuzzer (docs/tar-engine.md, "Differential fuzzing").
// Every case is a pure function of one 32-bit seed: a small PRNG picks entries (every type flag,
// unknown ones too), how each is encoded (ustar, prefix split, GNU L/K, PAX, base-256 numbers,
// GNU and PAX sparse maps), and then byte-level damage. The headers are laid out here by hand,
// not with lib/tar/header.ts, so the generator shares no code with the reader it tests.

/** mulberry32: small, fast, and the same sequence for the same seed everywhere */
export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  next(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)];
  }
}

/** the seed of case `i` of a run started with `runSeed` (so one number replays one case) */
export function caseSeed(runSeed: number, i: number): number {
  let h = (runSeed ^ Math.imul(i + 1, 0x9e3779b1)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b) >>> 0;
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35) >>> 0;
  return (h ^ (h >>> 16)) >>> 0;
}

const BLOCK = 512;
const pad = (n: number) => (BLOCK - (n % BLOCK)) % BLOCK;

/** where a case may aim a symlink to test for escapes: the canary directory beside the store */
export interface GenContext {
  /** absolute path of the canary directory */
  canary: string;
}

/** the names entries take: few, so that entries collide, replace and go through each other */
const NAMES = [
  'a', 'b', 'c', 'a/b', 'a/c', 'a/b/c', 'b/x', 'd', 'd/e', 'd/e/f', 'link', 'link/x', 'link/y/z', 'hl', 'hl2',
  '.wh.a', '.wh.b', 'a/.wh.b', 'a/.wh.c', '.wh..wh..opq', 'a/.wh..wh..opq', 'd/.wh..wh..opq', '.wh..wh.plnk',
  '.', './', './a', 'a/', 'a//b', 'a/./c', 'a/../b', 'dev/n', 'a/b/c/d', 'e', 'é', 'sp ace', 'tab\tname',
];
/** names a strict reader refuses: rarer, or every case would be refused */
const BAD_NAMES = ['/a', '../x', 'x/../../y', ''];
const HIGH_NAMES = ['hi\xff', 'hi\xfe\xff', 'hi\xff\xfe'];

const TYPES = ['0', '\0', '1', '2', '3', '4', '5', '6', '7', 'D', 'S', 'M', 'N', 'V', 'A', 'Z', 'g', 'x', 'L', 'K'];
const MODES = [0o644, 0o755, 0o4755, 0o2755, 0o1777, 0o700, 0o000, 0o777, 0o7777, 0o100644, 0o170777, 0o20644];
const IDS = [0, 0, 0, 1, 1000, 65534, 65535, 2 ** 21 - 1, 2 ** 21, 300000, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 2, 2 ** 32 - 1, 2 ** 32, 2 ** 40];
const XATTRS = ['user.a', 'user.bin', 'security.capability', 'security.selinux', 'trusted.overlay.opaque', 'trusted.x', 'system.posix_acl_access', 'bogus.ns', 'user.'];

interface Spec {
  name: string;
  type: string;
  mode: number;
  uid: number;
  gid: number;
  mtime: number;
  mtimeNs?: number;
  body: Buffer;
  linkname: string;
  devmajor: number;
  devminor: number;
  xattrs: Array<[string, Buffer]>;
  /** a sparse file: real size and data segments (the body is the segments' bytes) */
  sparse?: { realSize: number; map: Array<[number, number]>; format: 'gnu' | '0.0' | '0.1' | '1.0' };
  uname: string;
  gname: string;
}

function latin1(s: string): Buffer {
  return Buffer.from(s, 'latin1');
}

function nameFor(rng: Rng, ctx: GenContext): string {
  const r = rng.next();
  if (r < 0.03) return rng.pick(HIGH_NAMES);
  if (r < 0.04) return rng.pick(BAD_NAMES);
  if (r < 0.1) return 'L'.repeat(90 + rng.int(30)) + '/' + 'n'.repeat(rng.int(120) + 1);
  if (r < 0.12) return 'p'.repeat(150) + '/' + 'q'.repeat(rng.int(200) + 1);
  if (r < 0.13) return 'x'.repeat(100);
  if (r < 0.135) return ctx.canary.slice(1) + '/x'; // a relative name that is the canary's path under the root
  return utf8AsLatin1(rng.pick(NAMES));
}

/** names are written as their UTF-8 bytes; the builders take strings of bytes (latin1) */
function utf8AsLatin1(s: string): string {
  return Buffer.from(s, 'utf8').toString('latin1');
}

function linkTarget(rng: Rng, ctx: GenContext, type: string): string {
  const r = rng.next();
  if (type === '1' && r < 0.7) return utf8AsLatin1(rng.pick(NAMES));
  if (r < 0.15) return ctx.canary; // absolute, out of the root: followed by a later entry, an escape
  if (r < 0.3) return '../'.repeat(rng.int(12) + 1) + ctx.canary.slice(1);
  if (r < 0.35) return 't'.repeat(100 + rng.int(200));
  if (r < 0.4) return '';
  return rng.pick(['a', 'b', 'd', 'a/b', '.', '..', '/', 'link', 'nonexistent', '/etc', 'd/e']);
}

function body(rng: Rng): Buffer {
  const n = rng.pick([0, 0, 1, 5, 511, 512, 513, 1024, 3000]);
  const b = Buffer.alloc(n);
  const seed = rng.int(256);
  for (let i = 0; i < n; i++) b[i] = (i * 7 + seed) & 0xff;
  return b;
}

function spec(rng: Rng, ctx: GenContext): Spec {
  const type = rng.chance(0.45) ? '0' : rng.chance(0.4) ? '5' : rng.chance(0.8) ? rng.pick(['1', '2', '3', '4', '6']) : rng.pick(TYPES.filter((t) => !'gxLK'.includes(t)));
  const s: Spec = {
    name: nameFor(rng, ctx),
    type,
    mode: rng.chance(0.6) ? (type === '5' ? 0o755 : 0o644) : rng.pick(MODES),
    uid: rng.chance(0.8) ? 0 : rng.chance(0.7) ? rng.pick([1, 1000, 65534]) : rng.pick(IDS),
    gid: rng.chance(0.8) ? 0 : rng.chance(0.7) ? rng.pick([1, 1000, 65534]) : rng.pick(IDS),
    mtime: rng.chance(0.8) ? 1_600_000_000 + rng.int(1000) : rng.pick([0, 1, -1, 2 ** 33 + 5, 8 ** 11 - 1]),
    mtimeNs: rng.chance(0.2) ? rng.int(1_000_000_000) : undefined,
    body: Buffer.alloc(0),
    linkname: '',
    devmajor: 0,
    devminor: 0,
    xattrs: [],
    uname: rng.chance(0.1) ? 'root' : '',
    gname: '',
  };
  if ('07DSMNAZ\0'.includes(type) || (type !== '5' && rng.chance(0.03))) s.body = body(rng);
  if (type === '1' || type === '2' || rng.chance(0.03)) s.linkname = linkTarget(rng, ctx, type);
  if (type === '3' || type === '4' || rng.chance(0.02)) {
    s.devmajor = rng.chance(0.9) ? rng.pick([0, 1, 7, 4095]) : rng.pick([4096, 2 ** 21 - 1]);
    s.devminor = rng.chance(0.9) ? rng.pick([0, 3, 200, 70000, 2 ** 20 - 1]) : 2 ** 20;
  }
  const nx = rng.chance(0.25) ? rng.int(3) + 1 : 0;
  for (let i = 0; i < nx; i++) {
    const v = rng.chance(0.5) ? Buffer.from('value' + i) : Buffer.from([0, 0x80, 0xff, 0x0a, rng.int(256)]);
    const key = rng.pick(XATTRS);
    s.xattrs.push([key, key === 'security.capability' ? Buffer.from('0100000200200000000000000000000000000000', 'hex') : v]);
  }
  if ((type === '0' || type === 'S') && rng.chance(0.15)) {
    const realSize = rng.pick([0, 100, 4096, 10000, 1 << 20]);
    const map: Array<[number, number]> = [];
    let at = 0;
    const n = rng.int(3);
    for (let i = 0; i < n && at < realSize; i++) {
      const off = at + rng.int(Math.max(1, (realSize - at) >> 1));
      const len = Math.min(realSize - off, rng.int(700) + 1);
      map.push([off, len]);
      at = off + len;
    }
    if (rng.chance(0.1)) map.push([rng.int(realSize + 50), rng.int(100)]); // perhaps overlapping or past the end
    s.sparse = { realSize, map, format: rng.pick(['gnu', '0.0', '0.1', '1.0'] as const) };
    s.body = body(rng).subarray(0, 0);
    const total = map.reduce((n, [, l]) => n + l, 0);
    s.body = Buffer.alloc(total, 0x5a);
  }
  return s;
}

/** a numeric header field: octal, or base-256 when asked or when octal does not fit */
function numField(h: Buffer, off: number, len: number, v: number, rng: Rng): void {
  const octal = Math.trunc(v).toString(8);
  if (v >= 0 && octal.length <= len - 1 && !rng.chance(0.05)) {
    h.write(octal.padStart(len - 1, '0') + (rng.chance(0.05) ? ' ' : '\0'), off, len, 'latin1');
    return;
  }
  // base-256: high bit set, big-endian two's complement
  let x = BigInt(Math.trunc(v));
  for (let i = off + len - 1; i > off; i--) {
    h[i] = Number(x & 0xffn);
    x >>= 8n;
  }
  h[off] = 0x80 | (v < 0 ? 0x7f : 0);
}

export function checksum(h: Buffer): void {
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += h[i];
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'latin1');
}

function paxRecords(records: Array<[string, Buffer]>): Buffer {
  const out: Buffer[] = [];
  for (const [k, v] of records) {
    const rest = Buffer.concat([latin1(' ' + k + '='), v, latin1('\n')]);
    let len = rest.length + 1;
    while (String(len).length + rest.length !== len) len++;
    out.push(Buffer.concat([latin1(String(len)), rest]));
  }
  return Buffer.concat(out);
}

/** a header with its data: for x/g/L/K extension headers */
function extension(type: string, data: Buffer, rng: Rng, name = '././@LongLink'): Buffer {
  const h = Buffer.alloc(BLOCK);
  h.write(name, 0, 100, 'latin1');
  numField(h, 100, 8, 0o644, rng);
  numField(h, 108, 8, 0, rng);
  numField(h, 116, 8, 0, rng);
  numField(h, 124, 12, data.length, rng);
  numField(h, 136, 12, 0, rng);
  h.write(type, 156, 1, 'latin1');
  h.write(type === 'x' || type === 'g' ? 'ustar\x0000' : 'ustar  \0', 257, 8, 'latin1');
  checksum(h);
  return Buffer.concat([h, data, Buffer.alloc(pad(data.length))]);
}

/** one entry, encoded in one of the ways tars in the wild do */
function encode(s: Spec, rng: Rng): Buffer {
  const parts: Buffer[] = [];
  const gnu = rng.chance(0.3) || (s.sparse?.format === 'gnu');
  const pax: Array<[string, Buffer]> = [];
  let name = s.name;
  let link = s.linkname;
  let prefix = '';
  const nameBytes = latin1(name).length;
  if (nameBytes > 100 || rng.chance(0.1)) {
    const how = rng.int(4);
    if (how === 0 && !gnu) {
      // ustar prefix split at a slash, when one fits
      const cut = name.lastIndexOf('/', 155);
      if (cut > 0 && name.length - cut - 1 <= 100 && name.length - cut - 1 > 0) {
        prefix = name.slice(0, cut);
        name = name.slice(cut + 1);
      } else pax.push(['path', latin1(name)]);
    } else if (how === 1 || gnu) parts.push(extension('L', Buffer.concat([latin1(name), rng.chance(0.8) ? Buffer.from([0]) : Buffer.alloc(0)]), rng));
    else if (how === 2) pax.push(['path', latin1(name)]);
    else {
      // both, the same name (and sometimes a different one: an ambiguity the reader must refuse)
      parts.push(extension('L', latin1(name + '\0'), rng));
      pax.push(['path', latin1(rng.chance(0.7) ? name : name + 'z')]);
    }
    if (latin1(name).length > 100 && prefix === '') name = name.slice(0, 100);
  }
  if (latin1(link).length > 100 || rng.chance(0.05)) {
    if (gnu || rng.chance(0.5)) parts.push(extension('K', latin1(link + '\0'), rng));
    else pax.push(['linkpath', latin1(link)]);
    link = link.slice(0, 100);
  }
  const bigUid = s.uid >= 2 ** 21 || s.gid >= 2 ** 21;
  if (bigUid && !gnu && rng.chance(0.7)) {
    pax.push(['uid', latin1(String(s.uid))], ['gid', latin1(String(s.gid))]);
  }
  if (s.mtimeNs !== undefined) pax.push(['mtime', latin1(`${s.mtime}.${String(s.mtimeNs).padStart(9, '0')}`)]);
  for (const [k, v] of s.xattrs) pax.push(['SCHILY.xattr.' + k, v]);
  if (s.devmajor >= 2 ** 21 || rng.chance(0.02)) pax.push(['SCHILY.devmajor', latin1(String(s.devmajor))], ['SCHILY.devminor', latin1(String(s.devminor))]);
  let size = s.body.length;
  let type = s.type;
  let sparseBody: Buffer | undefined;
  if (s.sparse) {
    const sp = s.sparse;
    if (sp.format === 'gnu') type = 'S';
    else {
      type = '0';
      pax.push(['GNU.sparse.realsize', latin1(String(sp.realSize))]);
      if (sp.format === '0.0') {
        pax.push(['GNU.sparse.numblocks', latin1(String(sp.map.length))]);
        for (const [o, l] of sp.map) pax.push(['GNU.sparse.offset', latin1(String(o))], ['GNU.sparse.numbytes', latin1(String(l))]);
        pax.push(['GNU.sparse.size', latin1(String(sp.realSize))]);
      } else if (sp.format === '0.1') {
        pax.push(['GNU.sparse.numblocks', latin1(String(sp.map.length))], ['GNU.sparse.map', latin1(sp.map.flat().join(','))]);
        pax.push(['GNU.sparse.size', latin1(String(sp.realSize))]);
      } else {
        pax.push(['GNU.sparse.major', latin1('1')], ['GNU.sparse.minor', latin1('0')], ['GNU.sparse.name', latin1(s.name)]);
        const text = [String(sp.map.length), ...sp.map.flat().map(String)].join('\n') + '\n';
        sparseBody = Buffer.concat([latin1(text), Buffer.alloc(pad(text.length))]);
        size += sparseBody.length;
        name = rng.chance(0.5) ? 'GNUSparseFile.0/' + name.slice(0, 80) : name;
      }
    }
  }
  if (pax.length > 0) parts.push(extension('x', paxRecords(pax), rng, 'PaxHeaders.0/' + latin1(s.name).toString('latin1').slice(0, 80)));
  const h = Buffer.alloc(BLOCK);
  h.write(name, 0, 100, 'latin1');
  numField(h, 100, 8, s.mode, rng);
  numField(h, 108, 8, s.uid, rng);
  numField(h, 116, 8, s.gid, rng);
  numField(h, 124, 12, size, rng);
  numField(h, 136, 12, s.mtime, rng);
  h.write(type, 156, 1, 'latin1');
  h.write(link, 157, 100, 'latin1');
  h.write(gnu ? 'ustar  \0' : rng.chance(0.03) ? '\0\0\0\0\0\0\0\0' : 'ustar\x0000', 257, 8, 'latin1');
  h.write(s.uname, 265, 32, 'latin1');
  h.write(s.gname, 297, 32, 'latin1');
  numField(h, 329, 8, s.devmajor, rng);
  numField(h, 337, 8, s.devminor, rng);
  const ext: Buffer[] = [];
  if (gnu && s.sparse && type === 'S') {
    // the old GNU sparse header: 4 map slots here, more in extension blocks
    const map = s.sparse.map;
    const slot = (b: Buffer, off: number, [o, l]: [number, number]) => {
      numField(b, off, 12, o, rng);
      numField(b, off + 12, 12, l, rng);
    };
    map.slice(0, 4).forEach((m, i) => slot(h, 386 + i * 24, m));
    numField(h, 483, 12, s.sparse.realSize, rng);
    for (let i = 4; i < map.length; i += 21) {
      const b = Buffer.alloc(BLOCK);
      map.slice(i, i + 21).forEach((m, j) => slot(b, j * 24, m));
      b[504] = i + 21 < map.length ? 1 : 0;
      ext.push(b);
    }
    h[482] = ext.length > 0 ? 1 : 0;
  } else if (prefix) h.write(prefix, 345, 155, 'latin1');
  checksum(h);
  parts.push(h, ...ext);
  if (sparseBody) parts.push(sparseBody);
  parts.push(s.body, Buffer.alloc(pad(size)));
  return Buffer.concat(parts);
}

/** a case: the tar bytes, and whether it is applied on the base layer (for whiteouts) */
export interface Case {
  seed: number;
  tar: Buffer;
  onBase: boolean;
  /** what was done to it, for the report of a failure */
  notes: string[];
  /** what it holds: 'whiteout', 'hardlink', 'root' */
  features: Set<string>;
}

/** the parent layer some cases apply onto: dirs and files for whiteouts to remove */
export function baseTar(): Buffer {
  const rng = new Rng(1);
  const entries: Spec[] = [];
  const plain = (name: string, type: string, bodyText = ''): Spec => ({
    name, type, mode: type === '5' ? 0o755 : 0o644, uid: 0, gid: 0, mtime: 1_500_000_000, body: Buffer.from(bodyText), linkname: '', devmajor: 0, devminor: 0, xattrs: [], uname: '', gname: '',
  });
  entries.push(plain('a', '5'), plain('a/b', '0', 'base a/b\n'), plain('a/c', '5'), plain('a/c/x', '0', 'x'), plain('b', '0', 'base b\n'), plain('d', '5'), plain('d/e', '5'), plain('d/e/f', '0', 'f'));
  entries.push({ ...plain('link', '2'), linkname: 'd' });
  return Buffer.concat([...entries.map((s) => encode(s, rng)), Buffer.alloc(2 * BLOCK)]);
}

/** the tar of one case, a pure function of its seed */
export function generate(seed: number, ctx: GenContext): Case {
  const rng = new Rng(seed);
  const notes: string[] = [];
  const features = new Set<string>();
  const names: string[] = [];
  const parts: Buffer[] = [];
  const n = rng.int(6) + 1;
  let prev: Spec | undefined;
  for (let i = 0; i < n; i++) {
    let s = spec(rng, ctx);
    // most hardlinks name an entry made before (else nearly every tar with one is refused)
    if (s.type === '1' && names.length > 0 && rng.chance(0.7)) s.linkname = rng.pick(names);
    names.push(s.name);
    // link chains and replacement: a hardlink to the last entry, an entry through the last symlink,
    // the same name again with another type
    if (prev && rng.chance(0.2)) s = { ...s, type: '1', body: Buffer.alloc(0), sparse: undefined, linkname: prev.name };
    else if (prev && prev.type === '2' && rng.chance(0.4)) s = { ...s, name: prev.name + '/' + rng.pick(['x', 'y/z', '..', '.wh.x']) };
    else if (prev && rng.chance(0.15)) s = { ...s, name: prev.name };
    prev = s;
    if (s.type === '1') features.add('hardlink');
    if (s.name.includes('.wh.')) features.add('whiteout');
    if (['.', './'].includes(s.name)) features.add('root');
    if (rng.chance(0.04)) {
      const g = paxRecords([[rng.pick(['uid', 'comment', 'path', 'SCHILY.xattr.user.g', 'mtime']), latin1(String(rng.int(5000)))]]);
      parts.push(extension('g', g, rng, 'pax_global_header'));
      notes.push('global header');
    }
    if (rng.chance(0.02)) {
      // a raw extension header of a random kind with nothing or junk in it
      parts.push(extension(rng.pick(['x', 'L', 'K', 'g']), rng.chance(0.5) ? Buffer.alloc(0) : latin1('junk'), rng));
      notes.push('stray extension');
    }
    parts.push(encode(s, rng));
  }
  const ending = rng.int(10);
  if (ending === 0) notes.push('no end blocks');
  else if (ending === 1) parts.push(Buffer.alloc(BLOCK)), notes.push('one end block');
  else parts.push(Buffer.alloc(2 * BLOCK));
  if (ending === 2) parts.push(latin1('trailing garbage'));
  let tar: Buffer = Buffer.concat(parts);
  if (rng.chance(0.15)) {
    tar = mutate(tar, rng, notes);
    // damage may have made a hardlink of another entry
    for (let off = 0; off + BLOCK <= tar.length; off += BLOCK) if (tar[off + 156] === 0x31) features.add('hardlink');
  }
  return { seed, tar, onBase: rng.chance(0.3), notes, features };
}

/** byte-level damage: flips in headers, a changed size field, a cut; the checksum fixed or not */
function mutate(tar: Buffer, rng: Rng, notes: string[]): Buffer {
  const t = Buffer.from(tar);
  const headers: number[] = [];
  for (let off = 0; off + BLOCK <= t.length; off += BLOCK) if (t[off + 257] === 0x75 /* 'u' of ustar */) headers.push(off);
  const what = rng.int(4);
  const at = headers.length > 0 ? rng.pick(headers) : 0;
  if (what === 0 && t.length > 0) {
    const k = rng.int(4) + 1;
    for (let i = 0; i < k; i++) {
      const off = at + rng.int(BLOCK);
      if (off < t.length) t[off] = rng.chance(0.5) ? t[off] ^ (1 << rng.int(8)) : rng.int(256);
    }
    notes.push(`flipped ${k} bytes in header at ${at}`);
  } else if (what === 1 && at + BLOCK <= t.length) {
    const v = rng.pick([0, 1, 511, 512, 513, 1024, 99999, 2 ** 33]);
    t.write(v.toString(8).padStart(11, '0') + '\0', at + 124, 12, 'latin1');
    notes.push(`size of header at ${at} set to ${v}`);
  } else if (what === 2 && at + BLOCK <= t.length) {
    t[at + 156] = rng.pick(TYPES).charCodeAt(0);
    notes.push(`type of header at ${at} set to ${JSON.stringify(String.fromCharCode(t[at + 156]))}`);
  } else {
    const cut = rng.int(t.length + 1);
    notes.push(`cut at ${cut}`);
    return t.subarray(0, cut);
  }
  if (at + BLOCK <= t.length && rng.chance(0.7)) {
    checksum(t.subarray(at, at + BLOCK));
    notes.push('checksum fixed');
  }
  return t;
}
