// Flags several commands take, and what they parse to: --json, the id and names of a new record,
// the id mappings (--uidmap, --subuidmap, ...), --layer-opt, metadata (-m / -f) and the tar input
// (-f FILE or stdin).
import fs from 'node:fs';
import { LayersError } from '../errors.ts';
import { parseIdMap, type IdMap } from '../idmap.ts';
import { bool, list, str, usageError, type FlagSpec, type Parsed } from './args.ts';

export const json: FlagSpec = { names: ['json', 'j'], help: 'print one JSON document' };
export const idFlag = (what: string): FlagSpec => ({ names: ['id', 'i'], value: true, help: `${what} ID (default: 64 random hex digits)` });
export const nameFlag = (what: string): FlagSpec => ({ names: ['name', 'n'], value: true, multi: true, help: `${what} name; repeatable` });
export const labelFlag: FlagSpec = { names: ['label', 'l'], value: true, help: 'mount label' };
export const quietIds: FlagSpec = { names: ['quiet', 'q'], help: 'only the IDs' };

export const mapFlags: FlagSpec[] = [
  { names: ['uidmap'], value: true, help: 'UID map, containerID:hostID:size[,...]' },
  { names: ['gidmap'], value: true, help: 'GID map, containerID:hostID:size[,...]' },
  { names: ['hostuidmap'], help: 'force the host UID map (no mapping)' },
  { names: ['hostgidmap'], help: 'force the host GID map (no mapping)' },
  { names: ['subuidmap'], value: true, help: "UID map from a user's ranges in /etc/subuid" },
  { names: ['subgidmap'], value: true, help: "GID map from a group's ranges in /etc/subgid" },
];

/** containers' ids 0.. laid over the ranges of `who` in /etc/subuid or /etc/subgid, in file order */
function subIdMap(file: string, who: string): IdMap[] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new LayersError('EUSAGE', `cannot read ${file}: ${(err as NodeJS.ErrnoException).code}`);
  }
  const map: IdMap[] = [];
  let next = 0;
  for (const line of text.split('\n')) {
    const [name, start, count] = line.trim().split(':');
    if (name !== who || start === undefined || count === undefined) continue;
    map.push({ container_id: next, host_id: Number(start), size: Number(count) });
    next += Number(count);
  }
  if (map.length === 0) throw new LayersError('EUSAGE', `no ranges for "${who}" in ${file}`);
  return map;
}

/**
 * The id mappings mapFlags ask for, each of UIDs and GIDs by the first that is given of: the host
 * map (none), an explicit map, a user's or group's subordinate ranges. `subIdFiles` is for tests.
 */
export function idMaps(p: Parsed, subIdFiles = { uid: '/etc/subuid', gid: '/etc/subgid' }): { uidmap: IdMap[]; gidmap: IdMap[] } {
  const pick = (host: string, explicit: string, sub: string, subFile: string): IdMap[] => {
    if (bool(p, host)) return [];
    const spec = str(p, explicit);
    if (spec !== undefined) {
      try {
        return parseIdMap(spec);
      } catch (err) {
        throw new LayersError('EUSAGE', `--${explicit}: ${(err as Error).message}`);
      }
    }
    const who = str(p, sub);
    return who !== undefined ? subIdMap(subFile, who) : [];
  };
  return {
    uidmap: pick('hostuidmap', 'uidmap', 'subuidmap', subIdFiles.uid),
    gidmap: pick('hostgidmap', 'gidmap', 'subgidmap', subIdFiles.gid),
  };
}

/** Ours: options for the layer being made, which the driver reads (btrfs: size=10G, a quota). */
export const layerOptFlag: FlagSpec = { names: ['layer-opt'], value: true, multi: true, help: 'driver option for the new layer, KEY=VALUE (btrfs: size=10G); repeatable' };

export function layerOpts(p: Parsed): Record<string, string> | undefined {
  const given = list(p, 'layer-opt');
  if (given.length === 0) return undefined;
  const opts: Record<string, string> = {};
  for (const kv of given) {
    const i = kv.indexOf('=');
    if (i <= 0) throw usageError(`--layer-opt ${kv}: want KEY=VALUE`);
    opts[kv.slice(0, i)] = kv.slice(i + 1);
  }
  return opts;
}

/** -m TEXT or -f FILE, as create-image, create-container and set-metadata take metadata. */
export const metadataFlags: FlagSpec[] = [
  { names: ['metadata', 'm'], value: true, help: 'metadata' },
  { names: ['metadata-file', 'f'], value: true, help: 'read the metadata from this file' },
];

export function metadataOf(p: Parsed): string | undefined {
  const file = str(p, 'metadata-file');
  if (file === undefined) return str(p, 'metadata');
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new LayersError('EINPUT', `cannot read ${file}: ${(err as NodeJS.ErrnoException).code}`);
  }
}

export const tarFileFlag: FlagSpec = { names: ['file', 'f'], value: true, help: 'read the tar from this file instead of stdin' };

/** ours: the digests an imported input must have (docs/cli.md, "Expected digests") */
export const expectedDigestFlags: FlagSpec[] = [
  { names: ['compressed-digest'], value: true, help: 'fail unless the input as given has this digest (sha256:...)' },
  { names: ['uncompressed-digest'], value: true, help: 'fail unless the uncompressed tar has this digest (sha256:...)' },
];

export function expectedDigests(p: Parsed): { compressedDigest?: string; uncompressedDigest?: string } {
  const c = str(p, 'compressed-digest');
  const u = str(p, 'uncompressed-digest');
  return { ...(c !== undefined && { compressedDigest: c }), ...(u !== undefined && { uncompressedDigest: u }) };
}

/** The tar to read: -f FILE, else stdin as fd 0 (process.stdin is never touched: it would make fd 0 non-blocking). */
export function tarInput(p: Parsed): { input: number | string; what: string; size?: number } {
  const file = str(p, 'file');
  if (file !== undefined) {
    let size: number | undefined;
    try {
      size = fs.statSync(file).size;
    } catch {
      // the store reports the open failure, naming the file
    }
    return { input: file, what: file, size };
  }
  if (isTerminal(0)) throw usageError('no tar to read: give -f FILE or pipe a tar to stdin');
  return { input: 0, what: 'stdin' };
}

/** isatty(fd), with node:tty loaded only when a command asks: it loads net and the streams, a
 *  tenth of `layers version`'s start-up (docs/performance.md, "Start-up"). */
export function isTerminal(fd: number): boolean {
  return process.getBuiltinModule('node:tty').isatty(fd);
}
