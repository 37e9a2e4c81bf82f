// layer-parent-owners and container-parent-owners: the ids owning the directories above a
// mounted layer that its id mappings cannot map, in the peer's output. The peer prints a layer's
// UIDs and GIDs lines only when there are some, and a container's always (Go's %v of a slice).
import { eachArg, exitCode, open, type Command } from '../command.ts';
import { json } from '../flags.ts';
import { out, printJson } from '../output.ts';

const goSlice = (ids: number[]) => `[${ids.join(' ')}]`;

function parentOwnersCommand(kind: 'layer' | 'container'): Command {
  return {
    names: [`${kind}-parent-owners`],
    args: `${kind}NameOrID [...]`,
    help: `The unmapped owners of the directories above a mounted ${kind}'s root (a runtime must let them through)`,
    min: 1,
    flags: [json],
    async run(g, p, name) {
      const store = await open(g);
      const outcomes = await eachArg(name, p.positionals, async (ref) => {
        const id = kind === 'layer' ? (await store.layer(ref)).id : (await store.container(ref)).id;
        const { uids, gids } = await store.parentOwners(id, kind);
        // the peer's JSON: Go field names, and null for none
        if (g.json) printJson({ ID: id, UIDs: uids.length ? uids : null, GIDs: gids.length ? gids : null });
        else {
          out(`ID: ${id}\n`);
          if (kind === 'container' || uids.length) out(`UIDs: ${goSlice(uids)}\n`);
          if (kind === 'container' || gids.length) out(`GIDs: ${goSlice(gids)}\n`);
        }
      });
      return exitCode(outcomes);
    },
  };
}

export const layerParentOwners = parentOwnersCommand('layer');
export const containerParentOwners = parentOwnersCommand('container');
