// get-names, add-names and set-names: the names of a layer, image or container.
import { LayersError } from '../../errors.ts';
import { list } from '../args.ts';
import { open, spellings, type Command } from '../command.ts';
import { json } from '../flags.ts';
import { out, printJson } from '../output.ts';

export const getNames: Command = {
  names: spellings('get-names'),
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
};

/** add-names and set-names: -n NAME (repeatable); with --json, the names it has after */
function changeNamesCommand(name: 'add-names' | 'set-names', help: string): Command {
  return {
    names: spellings(name),
    args: 'layerOrImageOrContainerNameOrID',
    help,
    min: 1,
    max: 1,
    flags: [{ names: ['name', 'n'], value: true, multi: true, help: 'name; repeatable' }, json],
    async run(g, p) {
      const store = await open(g);
      const [ref, given] = [p.positionals[0], list(p, 'name')];
      const names = name === 'add-names' ? await store.addNames(ref, given) : await store.setNames(ref, given);
      if (g.json) printJson(names);
      return 0;
    },
  };
}

export const addNames = changeNamesCommand('add-names', 'Add names to a layer, image or container (a name another of its kind has moves here)');
export const setNames = changeNamesCommand('set-names', 'Replace the names of a layer, image or container (a name another of its kind has moves here)');
