// Image and container commands, with containers-storage's names, flags and output, plus ours:
// `create-from-template`, `rm` (remove images with their mapped top layers first) and `prune`.
import fs from 'node:fs';
import { LayersError } from '../errors.ts';
import type { ContainerRecord, ImageRecord, Store } from '../index.ts';
import { bool, list, str, usageError } from './args.ts';
import { containerDataCommands, imageDataCommands } from './data.ts';
import { parentOwnersCommand } from './owners.ts';
import { deleteCommand, idMaps, json, layerOptFlag, layerOpts, mapFlags, metadataFlags, metadataOf, open, out, printCreated, printJson, reportFailure, type Command, type Globals } from './common.ts';

const idFlag = (what: string) => ({ names: ['id', 'i'], value: true, help: `${what} ID (default: 64 random hex digits)` });
const nameFlag = (what: string) => ({ names: ['name', 'n'], value: true, multi: true, help: `${what} name; repeatable` });

/** Run fn for each argument; a failure is reported and the others go on. Returns the exit code. */
async function eachArg(name: string, refs: string[], fn: (ref: string) => Promise<void>): Promise<number> {
  let failed = false;
  for (const ref of refs) {
    try {
      await fn(ref);
    } catch (err) {
      failed = true;
      reportFailure(name, ref, err);
    }
  }
  return failed ? 1 : 0;
}

/**
 * The image's size as the peer's `image` prints it (its ImageSize): every layer reached from the
 * top layer and the mapped top layers through parents, each once, by its recorded diff-size when
 * it has a diff digest and else by its DiffSize, plus the sizes of the big data items.
 */
async function imageSize(store: Store, image: ImageRecord): Promise<number> {
  const layers = new Map((await store.layers()).map((l) => [l.id, l]));
  const queue = [image.layer, ...(image['mapped-layers'] ?? [])].filter((id): id is string => id !== undefined);
  const seen = new Set<string>();
  let size = 0;
  for (let id = queue.shift(); id !== undefined; id = queue.shift()) {
    const l = layers.get(id);
    if (seen.has(id) || !l) continue;
    seen.add(id);
    size += l['diff-digest'] ? (l['diff-size'] ?? 0) : await store.diffSize(id);
    if (l.parent !== undefined) queue.push(l.parent);
  }
  for (const n of Object.values(image['big-data-sizes'] ?? {})) size += n;
  return size;
}

/** the image's digests as the peer lists them: `digests`, else the one `digest` */
function digestsOf(i: ImageRecord): string[] {
  return i.digests ?? (i.digest ? [i.digest] : []);
}

function listImages(g: Globals, images: ImageRecord[], quiet: boolean): void {
  if (g.json) return printJson(images);
  for (const i of images) {
    out(`${i.id}\n`);
    if (quiet) continue;
    for (const n of i.names ?? []) out(`\tname: ${n}\n`);
    for (const d of digestsOf(i)) out(`\tdigest: ${d}\n`);
    for (const n of i['big-data-names'] ?? []) out(`\tdata: ${n}\n`);
  }
}

/** `delete-image` and `rm`: per image, the layers removed in order (and with --force the containers first). */
function removeImagesCommand(names: string[], help: string, withForce: boolean): Command {
  return {
    names,
    args: 'imageNameOrID [...]',
    help,
    min: 1,
    flags: [
      ...(withForce ? [{ names: ['force', 'f'], help: 'remove the containers that use the image first' }] : [{ names: ['test', 't'], help: 'only say what would be removed' }]),
      json,
    ],
    async run(g, p, name) {
      const store = await open(g);
      const results: Record<string, { 'deleted-containers'?: string[]; 'deleted-layers'?: string[]; error?: string }> = {};
      for (const ref of p.positionals) {
        try {
          const r = bool(p, 'test') ? await store.planImageRemoval(ref) : await store.removeImage(ref, { force: bool(p, 'force') });
          results[ref] = { ...(r.containers.length > 0 ? { 'deleted-containers': r.containers } : {}), 'deleted-layers': r.layers };
          if (!g.json) {
            for (const c of r.containers) out(`${ref}: container ${c}\n`);
            for (const l of r.layers) out(`${ref}: ${l}\n`);
          }
        } catch (err) {
          results[ref] = { error: (err as Error).message };
          if (!g.json) reportFailure(name, ref, err);
        }
      }
      if (g.json) printJson(results);
      return Object.values(results).some((r) => r.error !== undefined) ? 1 : 0;
    },
  };
}

async function printContainer(store: Store, c: ContainerRecord, images: ImageRecord[]): Promise<void> {
  out(`ID: ${c.id}\n`);
  for (const n of c.names ?? []) out(`Name: ${n}\n`);
  out(`Image: ${c.image}\n`);
  for (const n of images.find((i) => i.id === c.image)?.names ?? []) out(`Image name: ${n}\n`);
  // as the peer counts it: what the container changed, and its big data
  const data = Object.values(c['big-data-sizes'] ?? {}).reduce((a, b) => a + b, 0);
  out(`Size: ${(await store.diffSize(c.layer)) + data}\n`);
  out(`Layer: ${c.layer}\n`);
  for (const n of c['big-data-names'] ?? []) out(`Data: ${n}\n`);
}

/** get-container-dir and get-container-run-dir */
function containerDirCommand(which: 'dir' | 'runDir'): Command {
  const name = which === 'dir' ? 'get-container-dir' : 'get-container-run-dir';
  return {
    names: [name, name.replaceAll('-', '')],
    args: 'containerNameOrID',
    help: which === 'dir' ? "Print the container's data directory" : "Print the container's run-time directory",
    min: 1,
    max: 1,
    flags: [json],
    async run(g, p) {
      const dir = (await (await open(g)).containerDirs(p.positionals[0]))[which];
      if (g.json) printJson(dir);
      else out(`${dir}\n`);
      return 0;
    },
  };
}

export const imageCommands: Command[] = [
  {
    names: ['create-image', 'createimage'],
    args: 'topLayerNameOrID',
    help: 'Create a new image using layers',
    min: 1,
    max: 1,
    flags: [idFlag('image'), nameFlag('image'), { names: ['digest', 'd'], value: true, help: 'image digest' }, ...metadataFlags, json],
    async run(g, p) {
      const store = await open(g);
      const image = await store.createImage({ id: str(p, 'id'), layer: p.positionals[0], names: list(p, 'name'), metadata: metadataOf(p), digest: str(p, 'digest') });
      printCreated(g, image);
      return 0;
    },
  },
  {
    names: ['images'],
    args: '',
    help: 'List images',
    min: 0,
    max: 0,
    flags: [{ names: ['quiet', 'q'], help: 'only the IDs' }, json],
    async run(g, p) {
      listImages(g, await (await open(g)).images(), bool(p, 'quiet'));
      return 0;
    },
  },
  {
    names: ['images-by-digest', 'imagesbydigest'],
    args: 'DIGEST',
    help: 'List images by digest',
    min: 1,
    max: 1,
    flags: [{ names: ['quiet', 'q'], help: 'only the IDs' }, json],
    async run(g, p) {
      listImages(g, await (await open(g)).imagesByDigest(p.positionals[0]), bool(p, 'quiet'));
      return 0;
    },
  },
  {
    names: ['image'],
    args: 'imageNameOrID [...]',
    help: 'Examine images',
    min: 1,
    flags: [json],
    async run(g, p, name) {
      const store = await open(g);
      const found: ImageRecord[] = [];
      const code = await eachArg(name, p.positionals, async (ref) => void found.push(await store.image(ref)));
      if (g.json) printJson(found);
      else
        for (const i of found) {
          out(`ID: ${i.id}\n`);
          for (const n of i.names ?? []) out(`Name: ${n}\n`);
          out(`Top Layer: ${i.layer ?? ''}\n`);
          for (const m of i['mapped-layers'] ?? []) out(`Top Layer: ${m}\n`);
          for (const d of digestsOf(i)) out(`Digest: ${d}\n`);
          for (const n of i['big-data-names'] ?? []) out(`Data: ${n}\n`);
          out(`Size: ${await imageSize(store, i)}\n`);
        }
      return code;
    },
  },
  removeImagesCommand(['delete-image', 'deleteimage'], 'Delete images and the layers only they use (refuses while containers use them)', false),
  removeImagesCommand(['rm'], 'Remove images: their mapped top layers first, then the top layer and each parent no one else needs', true),
  {
    names: ['prune'],
    args: '',
    help: 'Remove mapped top layers that no container uses',
    min: 0,
    max: 0,
    flags: [json],
    async run(g) {
      const removed = await (await open(g)).prune();
      if (g.json) printJson(removed);
      else out(removed.map((id) => `${id}\n`).join(''));
      return 0;
    },
  },
  ...imageDataCommands,
  {
    names: ['create-container', 'createcontainer'],
    args: 'imageNameOrID',
    help: 'Create a new container from an image (on a mapped top layer when its id mappings differ)',
    min: 1,
    max: 1,
    flags: [idFlag('container'), nameFlag('container'), { names: ['label', 'l'], value: true, help: 'mount label' }, ...mapFlags, layerOptFlag, ...metadataFlags, json],
    async run(g, p) {
      const store = await open(g);
      const c = await store.createContainer({ id: str(p, 'id'), image: p.positionals[0], names: list(p, 'name'), metadata: metadataOf(p), mountLabel: str(p, 'label'), storageOpt: layerOpts(p), ...idMaps(p) });
      printCreated(g, c);
      return 0;
    },
  },
  {
    names: ['containers'],
    args: '',
    help: 'List containers',
    min: 0,
    max: 0,
    flags: [{ names: ['quiet', 'q'], help: 'only the IDs' }, json],
    async run(g, p) {
      const containers = await (await open(g)).containers();
      if (g.json) printJson(containers);
      else
        for (const c of containers) {
          out(`${c.id}\n`);
          if (!bool(p, 'quiet')) for (const n of c.names ?? []) out(`\tname: ${n}\n`);
        }
      return 0;
    },
  },
  {
    names: ['container'],
    args: 'containerNameOrID [...]',
    help: 'Examine containers',
    min: 1,
    flags: [json],
    async run(g, p, name) {
      const store = await open(g);
      const found: ContainerRecord[] = [];
      const code = await eachArg(name, p.positionals, async (ref) => void found.push(await store.container(ref)));
      if (g.json) printJson(found);
      else {
        const images = await store.images();
        for (const c of found) await printContainer(store, c, images);
      }
      return code;
    },
  },
  deleteCommand(['delete-container', 'deletecontainer'], 'containerNameOrID [...]', 'Delete containers and their read-write layers (unmounting them)', (store, ref) => store.deleteContainer(ref)),
  containerDirCommand('dir'),
  containerDirCommand('runDir'),
  ...containerDataCommands,
  parentOwnersCommand('container'),
  {
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
  },
];
