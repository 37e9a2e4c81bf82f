// Layers: create-layer, import-layer (a new layer with a tar applied), create-from-template (a
// copy shifted to other id mappings), layers (the list, or --tree), layer (examine one), and
// delete-layer. A layer's changes are in diff.ts, its mounts in mount.ts.
import type { LayerRecord } from '../../index.ts';
import { bool, list, str, usageError, type Parsed } from '../args.ts';
import { eachArg, exitCode, open, succeeded, type Command } from '../command.ts';
import { expectedDigestFlags, expectedDigests, idFlag, idMaps, json, labelFlag, layerOptFlag, layerOpts, mapFlags, nameFlag, tarFileFlag, tarInput } from '../flags.ts';
import { out, printCreated, printJson, withReportedProgress } from '../output.ts';
import { drawTree } from '../tree.ts';
import { deleteCommand } from './delete.ts';

const createFlags = [idFlag('layer'), nameFlag('layer'), labelFlag, { names: ['readonly', 'r'], help: 'mark as read-only' }, ...mapFlags, layerOptFlag, json];

function createOptions(p: Parsed) {
  return {
    id: str(p, 'id'),
    // "" is no parent, as in the peer
    parent: p.positionals[0] || undefined,
    names: list(p, 'name'),
    mountLabel: str(p, 'label'),
    storageOpt: layerOpts(p),
    ...idMaps(p),
  };
}

export const createLayer: Command = {
  names: ['create-layer', 'createlayer'],
  args: '[parentLayerNameOrID]',
  help: 'Create a new layer',
  min: 0,
  max: 1,
  flags: createFlags,
  async run(g, p) {
    const store = await open(g);
    printCreated(g, await store.createLayer(createOptions(p)));
    return 0;
  },
};

export const importLayer: Command = {
  names: ['import-layer', 'importlayer'],
  args: '[parentLayerNameOrID]',
  help: 'Create a new layer and apply a tar (from -f FILE or stdin) to it',
  min: 0,
  max: 1,
  flags: [...createFlags, tarFileFlag, ...expectedDigestFlags],
  async run(g, p) {
    const store = await open(g);
    const opts = { ...createOptions(p), ...expectedDigests(p) };
    const src = tarInput(p);
    printCreated(g, await withReportedProgress(`importing ${src.what}`, src.size, (onProgress) => store.createLayer({ ...opts, onProgress }, src.input)));
    return 0;
  },
};

export const createFromTemplate: Command = {
  names: ['create-from-template', 'createfromtemplate'],
  args: 'templateLayerNameOrID',
  help: 'Create a layer as a copy of a template layer shifted to other id mappings (with --image: one of its mapped top layers)',
  min: 1,
  max: 1,
  flags: [idFlag('layer'), nameFlag('layer'), { names: ['image'], value: true, help: 'register the layer as a mapped top layer of this image' }, ...mapFlags, layerOptFlag, json],
  async run(g, p) {
    const maps = idMaps(p);
    if (maps.uidmap.length === 0 && maps.gidmap.length === 0 && !bool(p, 'hostuidmap') && !bool(p, 'hostgidmap'))
      throw usageError('create-from-template needs the id mappings of the copy: --uidmap/--gidmap (or --hostuidmap/--hostgidmap for none)');
    const layer = await (await open(g)).createFromTemplate({ id: str(p, 'id'), template: p.positionals[0], names: list(p, 'name'), image: str(p, 'image'), storageOpt: layerOpts(p), ...maps });
    printCreated(g, layer);
    return 0;
  },
};

export const layers: Command = {
  names: ['layers'],
  args: '',
  help: 'List layers',
  min: 0,
  max: 0,
  flags: [
    { names: ['tree', 't'], help: 'draw layers under their parents' },
    { names: ['quick', 'q'], help: 'only the IDs' },
    { names: ['compressed-digest'], value: true, help: 'ours: only layers whose compressed (as given) digest is this' },
    { names: ['uncompressed-digest'], value: true, help: "ours: only layers whose uncompressed (the tar's) digest is this" },
    json,
  ],
  async run(g, p) {
    const store = await open(g);
    const { compressedDigest, uncompressedDigest } = expectedDigests(p);
    let all = compressedDigest !== undefined ? await store.layersByCompressedDigest(compressedDigest) : await store.layers();
    if (uncompressedDigest !== undefined) {
      const ids = new Set((await store.layersByUncompressedDigest(uncompressedDigest)).map((l) => l.id));
      all = all.filter((l) => ids.has(l.id));
    }
    if (g.json) {
      printJson(all);
      return 0;
    }
    if (bool(p, 'tree')) {
      const mounts = new Map((await store.mounted()).map((m) => [m.id, m.path]));
      const nodes = all.map((l) => ({
        parent: l.parent ?? '(base)',
        id: l.id,
        notes: [...(l.names ?? []).map((n) => `name: ${n}`), ...(mounts.has(l.id) ? [`mount: ${mounts.get(l.id)}`] : [])],
      }));
      out(drawTree(nodes));
      return 0;
    }
    // as the peer lists them: each layer's names, then the images and containers it is the layer of
    const quiet = bool(p, 'quick');
    const images = quiet ? [] : await store.images();
    const containers = quiet ? [] : await store.containers();
    for (const l of all) {
      out(`${l.id}\n`);
      if (quiet) continue;
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
};

function printLayer(l: LayerRecord, readOnly: boolean): void {
  out(`ID: ${l.id}\n`);
  for (const m of l.uidmap ?? []) out(`UID mapping: (container=${m.container_id}, host=${m.host_id}, size=${m.size})\n`);
  for (const m of l.gidmap ?? []) out(`GID mapping: (container=${m.container_id}, host=${m.host_id}, size=${m.size})\n`);
  if (l.parent) out(`Parent: ${l.parent}\n`);
  for (const n of l.names ?? []) out(`Name: ${n}\n`);
  if (readOnly) out('Read Only: true\n');
}

export const layer: Command = {
  names: ['layer'],
  args: 'layerNameOrID [...]',
  help: 'Examine layers',
  min: 1,
  flags: [json],
  async run(g, p, name) {
    const store = await open(g);
    const outcomes = await eachArg(name, p.positionals, (ref) => store.layer(ref));
    const found = succeeded(outcomes);
    if (g.json) printJson(found);
    else for (const l of found) printLayer(l, await store.readOnly('layer', l.id));
    return exitCode(outcomes);
  },
};

export const deleteLayer = deleteCommand(['delete-layer', 'deletelayer'], 'layerNameOrID [...]', 'Delete layers that have no children and are not mounted', (store, ref) => store.deleteLayer(ref));
