// Entry names as a tar stores them -> the relative paths we use, refusing any that would land
// outside the root. Symlink targets are data and are not passed through here.
import { isUtf8 } from 'node:buffer';
import { TarError } from './errors.ts';

const SLASH = 0x2f;
const DOT = 0x2e;

/**
 * '.' for the root; no leading './' or '/', no trailing '/', no empty, '.' or '..' components.
 * '..' is resolved lexically; one that climbs above the root, an absolute name or a NUL byte
 * is refused (ETARPATH).
 */
export function normalizeEntryName(raw: string): string {
  if (raw.length === 0) throw new TarError('ETARPATH', `"": empty name`, raw);
  if (raw.charCodeAt(0) === SLASH) throw new TarError('ETARPATH', `${raw}: absolute name refused`, raw);
  if (raw.includes('\0')) throw new TarError('ETARPATH', `${JSON.stringify(raw)}: NUL byte in name`, raw);
  // most names are already clean (perhaps with a directory's trailing '/'): no split, no join
  let start = 0;
  for (let i = 0; i <= raw.length; i++) {
    if (i < raw.length && raw.charCodeAt(i) !== SLASH) continue;
    const len = i - start;
    const trailing = i === raw.length - 1 && len > 0;
    if (len === 0 || (len === 1 && raw.charCodeAt(start) === DOT) || (len === 2 && raw.charCodeAt(start) === DOT && raw.charCodeAt(start + 1) === DOT)) {
      return slowNormalize(raw);
    }
    if (trailing) return raw.slice(0, i);
    start = i + 1;
  }
  return raw;
}

function slowNormalize(raw: string): string {
  const out: string[] = [];
  for (const part of raw.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (out.length === 0) throw new TarError('ETARPATH', `${raw}: name climbs out of the layer`, raw);
      out.pop();
      continue;
    }
    out.push(part);
  }
  return out.length === 0 ? '.' : out.join('/');
}

// ------------------------------------------------------------------ names as bytes
// A name is any byte string the kernel allows; we keep it in a JS string by "surrogateescape", as
// Python does: valid UTF-8 decodes as usual and each byte that is not part of valid UTF-8 becomes
// the lone surrogate U+DC00+byte (always 0x80..0xff, so U+DC80..U+DCFF). decodeName and
// encodeName are exact inverses; native/names.h is the same pair in C++ (docs/tar-engine.md, "Names").

const ESCAPE_BASE = 0xdc00;

/** bytes -> name (surrogateescape). Valid UTF-8, the usual case, is Buffer's own decode. */
export function decodeName(b: Buffer, start = 0, end = b.length): string {
  let ascii = true;
  for (let i = start; i < end; i++) {
    if (b[i] >= 0x80) {
      ascii = false;
      break;
    }
  }
  if (ascii || isUtf8(b.subarray(start, end))) return b.toString('utf8', start, end);
  let out = '';
  let i = start;
  while (i < end) {
    const c = b[i];
    const n = c < 0x80 ? 1 : c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
    if (n === 1) {
      out += String.fromCharCode(c);
      i++;
      continue;
    }
    if (n > 0 && i + n <= end && isUtf8(b.subarray(i, i + n))) {
      out += b.toString('utf8', i, i + n);
      i += n;
      continue;
    }
    out += String.fromCharCode(ESCAPE_BASE + c);
    i++;
  }
  return out;
}

const SURROGATE = /[\uD800-\uDFFF]/;

/** whether a name may hold escaped bytes (or characters beyond U+FFFF): then only encodeName
 *  gives its bytes */
export function hasSurrogates(s: string): boolean {
  return SURROGATE.test(s);
}

/** name -> bytes, the exact inverse of decodeName. A lone surrogate that is no escaped byte
 *  (one decodeName never makes) is refused: it has no bytes. */
export function encodeName(s: string): Buffer {
  if (!hasSurrogates(s)) return Buffer.from(s, 'utf8');
  const out = Buffer.allocUnsafe(s.length * 3);
  let o = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        o += out.write(s.slice(i, i + 2), o, 'utf8');
        i++;
        continue;
      }
    }
    if (c >= 0xdc80 && c <= 0xdcff) out[o++] = c - ESCAPE_BASE;
    else if (c >= 0xd800 && c <= 0xdfff) throw new TypeError(`${JSON.stringify(s)}: a lone surrogate U+${c.toString(16).toUpperCase()} is no name's byte`);
    else o += out.write(s[i], o, 'utf8');
  }
  return out.subarray(0, o);
}

/** a path for Node's fs calls: the string itself when it is plain UTF-8 (Node would encode it the
 *  same), else its exact bytes (Node encodes a lone surrogate as U+FFFD: another file) */
export function fsPath(s: string): string | Buffer {
  return hasSurrogates(s) ? encodeName(s) : s;
}
