// Containers: create-container (on a mapped top layer when its id mappings differ from the
// image's), containers, container (examine), delete-container, get-container-dir and
// get-container-run-dir.
import type { ContainerRecord, ImageRecord } from '../../index.ts';
import type { RecordStore } from '../../store/store.ts';
import { bool, list, str } from '../args.ts';
import { eachArg, exitCode, open, spellings, succeeded, type Command } from '../command.ts';
import { idFlag, idMaps, json, labelFlag, layerOptFlag, layerOpts, mapFlags, metadataFlags, metadataOf, nameFlag, quietIds } from '../flags.ts';
import { out, printCreated, printJson } from '../output.ts';
import { deleteCommand } from './delete.ts';

export const createContainer: Command = {
  names: spellings('create-container'),
  args: 'imageNameOrID',
  help: 'Create a new container from an image (on a mapped top layer when its id mappings differ; "": from no image)',
  min: 1,
  max: 1,
  flags: [
    idFlag('container'),
    nameFlag('container'),
    labelFlag,
    ...mapFlags,
    layerOptFlag,
    { names: ['volatile'], help: 'mark the container volatile: overlay mounts its layer without syncs' },
    ...metadataFlags,
    json,
  ],
  async run(g, p) {
    const store = await open(g);
    const c = await store.createContainer({
      volatile: bool(p, 'volatile'), id: str(p, 'id'), image: p.positionals[0] || undefined, names: list(p, 'name'), metadata: metadataOf(p), mountLabel: str(p, 'label'), storageOpt: layerOpts(p), ...idMaps(p) });
    printCreated(g, c);
    return 0;
  },
};

export const containers: Command = {
  names: ['containers'],
  args: '',
  help: 'List containers',
  min: 0,
  max: 0,
  flags: [quietIds, json],
  async run(g, p) {
    const all = await (await open(g)).containers();
    if (g.json) printJson(all);
    else
      for (const c of all) {
        out(`${c.id}\n`);
        if (!bool(p, 'quiet')) for (const n of c.names ?? []) out(`\tname: ${n}\n`);
      }
    return 0;
  },
};

async function printContainer(store: RecordStore, c: ContainerRecord, images: ImageRecord[]): Promise<void> {
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

export const container: Command = {
  names: ['container'],
  args: 'containerNameOrID [...]',
  help: 'Examine containers',
  min: 1,
  flags: [json],
  async run(g, p, name) {
    const store = await open(g);
    const outcomes = await eachArg(name, p.positionals, (ref) => store.container(ref));
    const found = succeeded(outcomes);
    if (g.json) printJson(found);
    else {
      const images = await store.images();
      for (const c of found) await printContainer(store, c, images);
    }
    return exitCode(outcomes);
  },
};

export const deleteContainer = deleteCommand(spellings('delete-container'), 'containerNameOrID [...]', 'Delete containers and their read-write layers (unmounting them)', (store, ref) => store.deleteContainer(ref));

/** get-container-dir and get-container-run-dir */
function containerDirCommand(name: string, which: 'dir' | 'runDir', help: string): Command {
  return {
    names: spellings(name),
    args: 'containerNameOrID',
    help,
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

export const containerDir = containerDirCommand('get-container-dir', 'dir', "Print the container's data directory");
export const containerRunDir = containerDirCommand('get-container-run-dir', 'runDir', "Print the container's run-time directory");
