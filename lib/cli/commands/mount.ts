// mount, unmount and mounted: a layer's or container's mount and its count of users. Each takes
// several arguments; `--json` prints [{"id", ..., "error"}] as the peer does.
import type { RecordStore } from '../../store/store.ts';
import { bool, list } from '../args.ts';
import { eachArg, exitCode, open, type Command } from '../command.ts';
import { json, labelFlag } from '../flags.ts';
import { out, printJson } from '../output.ts';

const refs = 'layerOrContainerNameOrID [...]';

export const mount: Command = {
  names: ['mount'],
  args: refs,
  help: "Mount a layer or a container's layer (one more user) and print where",
  min: 1,
  flags: [{ names: ['ro', 'r'], help: 'mount read-only' }, labelFlag, { names: ['opt', 'o'], value: true, multi: true, help: 'mount option; repeatable' }, json],
  async run(g, p, name) {
    const store = await open(g);
    const outcomes = await eachArg(
      name,
      p.positionals,
      async (ref) => {
        const mountpoint = await store.mount(ref, { readOnly: bool(p, 'ro'), options: list(p, 'opt') });
        if (!g.json) out(`${mountpoint}\n`);
        return mountpoint;
      },
      { quiet: g.json },
    );
    if (g.json) printJson(outcomes.map((o) => (o.ok ? { id: o.ref, mountpoint: o.value, error: '' } : { id: o.ref, mountpoint: '', error: o.error })));
    return exitCode(outcomes);
  },
};

/** unmount and mounted: `line` says what became of one argument (printed without --json). */
function mountStateCommand(names: string[], help: string, flags: Command['flags'], line: (store: RecordStore, ref: string, force: boolean) => Promise<string>): Command {
  return {
    names,
    args: refs,
    help,
    min: 1,
    flags: [...flags, json],
    async run(g, p, name) {
      const store = await open(g);
      const outcomes = await eachArg(name, p.positionals, async (ref) => {
        const said = await line(store, ref, bool(p, 'force'));
        if (!g.json) out(said);
      }, { quiet: g.json });
      if (g.json) printJson(outcomes.map((o) => ({ id: o.ref, error: o.ok ? '' : o.error })));
      return exitCode(outcomes);
    },
  };
}

export const unmount = mountStateCommand(
  ['unmount', 'umount'],
  "One user less of a layer's or container's mount; the last one unmounts",
  [{ names: ['force', 'f'], help: 'unmount whatever the count' }],
  async (store, ref, force) => ((await store.unmount(ref, force)) === 0 ? `${ref} mountpoint unmounted\n` : ''),
);

export const mounted = mountStateCommand(['mounted'], 'Say which layers or containers are mounted (`<arg> mounted`)', [], async (store, ref) =>
  (await store.mountCount(ref)) > 0 ? `${ref} mounted\n` : '',
);
