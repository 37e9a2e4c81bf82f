// Entry names as a tar stores them -> the relative paths we use, refusing any that would land
// outside the root. Symlink targets are data and are not passed through here.
import { TarError } from './errors.ts';

/** '.' for the root; no leading './' or '/', no trailing '/', no empty, '.' or '..' components. */
export function normalizeEntryName(raw: string): string {
  if (raw.includes('\0')) throw new TarError('ETARPATH', `${JSON.stringify(raw)}: NUL byte in name`, raw);
  if (raw.startsWith('/')) throw new TarError('ETARPATH', `${raw}: absolute name refused`, raw);
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
