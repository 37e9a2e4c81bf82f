// What the commands share: their shape, output helpers, progress on a terminal, and the flags
// and parsing of id mappings and metadata that several commands take.
import fs from 'node:fs';
import { isatty } from 'node:tty';
import { LayersError } from '../errors.ts';
import { parseIdMap, type IdMap } from '../idmap.ts';
import { openStore, type Store } from '../index.ts';
import { bool, list, str, usageError, type FlagSpec, type Parsed } from './args.ts';

export interface Globals {
  root: string;
  runroot: string;
  driver: string;
  storageOpts: string[];
  json: boolean;
}

export interface Command {
  names: string[];
  /** the positional arguments, for usage */
  args: string;
  help: string;
  min: number;
  max?: number;
  flags: FlagSpec[];
  run(g: Globals, p: Parsed, name: string): Promise<number>;
}

export const out = (s: string) => void process.stdout.write(s);
export const printJson = (v: unknown) => out(JSON.stringify(v) + '\n');

export function open(g: Globals): Promise<Store> {
  return openStore({ root: g.root, runroot: g.runroot, driver: g.driver, storageOpts: g.storageOpts });
}

/** One argument of several failed: say which and why; the command goes on with the others. */
export function reportFailure(cmd: string, arg: string, err: unknown): void {
  process.stderr.write(`layers: ${cmd}: ${arg}: ${(err as Error).message ?? String(err)}\n`);
}

/**
 * One of the peer's delete commands: each argument in turn, a failure reported and the others
 * gone on with; `--json` prints {"<arg>": "<error, or empty when it went>"}; exit 1 if any failed.
 */
export function deleteCommand(names: string[], args: string, help: string, remove: (store: Store, ref: string) => Promise<unknown>): Command {
  return {
    names,
    args,
    help,
    min: 1,
    flags: [json],
    async run(g, p, cmd) {
      const store = await open(g);
      const results: Record<string, string> = {};
      for (const ref of p.positionals) {
        try {
          await remove(store, ref);
          results[ref] = '';
        } catch (err) {
          results[ref] = (err as Error).message;
          if (!g.json) reportFailure(cmd, ref, err);
        }
      }
      if (g.json) printJson(results);
      return Object.values(results).some((e) => e !== '') ? 1 : 0;
    },
  };
}

/**
 * "\rimporting layer.tar (300.0 MB): 4.2s" on stderr every 250 ms while work runs, when stderr is
 * a terminal. `bytes` is polled for the size so far, when it can be known.
 */
function progress(label: string, bytes?: () => number | undefined): () => void {
  if (!process.stderr.isTTY) return () => undefined;
  const t0 = Date.now();
  const timer = setInterval(() => {
    const b = bytes?.();
    const size = b === undefined ? '' : ` (${(b / 1e6).toFixed(1)} MB)`;
    process.stderr.write(`\r${label}${size}: ${((Date.now() - t0) / 1000).toFixed(1)}s`);
  }, 250);
  timer.unref();
  return () => {
    clearInterval(timer);
    process.stderr.write('\r\x1b[K');
  };
}

export async function withProgress<T>(label: string, work: Promise<T>, bytes?: () => number | undefined): Promise<T> {
  const stop = progress(label, bytes);
  try {
    return await work;
  } finally {
    stop();
  }
}

export const json: FlagSpec = { names: ['json', 'j'], help: 'print one JSON document' };
export const fileIn: FlagSpec = { names: ['file', 'f'], value: true, help: 'read the tar from this file instead of stdin' };

export const mapFlags: FlagSpec[] = [
  { names: ['uidmap'], value: true, help: 'UID map, containerID:hostID:size[,...]' },
  { names: ['gidmap'], value: true, help: 'GID map, containerID:hostID:size[,...]' },
  { names: ['hostuidmap'], help: 'force the host UID map (no mapping)' },
  { names: ['hostgidmap'], help: 'force the host GID map (no mapping)' },
  { names: ['subuidmap'], value: true, help: "UID map from a user's ranges in /etc/subuid" },
  { names: ['subgidmap'], value: true, help: "GID map from a group's ranges in /etc/subgid" },
];

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

export function idMaps(p: Parsed): { uidmap: IdMap[]; gidmap: IdMap[] } {
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
    uidmap: pick('hostuidmap', 'uidmap', 'subuidmap', '/etc/subuid'),
    gidmap: pick('hostgidmap', 'gidmap', 'subgidmap', '/etc/subgid'),
  };
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

/** What the peer prints for a new layer, image or container: its id, then each name after a tab. */
export function printCreated(g: Globals, rec: { id: string; names?: string[] }): void {
  if (g.json) return printJson(rec);
  out(`${rec.id}\n`);
  for (const n of rec.names ?? []) out(`\t${n}\n`);
}
