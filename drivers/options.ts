// A driver's global options (--storage-opt, $STORAGE_OPTS), read as containers/storage 1.43 reads
// them: 'key=value', the key given as '<driver>.<key>', '.<key>' or bare, in any case (the peer
// lower-cases it). A key the driver does not take, another driver's among them, is refused naming
// it, before the driver makes anything on disk (docs/architecture.md, "Driver options").
import path from 'node:path';
import { LayersError } from '../lib/errors.ts';
import type { DriverName } from './driver.ts';

/** Where an additional (read-only) image store is: vfs and overlay read it, btrfs refuses it. */
export const IMAGESTORE = 'imagestore';

/**
 * key -> value of the options for `driver`, keys lower-cased without their prefix. `takes`: the
 * keys it knows (the peer's names); an option given twice keeps its last value, as the peer does.
 */
export function driverOptions(driver: DriverName, options: readonly string[], takes: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  const prefixes = driver === 'overlay' ? ['overlay.', 'overlay2.', '.'] : [`${driver}.`, '.'];
  for (const o of options) {
    const eq = o.indexOf('=');
    if (eq <= 0) throw new LayersError('EUSAGE', `bad storage option "${o}": want key=value`);
    const given = o.slice(0, eq).trim();
    let key = given.toLowerCase();
    const prefix = prefixes.find((p) => key.startsWith(p));
    if (prefix) key = key.slice(prefix.length);
    if (!takes.includes(key))
      throw new LayersError('EUSAGE', `${driver}: unknown storage option "${given}" (the ${driver} driver takes ${takes.map((k) => `${driver}.${k}`).join(', ')})`);
    out[key] = o.slice(eq + 1).trim();
  }
  return out;
}

/** A boolean option's value as Go's strconv.ParseBool reads it. */
export function boolOption(driver: DriverName, key: string, value: string | undefined): boolean {
  if (value === undefined) return false;
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(value)) return true;
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(value)) return false;
  throw new LayersError('EUSAGE', `${driver}: storage option ${driver}.${key}=${value}: want true or false`);
}

/** An option the peer takes and this driver cannot honour: refused, rather than silently dropped. */
export function unsupportedOption(driver: DriverName, key: string, why: string): LayersError {
  return new LayersError('EDRIVER', `${driver}: storage option ${driver}.${key} is not supported: ${why}`);
}

/**
 * The bytes of a size option, read as the peer reads it (docker's RAMInBytes): a number with an
 * optional k/m/g/t/p suffix, binary multiples, optional "i" and "b".
 */
export function parseSize(driver: DriverName, value: string): number {
  const m = /^(\d+(?:\.\d+)?) ?([kmgtp])?i?b?$/i.exec(value.trim());
  if (!m) throw new LayersError('EUSAGE', `${driver}: invalid size "${value}": want a number of bytes with an optional k, m, g, t or p suffix`);
  const exp = m[2] ? 'kmgtp'.indexOf(m[2].toLowerCase()) + 1 : 0;
  return Math.floor(Number(m[1]) * 1024 ** exp);
}

/**
 * The additional image stores `<driver>.imagestore=PATH` options name (also `.imagestore=`, and
 * `overlay2.` for overlay), absolute, in order (docs/sharing.md, "Additional image stores").
 */
export function imageStorePaths(driver: string, options: readonly string[]): string[] {
  const prefixes = ['', driver, ...(driver === 'overlay' ? ['overlay2'] : [])];
  return options.flatMap((o) => {
    const m = /^([^=.]*)\.imagestore=(.*)$/i.exec(o.trim());
    return m && prefixes.includes(m[1]!.toLowerCase()) && m[2] ? [path.resolve(m[2].trim())] : [];
  });
}

