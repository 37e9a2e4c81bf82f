// The commands of `layers`, with the names, flags and output formats of containers-storage.
// Each parses its arguments, calls the public API, and prints; nothing here touches records or
// trees directly.
import fs from 'node:fs';
import { createRequire } from 'node:module';
import { isatty } from 'node:tty';
import { LayersError } from '../errors.ts';
import { parseIdMap, type IdMap } from '../idmap.ts';
import { openStore, type LayerRecord, type Store } from '../index.ts';
import { bool, list, str, usageError, type FlagSpec, type Parsed } from './args.ts';
import { drawTree } from './tree.ts';

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

const out = (s: string) => void process.stdout.write(s);
const printJson = (v: unknown) => out(JSON.stringify(v) + '\n');

function open(g: Globals): Promise<Store> {
  return openStore({ root: g.root, runroot: g.runroot, driver: g.driver, storageOpts: g.storageOpts });
}

/** One argument of several failed: say which and why; the command goes on with the others. */
function reportFailure(cmd: string, arg: string, err: unknown): void {
  process.stderr.write(`layers: ${cmd}: ${arg}: ${(err as Error).message ?? String(err)}\n`);
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

async function withProgress<T>(label: string, work: Promise<T>, bytes?: () => number | undefined): Promise<T> {
  const stop = progress(label, bytes);
  try {
    return await work;
  } finally {
    stop();
  }
}

const json: FlagSpec = { names: ['json', 'j'], help: 'print one JSON document' };
const fileIn: FlagSpec = { names: ['file', 'f'], value: true, help: 'read the tar from this file instead of stdin' };

const mapFlags: FlagSpec[] = [
  { names: ['uidmap'], value: true, help: 'UID map, containerID:hostID:size[,...]' },
  { names: ['gidmap'], value: true, help: 'GID map, containerID:hostID:size[,...]' },
  { names: ['hostuidmap'], help: 'force the host UID map (no mapping)' },
  { names: ['hostgidmap'], help: 'force the host GID map (no mapping)' },
  { names: ['subuidmap'], value: true, help: "UID map from a user's ranges in /etc/subuid" },
  { names: ['subgidmap'], value: true, help: "GID map from a group's ranges in /etc/subgid" },
];

const createFlags: FlagSpec[] = [
  { names: ['id', 'i'], value: true, help: 'layer ID (default: 64 random hex digits)' },
  { names: ['name', 'n'], value: true, multi: true, help: 'layer name; repeatable' },
  { names: ['label', 'l'], value: true, help: 'mount label' },
  { names: ['readonly', 'r'], help: 'mark as read-only' },
  ...mapFlags,
  json,
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

function idMaps(p: Parsed): { uidmap: IdMap[]; gidmap: IdMap[] } {
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

function printCreated(g: Globals, layer: LayerRecord): void {
  if (g.json) return printJson(layer);
  out(`${layer.id}\n`);
  for (const n of layer.names ?? []) out(`\t${n}\n`);
}

/** The tar to read: -f FILE, else stdin as fd 0 (process.stdin is never touched: it would make fd 0 non-blocking). */
function tarInput(p: Parsed): { input: number | string; what: string; size?: number } {
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
  if (isatty(0)) throw usageError('no tar to read: give -f FILE or pipe a tar to stdin');
  return { input: 0, what: 'stdin' };
}

function createCommand(names: string[], help: string, withInput: boolean): Command {
  return {
    names,
    args: '[parentLayerNameOrID]',
    help,
    min: 0,
    max: 1,
    flags: withInput ? [...createFlags, fileIn] : createFlags,
    async run(g, p) {
      const store = await open(g);
      const opts = {
        id: str(p, 'id'),
        parent: p.positionals[0],
        names: list(p, 'name'),
        mountLabel: str(p, 'label'),
        readWrite: !bool(p, 'readonly'),
        ...idMaps(p),
      };
      if (!withInput) {
        printCreated(g, await store.createLayer(opts));
        return 0;
      }
      const src = tarInput(p);
      printCreated(g, await withProgress(`importing ${src.what}`, store.createLayer(opts, src.input), () => src.size));
      return 0;
    },
  };
}

/** layerNameOrID [referenceLayerNameOrID] for diff, changes and diffsize */
const twoLayers = { args: 'layerNameOrID [referenceLayerNameOrID]', min: 1, max: 2 };

/** Go's %q for the paths changes prints */
const quote = (s: string) => JSON.stringify(s);
const KIND_NUMBERS = { Modify: 0, Add: 1, Delete: 2 } as const;

const version = (createRequire(import.meta.url)('../../package.json') as { version: string }).version;

export const commands: Command[] = [
  createCommand(['create-layer', 'createlayer'], 'Create a new layer', false),
  createCommand(['import-layer', 'importlayer'], 'Create a new layer and apply a tar (from -f FILE or stdin) to it', true),
  {
    names: ['applydiff', 'apply-diff'],
    args: 'layerNameOrID',
    help: 'Apply a tar (from -f FILE or stdin) to a layer',
    min: 1,
    max: 1,
    flags: [fileIn, json],
    async run(g, p) {
      const store = await open(g);
      const src = tarInput(p);
      const layer = await withProgress(`applying ${src.what}`, store.applyDiff(p.positionals[0], src.input), () => src.size);
      if (g.json) printJson(layer);
      return 0;
    },
  },
  {
    names: ['diff'],
    ...twoLayers,
    help: "Write a layer's changes against its parent (or the reference layer) as a tar",
    flags: [
      { names: ['file', 'f'], value: true, help: 'write to this file instead of stdout' },
      { names: ['gzip', 'c'], help: 'compress with gzip' },
      { names: ['uncompressed', 'u'], help: 'no compression (the default)' },
      { names: ['bzip2', 'bz2', 'b'], help: 'compress with bzip2 (not supported)' },
      { names: ['xz', 'x'], help: 'compress with xz (not supported)' },
    ],
    async run(g, p) {
      if (bool(p, 'bzip2') || bool(p, 'xz')) throw usageError(`${bool(p, 'xz') ? 'xz' : 'bzip2'} compression is not supported; use --gzip or none`);
      const store = await open(g);
      const [layer, reference] = p.positionals;
      const compression = bool(p, 'gzip') && !bool(p, 'uncompressed') ? ('gzip' as const) : undefined;
      const file = str(p, 'file');
      if (file === undefined && isatty(1)) throw usageError('refusing to write a tar to a terminal: give -f FILE or redirect stdout');
      let fd = 1;
      if (file !== undefined) {
        try {
          fd = fs.openSync(file, 'w', 0o644);
        } catch (err) {
          throw new LayersError('EINPUT', `cannot create ${file}: ${(err as NodeJS.ErrnoException).code}`);
        }
      }
      try {
        // fd 1 itself goes to the driver: the tar engine sends bodies into a pipe with sendfile
        const written = () => (fs.fstatSync(fd).isFile() ? fs.fstatSync(fd).size : undefined);
        await withProgress(`writing the diff of ${layer}`, store.diff(layer, fd, { reference, compression }), written);
      } finally {
        if (fd !== 1) fs.closeSync(fd);
      }
      return 0;
    },
  },
  {
    names: ['changes'],
    ...twoLayers,
    help: "List a layer's changes against its parent (or the reference layer)",
    flags: [json],
    async run(g, p) {
      const store = await open(g);
      const changes = await store.changes(p.positionals[0], p.positionals[1]);
      if (g.json) printJson(changes.map((c) => ({ Path: c.path, Kind: KIND_NUMBERS[c.kind] })));
      else out(changes.map((c) => `${c.kind} ${quote(c.path)}\n`).join(''));
      return 0;
    },
  },
  {
    names: ['diffsize'],
    ...twoLayers,
    help: "Bytes of file data in a layer's changes",
    flags: [json],
    async run(g, p) {
      const store = await open(g);
      const size = await store.diffSize(p.positionals[0], p.positionals[1]);
      if (g.json) printJson(size);
      else out(`${size}\n`);
      return 0;
    },
  },
  {
    names: ['mount'],
    args: 'layerNameOrID [...]',
    help: 'Mount a layer (one more user) and print where',
    min: 1,
    flags: [
      { names: ['ro', 'r'], help: 'mount read-only' },
      { names: ['label', 'l'], value: true, help: 'mount label' },
      { names: ['opt', 'o'], value: true, multi: true, help: 'mount option; repeatable' },
      json,
    ],
    async run(g, p, name) {
      const store = await open(g);
      const results: Array<{ id: string; mountpoint: string; error: string }> = [];
      let failed = false;
      for (const ref of p.positionals) {
        try {
          const mountpoint = await store.mount(ref, { readOnly: bool(p, 'ro'), mountLabel: str(p, 'label'), options: list(p, 'opt') });
          results.push({ id: ref, mountpoint, error: '' });
          if (!g.json) out(`${mountpoint}\n`);
        } catch (err) {
          failed = true;
          results.push({ id: ref, mountpoint: '', error: (err as Error).message });
          if (!g.json) reportFailure(name, ref, err);
        }
      }
      if (g.json) printJson(results);
      return failed ? 1 : 0;
    },
  },
  {
    names: ['unmount', 'umount'],
    args: 'layerNameOrID [...]',
    help: 'One user less of a layer mount; the last one unmounts',
    min: 1,
    flags: [{ names: ['force', 'f'], help: 'unmount whatever the count' }, json],
    async run(g, p, name) {
      const store = await open(g);
      const results: Array<{ id: string; error: string }> = [];
      let failed = false;
      for (const ref of p.positionals) {
        try {
          const left = await store.unmount(ref, bool(p, 'force'));
          results.push({ id: ref, error: '' });
          if (!g.json && left === 0) out(`${ref} mountpoint unmounted\n`);
        } catch (err) {
          failed = true;
          results.push({ id: ref, error: (err as Error).message });
          if (!g.json) reportFailure(name, ref, err);
        }
      }
      if (g.json) printJson(results);
      return failed ? 1 : 0;
    },
  },
  {
    names: ['layers'],
    args: '',
    help: 'List layers',
    min: 0,
    max: 0,
    flags: [{ names: ['tree', 't'], help: 'draw layers under their parents' }, { names: ['quick', 'q'], help: 'only the IDs' }, json],
    async run(g, p) {
      const store = await open(g);
      const layers = await store.layers();
      if (g.json) {
        printJson(layers);
        return 0;
      }
      if (bool(p, 'tree')) {
        const mounts = new Map((await store.mounted()).map((m) => [m.id, m.path]));
        const nodes = layers.map((l) => ({
          parent: l.parent ?? '(base)',
          id: l.id,
          notes: [...(l.names ?? []).map((n) => `name: ${n}`), ...(mounts.has(l.id) ? [`mount: ${mounts.get(l.id)}`] : [])],
        }));
        out(drawTree(nodes));
        return 0;
      }
      for (const l of layers) {
        out(`${l.id}\n`);
        if (!bool(p, 'quick')) for (const n of l.names ?? []) out(`\tname: ${n}\n`);
      }
      return 0;
    },
  },
  {
    names: ['layer'],
    args: 'layerNameOrID [...]',
    help: 'Examine layers',
    min: 1,
    flags: [json],
    async run(g, p, name) {
      const store = await open(g);
      const found: LayerRecord[] = [];
      for (const ref of p.positionals) {
        try {
          found.push(await store.layer(ref));
        } catch (err) {
          reportFailure(name, ref, err);
        }
      }
      if (g.json) printJson(found);
      else
        for (const l of found) {
          out(`ID: ${l.id}\n`);
          for (const m of l.uidmap ?? []) out(`UID mapping: (container=${m.container_id}, host=${m.host_id}, size=${m.size})\n`);
          for (const m of l.gidmap ?? []) out(`GID mapping: (container=${m.container_id}, host=${m.host_id}, size=${m.size})\n`);
          if (l.parent) out(`Parent: ${l.parent}\n`);
          for (const n of l.names ?? []) out(`Name: ${n}\n`);
        }
      return found.length === p.positionals.length ? 0 : 1;
    },
  },
  {
    names: ['delete-layer', 'deletelayer'],
    args: 'layerNameOrID [...]',
    help: 'Delete layers that have no children and are not mounted',
    min: 1,
    flags: [json],
    async run(g, p, name) {
      const store = await open(g);
      const results: Record<string, string> = {};
      for (const ref of p.positionals) {
        try {
          await store.deleteLayer(ref);
          results[ref] = '';
        } catch (err) {
          results[ref] = (err as Error).message;
          if (!g.json) reportFailure(name, ref, err);
        }
      }
      if (g.json) printJson(results);
      return Object.values(results).some((e) => e !== '') ? 1 : 0;
    },
  },
  {
    names: ['exists'],
    args: 'layerNameOrID [...]',
    help: 'Check that layers exist (exit 1 if any does not)',
    min: 1,
    flags: [
      { names: ['layer', 'l'], help: 'only succeed if the match is a layer (all matches are, so far)' },
      { names: ['image', 'i'], help: 'only succeed if the match is an image (there are none yet)' },
      { names: ['container', 'c'], help: 'only succeed if the match is a container (there are none yet)' },
      { names: ['quiet', 'q'], help: "don't print names" },
      json,
    ],
    async run(g, p) {
      const store = await open(g);
      const onlyOther = bool(p, 'image') || bool(p, 'container');
      const found: Record<string, boolean> = {};
      for (const ref of p.positionals) found[ref] = !onlyOther && (await store.exists(ref));
      if (g.json) printJson(found);
      else if (!bool(p, 'quiet')) for (const [ref, ok] of Object.entries(found)) out(`${ref}: ${ok}\n`);
      return Object.values(found).every(Boolean) ? 0 : 1;
    },
  },
  {
    names: ['status'],
    args: '',
    help: 'Show the store and graph driver status',
    min: 0,
    max: 0,
    flags: [json],
    async run(g) {
      const status = await (await open(g)).status();
      if (g.json) printJson(status);
      else out(status.map(([k, v]) => `${k}: ${v}\n`).join(''));
      return 0;
    },
  },
  {
    names: ['wipe'],
    args: '',
    help: 'Delete every layer (unmounting mounted ones)',
    min: 0,
    max: 0,
    flags: [json],
    async run(g) {
      await (await open(g)).wipe();
      return 0;
    },
  },
  {
    names: ['shutdown'],
    args: '',
    help: 'Release the graph driver; refuses while layers are mounted unless --force',
    min: 0,
    max: 0,
    flags: [{ names: ['force', 'f'], help: 'unmount mounted layers first' }, json],
    async run(g, p) {
      const unmounted = await (await open(g)).shutdown(bool(p, 'force'));
      if (g.json) printJson(unmounted);
      return 0;
    },
  },
  {
    names: ['version'],
    args: '',
    help: 'Print version information',
    min: 0,
    max: 0,
    flags: [json],
    async run(g) {
      const facts: Array<[string, string]> = [
        ['Version', version],
        ['Node Version', process.version],
      ];
      if (g.json) printJson(facts);
      else out(facts.map(([k, v]) => `${k}: ${v}\n`).join(''));
      return 0;
    },
  },
  {
    names: ['metadata'],
    args: 'layerNameOrID [...]',
    help: "Print layers' metadata",
    min: 1,
    flags: [{ names: ['quiet', 'q'], help: 'omit names and IDs' }, json],
    async run(g, p, name) {
      const store = await open(g);
      const found: Record<string, string> = {};
      let failed = false;
      for (const ref of p.positionals) {
        try {
          found[ref] = (await store.layer(ref)).metadata ?? '';
        } catch (err) {
          failed = true;
          reportFailure(name, ref, err);
        }
      }
      if (g.json) printJson(found);
      else for (const [ref, md] of Object.entries(found)) out(bool(p, 'quiet') ? `${md}\n` : `${ref}: ${md}\n`);
      return failed ? 1 : 0;
    },
  },
  {
    names: ['set-metadata', 'setmetadata'],
    args: 'layerNameOrID',
    help: "Set a layer's metadata (from -m TEXT or -f FILE)",
    min: 1,
    max: 1,
    flags: [
      { names: ['metadata', 'm'], value: true, help: 'metadata' },
      { names: ['metadata-file', 'f'], value: true, help: 'read the metadata from this file' },
    ],
    async run(g, p) {
      const file = str(p, 'metadata-file');
      let md = str(p, 'metadata');
      if (file !== undefined) {
        try {
          md = fs.readFileSync(file, 'utf8');
        } catch (err) {
          throw new LayersError('EINPUT', `cannot read ${file}: ${(err as NodeJS.ErrnoException).code}`);
        }
      }
      if (md === undefined) throw usageError('set-metadata needs -m TEXT or -f FILE');
      await (await open(g)).setMetadata(p.positionals[0], md);
      return 0;
    },
  },
  {
    names: ['get-names', 'getnames'],
    args: 'layerNameOrID',
    help: "Print a layer's names",
    min: 1,
    max: 1,
    flags: [json],
    async run(g, p) {
      const names = (await (await open(g)).layer(p.positionals[0])).names ?? [];
      if (g.json) printJson(names);
      else out(names.map((n) => `${n}\n`).join(''));
      return 0;
    },
  },
  ...(['add-names', 'set-names'] as const).map(
    (cmd): Command => ({
      names: [cmd, cmd.replace('-', '')],
      args: 'layerNameOrID',
      help: cmd === 'add-names' ? 'Add names to a layer (a name another layer has moves here)' : "Replace a layer's names (a name another layer has moves here)",
      min: 1,
      max: 1,
      flags: [{ names: ['name', 'n'], value: true, multi: true, help: 'name; repeatable' }, json],
      async run(g, p) {
        const store = await open(g);
        const names = cmd === 'add-names' ? await store.addNames(p.positionals[0], list(p, 'name')) : await store.setNames(p.positionals[0], list(p, 'name'));
        if (g.json) printJson(names);
        return 0;
      },
    }),
  ),
];
