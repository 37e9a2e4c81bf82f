// Entry names as a tar stores them -> the relative paths we use, refusing any that would land
// outside the root. Symlink targets are data and are not passed through here.
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
