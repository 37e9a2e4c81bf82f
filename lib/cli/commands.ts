// The commands of `layers`, with the names, flags and output formats of containers-storage.
// Each parses its arguments, calls the public API, and prints; nothing here touches records or
// trees directly. Image and container commands are in images.ts.
import fs from 'node:fs';
import path from 'node:path';
import { isatty } from 'node:tty';
import { packageRoot } from '../package-root.ts';
import { LayersError } from '../errors.ts';
import type { CopySpec, LayerRecord } from '../index.ts';
import { bool, list, str, usageError, type Parsed } from './args.ts';
import { deleteCommand, fileIn, idMaps, json, layerOptFlag, layerOpts, mapFlags, metadataFlags, metadataOf, open, out, printCreated, printJson, reportFailure, withProgress, type Command, type Globals } from './common.ts';
import { layerDataCommands } from './data.ts';
import { imageCommands } from './images.ts';
import { parentOwnersCommand } from './owners.ts';
import { drawTree } from './tree.ts';

export type { Command, Globals };

const createFlags = [
  { names: ['id', 'i'], value: true, help: 'layer ID (default: 64 random hex digits)' },
  { names: ['name', 'n'], value: true, multi: true, help: 'layer name; repeatable' },
  { names: ['label', 'l'], value: true, help: 'mount label' },
  { names: ['readonly', 'r'], help: 'mark as read-only' },
  ...mapFlags,
  layerOptFlag,
  json,
];

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
        storageOpt: layerOpts(p),
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

/**
 * unmount and mounted: each argument in turn, printing what `act` returns for it; a failure is
 * reported and the others go on. `--json`: [{"id", "error"}], as the peer prints them.
 */
async function eachMountArg(g: Globals, refs: string[], cmd: string, act: (ref: string) => Promise<string>): Promise<number> {
  const results: Array<{ id: string; error: string }> = [];
  for (const ref of refs) {
    try {
      const line = await act(ref);
      results.push({ id: ref, error: '' });
      if (!g.json) out(line);
    } catch (err) {
      results.push({ id: ref, error: (err as Error).message });
      if (!g.json) reportFailure(cmd, ref, err);
    }
  }
  if (g.json) printJson(results);
  return results.some((r) => r.error !== '') ? 1 : 0;
}

/** layerNameOrID [referenceLayerNameOrID] for diff, changes and diffsize */
const twoLayers = { args: 'layerNameOrID [referenceLayerNameOrID]', min: 1, max: 2 };

/** Go's %q for the paths changes prints */
const quote = (s: string) => JSON.stringify(s);
const KIND_NUMBERS = { Modify: 0, Add: 1, Delete: 2 } as const;

const version = (JSON.parse(fs.readFileSync(path.join(packageRoot, 'package.json'), 'utf8')) as { version: string }).version;

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
      { names: ['sparse', 'S'], help: "ours: files with holes as sparse entries, holes left out (GNU tar's --sparse)" },
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
        await withProgress(`writing the diff of ${layer}`, store.diff(layer, fd, { reference, compression, sparse: bool(p, 'sparse') }), written);
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
    args: 'layerOrContainerNameOrID [...]',
    help: "Mount a layer or a container's layer (one more user) and print where",
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
          const mountpoint = await store.mount(ref, { readOnly: bool(p, 'ro'), options: list(p, 'opt') });
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
    args: 'layerOrContainerNameOrID [...]',
    help: "One user less of a layer's or container's mount; the last one unmounts",
    min: 1,
    flags: [{ names: ['force', 'f'], help: 'unmount whatever the count' }, json],
    async run(g, p, name) {
      const store = await open(g);
      return eachMountArg(g, p.positionals, name, async (ref) => ((await store.unmount(ref, bool(p, 'force'))) === 0 ? `${ref} mountpoint unmounted\n` : ''));
    },
  },
  {
    names: ['mounted'],
    args: 'layerOrContainerNameOrID [...]',
    help: 'Say which layers or containers are mounted (`<arg> mounted`)',
    min: 1,
    flags: [json],
    async run(g, p, name) {
      const store = await open(g);
      return eachMountArg(g, p.positionals, name, async (ref) => ((await store.mountCount(ref)) > 0 ? `${ref} mounted\n` : ''));
    },
  },
  {
    names: ['copy'],
    args: '[sourceLayerNameOrID:]/path [...] targetLayerNameOrID:/path',
    help: 'Copy files or directories into a layer, from the host or from another layer',
    min: 2,
    flags: [{ names: ['chown', 'o'], value: true, help: 'owner of the copies, UID[:GID] as the container sees them' }, json],
    async run(g, p) {
      const spec = (arg: string): CopySpec => {
        const i = arg.indexOf(':');
        return i < 0 ? { path: arg } : { layer: arg.slice(0, i), path: arg.slice(i + 1) };
      };
      const owner = str(p, 'chown');
      let chown: { uid: number; gid: number } | undefined;
      if (owner !== undefined) {
        const [u, gRaw = u] = owner.split(':');
        const id = (s: string) => (/^\d+$/.test(s) && Number(s) <= 0xffffffff ? Number(s) : undefined);
        const [uid, gid] = [id(u), id(gRaw)];
        if (uid === undefined || gid === undefined) throw usageError(`--chown ${owner}: want UID[:GID] as numbers`);
        chown = { uid, gid };
      }
      const args = p.positionals.map(spec);
      await (await open(g)).copy(args.slice(0, -1), args[args.length - 1], { chown });
      return 0;
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
      // as the peer lists them: each layer's names, then the images and containers it is the layer of
      const images = bool(p, 'quick') ? [] : await store.images();
      const containers = bool(p, 'quick') ? [] : await store.containers();
      for (const l of layers) {
        out(`${l.id}\n`);
        if (bool(p, 'quick')) continue;
        for (const n of l.names ?? []) out(`\tname: ${n}\n`);
        for (const i of images.filter((i) => i.layer === l.id || i['mapped-layers']?.includes(l.id))) {
          out(`\timage: ${i.id}\n`);
          for (const n of i.names ?? []) out(`\t\tname: ${n}\n`);
        }
        for (const c of containers.filter((c) => c.layer === l.id)) {
          out(`\tcontainer: ${c.id}\n`);
          for (const n of c.names ?? []) out(`\t\tname: ${n}\n`);
        }
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
  parentOwnersCommand('layer'),
  ...layerDataCommands,
  deleteCommand(['delete-layer', 'deletelayer'], 'layerNameOrID [...]', 'Delete layers that have no children and are not mounted', (store, ref) => store.deleteLayer(ref)),
  deleteCommand(
    ['delete'],
    'layerOrImageOrContainerNameOrID [...]',
    'Delete a container, image or layer without the use checks (not a layer other layers stand on)',
    (store, ref) => store.delete(ref),
  ),
  {
    names: ['exists'],
    args: 'layerOrImageOrContainerNameOrID [...]',
    help: 'Check that layers, images or containers exist (exit 1 if any does not)',
    min: 1,
    flags: [
      { names: ['layer', 'l'], help: 'only succeed if the match is a layer' },
      { names: ['image', 'i'], help: 'only succeed if the match is an image' },
      { names: ['container', 'c'], help: 'only succeed if the match is a container' },
      { names: ['quiet', 'q'], help: "don't print names" },
      json,
    ],
    async run(g, p) {
      const store = await open(g);
      const only = (['layer', 'image', 'container'] as const).filter((k) => bool(p, k));
      const found: Record<string, boolean> = {};
      for (const ref of p.positionals) found[ref] = (await store.resolve(ref, only.length > 0 ? [...only] : undefined)) !== undefined;
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
    help: 'Delete every container, image and layer (unmounting mounted ones)',
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
    args: 'layerOrImageOrContainerNameOrID [...]',
    help: 'Print the metadata of layers, images or containers',
    min: 1,
    flags: [{ names: ['quiet', 'q'], help: 'omit names and IDs' }, json],
    async run(g, p, name) {
      const store = await open(g);
      const found: Record<string, string> = {};
      let failed = false;
      for (const ref of p.positionals) {
        try {
          const hit = await store.resolve(ref);
          if (!hit) throw new LayersError('ELAYERUNKNOWN', 'no layer, image or container has this name or id');
          found[ref] = hit.record.metadata ?? '';
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
    args: 'layerOrImageOrContainerNameOrID',
    help: 'Set the metadata of a layer, image or container (from -m TEXT or -f FILE)',
    min: 1,
    max: 1,
    flags: metadataFlags,
    async run(g, p) {
      const md = metadataOf(p);
      if (md === undefined) throw usageError('set-metadata needs -m TEXT or -f FILE');
      await (await open(g)).setMetadata(p.positionals[0], md);
      return 0;
    },
  },
  {
    names: ['get-names', 'getnames'],
    args: 'layerOrImageOrContainerNameOrID',
    help: 'Print the names of a layer, image or container',
    min: 1,
    max: 1,
    flags: [json],
    async run(g, p) {
      const hit = await (await open(g)).resolve(p.positionals[0]);
      if (!hit) throw new LayersError('ELAYERUNKNOWN', `layer, image or container "${p.positionals[0]}" not known`);
      const names = hit.record.names ?? [];
      if (g.json) printJson(names);
      else out(names.map((n) => `${n}\n`).join(''));
      return 0;
    },
  },
  ...(['add-names', 'set-names'] as const).map(
    (cmd): Command => ({
      names: [cmd, cmd.replace('-', '')],
      args: 'layerOrImageOrContainerNameOrID',
      help:
        cmd === 'add-names'
          ? 'Add names to a layer, image or container (a name another of its kind has moves here)'
          : 'Replace the names of a layer, image or container (a name another of its kind has moves here)',
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
  ...imageCommands,
];
