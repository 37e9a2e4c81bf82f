// metadata and set-metadata: the metadata string of a layer, image or container.
import { LayersError } from '../../errors.ts';
import { bool, usageError } from '../args.ts';
import { eachArg, exitCode, open, spellings, succeeded, type Command } from '../command.ts';
import { json, metadataFlags, metadataOf } from '../flags.ts';
import { out, printJson } from '../output.ts';

export const metadata: Command = {
  names: ['metadata'],
  args: 'layerOrImageOrContainerNameOrID [...]',
  help: 'Print the metadata of layers, images or containers',
  min: 1,
  flags: [{ names: ['quiet', 'q'], help: 'omit names and IDs' }, json],
  async run(g, p, name) {
    const store = await open(g);
    const outcomes = await eachArg(name, p.positionals, async (ref) => {
      const hit = await store.resolve(ref);
      if (!hit) throw new LayersError('ELAYERUNKNOWN', 'no layer, image or container has this name or id');
      return [ref, hit.record.metadata ?? ''] as const;
    });
    const found = Object.fromEntries(succeeded(outcomes));
    if (g.json) printJson(found);
    else for (const [ref, md] of Object.entries(found)) out(bool(p, 'quiet') ? `${md}\n` : `${ref}: ${md}\n`);
    return exitCode(outcomes);
  },
};

export const setMetadata: Command = {
  names: spellings('set-metadata'),
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
};
