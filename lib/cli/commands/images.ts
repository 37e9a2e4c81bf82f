// Images: create-image, images, images-by-digest, image (examine, with the peer's size), and
// their removal: delete-image, ours `rm` (mapped top layers first, then the top layer and each
// parent no one else needs) and `prune` (mapped top layers no container uses).
// records.ts, not index.ts: a value from index.ts would load the whole library at start-up
import type { ImageRecord } from '../../index.ts';
import { imageDigests } from '../../store/records.ts';
import { bool, list, str } from '../args.ts';
import { eachArg, exitCode, open, spellings, succeeded, type Command, type Globals } from '../command.ts';
import { idFlag, json, metadataFlags, metadataOf, nameFlag, quietIds } from '../flags.ts';
import { out, printCreated, printJson } from '../output.ts';

function listImages(g: Globals, images: ImageRecord[], quiet: boolean): void {
  if (g.json) return printJson(images);
  for (const i of images) {
    out(`${i.id}\n`);
    if (quiet) continue;
    for (const n of i.names ?? []) out(`\tname: ${n}\n`);
    for (const d of imageDigests(i)) out(`\tdigest: ${d}\n`);
    for (const n of i['big-data-names'] ?? []) out(`\tdata: ${n}\n`);
  }
}

export const createImage: Command = {
  names: spellings('create-image'),
  args: '[topLayerNameOrID]',
  help: 'Create a new image using layers (none, or "": an image with no layer)',
  min: 0,
  max: 1,
  flags: [idFlag('image'), nameFlag('image'), { names: ['digest', 'd'], value: true, help: 'image digest' }, ...metadataFlags, json],
  async run(g, p) {
    const store = await open(g);
    const image = await store.createImage({ id: str(p, 'id'), layer: p.positionals[0] || undefined, names: list(p, 'name'), metadata: metadataOf(p), digest: str(p, 'digest') });
    printCreated(g, image);
    return 0;
  },
};

export const images: Command = {
  names: ['images'],
  args: '',
  help: 'List images',
  min: 0,
  max: 0,
  flags: [quietIds, json],
  async run(g, p) {
    listImages(g, await (await open(g)).images(), bool(p, 'quiet'));
    return 0;
  },
};

export const imagesByDigest: Command = {
  names: spellings('images-by-digest'),
  args: 'DIGEST',
  help: 'List images by digest',
  min: 1,
  max: 1,
  flags: [quietIds, json],
  async run(g, p) {
    listImages(g, await (await open(g)).imagesByDigest(p.positionals[0]), bool(p, 'quiet'));
    return 0;
  },
};

export const image: Command = {
  names: ['image'],
  args: 'imageNameOrID [...]',
  help: 'Examine images',
  min: 1,
  flags: [json],
  async run(g, p, name) {
    const store = await open(g);
    const outcomes = await eachArg(name, p.positionals, (ref) => store.image(ref));
    const found = succeeded(outcomes);
    if (g.json) printJson(found);
    else
      for (const i of found) {
        out(`ID: ${i.id}\n`);
        for (const n of i.names ?? []) out(`Name: ${n}\n`);
        out(`Top Layer: ${i.layer ?? ''}\n`);
        for (const m of i['mapped-layers'] ?? []) out(`Top Layer: ${m}\n`);
        for (const d of imageDigests(i)) out(`Digest: ${d}\n`);
        for (const n of i['big-data-names'] ?? []) out(`Data: ${n}\n`);
        out(`Size: ${await store.imageSize(i.id)}\n`);
        if (await store.readOnly('image', i.id)) out('Read Only: true\n');
      }
    return exitCode(outcomes);
  },
};

/** `delete-image` and `rm`: per image, the layers removed in order (and with --force the containers first). */
function removeImagesCommand(names: string[], help: string, withForce: boolean): Command {
  return {
    names,
    args: 'imageNameOrID [...]',
    help,
    min: 1,
    flags: [
      withForce ? { names: ['force', 'f'], help: 'remove the containers that use the image first' } : { names: ['test', 't'], help: 'only say what would be removed' },
      json,
    ],
    async run(g, p, name) {
      const store = await open(g);
      const outcomes = await eachArg(
        name,
        p.positionals,
        async (ref) => {
          const r = bool(p, 'test') ? await store.planImageRemoval(ref) : await store.removeImage(ref, { force: bool(p, 'force') });
          if (!g.json) {
            for (const c of r.containers) out(`${ref}: container ${c}\n`);
            for (const l of r.layers) out(`${ref}: ${l}\n`);
          }
          return r;
        },
        { quiet: g.json },
      );
      if (g.json)
        printJson(
          Object.fromEntries(
            outcomes.map((o) => [o.ref, o.ok ? { ...(o.value.containers.length > 0 ? { 'deleted-containers': o.value.containers } : {}), 'deleted-layers': o.value.layers } : { error: o.error }]),
          ),
        );
      return exitCode(outcomes);
    },
  };
}

export const deleteImage = removeImagesCommand(spellings('delete-image'), 'Delete images and the layers only they use (refuses while containers use them)', false);
export const rm = removeImagesCommand(['rm'], 'Remove images: their mapped top layers first, then the top layer and each parent no one else needs', true);

export const prune: Command = {
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
};
