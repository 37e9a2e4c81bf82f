// `delete` (a container, image or layer, without the use checks), and the one shape of the
// peer's delete commands, which delete-layer (layers.ts) and delete-container (containers.ts)
// share. delete-image is with rm in images.ts: it reports the layers that went.
import type { RecordStore } from '../../store/store.ts';
import { eachArg, exitCode, open, type Command } from '../command.ts';
import { json } from '../flags.ts';
import { printJson } from '../output.ts';

/**
 * Each argument removed in turn, a failure reported and the others gone on with; `--json` prints
 * {"<arg>": "<error, or empty when it went>"}; exit 1 if any failed.
 */
export function deleteCommand(names: string[], args: string, help: string, remove: (store: RecordStore, ref: string) => Promise<unknown>): Command {
  return {
    names,
    args,
    help,
    min: 1,
    flags: [json],
    async run(g, p, name) {
      const store = await open(g);
      const outcomes = await eachArg(name, p.positionals, (ref) => remove(store, ref), { quiet: g.json });
      if (g.json) printJson(Object.fromEntries(outcomes.map((o) => [o.ref, o.ok ? '' : o.error])));
      return exitCode(outcomes);
    },
  };
}

export const deleteAny = deleteCommand(
  ['delete'],
  'layerOrImageOrContainerNameOrID [...]',
  'Delete a container, image or layer without the use checks (not a layer other layers stand on)',
  (store, ref) => store.delete(ref),
);
