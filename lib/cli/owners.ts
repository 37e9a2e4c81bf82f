// layer-parent-owners and container-parent-owners: the ids owning the directories above a
// mounted layer that its id mappings cannot map, in the peer's output. The peer prints a layer's
// UIDs and GIDs lines only when there are some, and a container's always (Go's %v of a slice).
import { json, open, out, printJson, reportFailure, type Command } from './common.ts';

const goSlice = (ids: number[]) => `[${ids.join(' ')}]`;

export function parentOwnersCommand(kind: 'layer' | 'container'): Command {
  return {
    names: [`${kind}-parent-owners`],
    args: `${kind}NameOrID [...]`,
    help: `The unmapped owners of the directories above a mounted ${kind}'s root (a runtime must let them through)`,
    min: 1,
    flags: [json],
    async run(g, p, name) {
      const store = await open(g);
      let failed = false;
      for (const ref of p.positionals) {
        try {
          const id = kind === 'layer' ? (await store.layer(ref)).id : (await store.container(ref)).id;
          const { uids, gids } = await store.parentOwners(id, kind);
          // the peer's JSON: Go field names, and null for none
          if (g.json) printJson({ ID: id, UIDs: uids.length ? uids : null, GIDs: gids.length ? gids : null });
          else {
            out(`ID: ${id}\n`);
            if (kind === 'container' || uids.length) out(`UIDs: ${goSlice(uids)}\n`);
            if (kind === 'container' || gids.length) out(`GIDs: ${goSlice(gids)}\n`);
          }
        } catch (err) {
          failed = true;
          reportFailure(name, ref, err);
        }
      }
      return failed ? 1 : 0;
    },
  };
}
