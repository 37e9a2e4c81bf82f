// copy: files or directories into a layer, from the host or from another layer.
import type { CopySpec } from '../../index.ts';
import { str, usageError, type Parsed } from '../args.ts';
import { open, type Command } from '../command.ts';
import { json } from '../flags.ts';

/** [layer:]path */
function copySpec(arg: string): CopySpec {
  const i = arg.indexOf(':');
  return i < 0 ? { path: arg } : { layer: arg.slice(0, i), path: arg.slice(i + 1) };
}

/** --chown UID[:GID], numbers only */
function chownOf(p: Parsed): { uid: number; gid: number } | undefined {
  const owner = str(p, 'chown');
  if (owner === undefined) return undefined;
  const [u, gRaw = u] = owner.split(':');
  const id = (s: string) => (/^\d+$/.test(s) && Number(s) <= 0xffffffff ? Number(s) : undefined);
  const [uid, gid] = [id(u), id(gRaw)];
  if (uid === undefined || gid === undefined) throw usageError(`--chown ${owner}: want UID[:GID] as numbers`);
  return { uid, gid };
}

export const copy: Command = {
  names: ['copy'],
  args: '[sourceLayerNameOrID:]/path [...] targetLayerNameOrID:/path',
  help: 'Copy files or directories into a layer, from the host or from another layer',
  min: 2,
  flags: [{ names: ['chown', 'o'], value: true, help: 'owner of the copies, UID[:GID] as the container sees them' }, json],
  async run(g, p) {
    const chown = chownOf(p);
    const args = p.positionals.map(copySpec);
    await (await open(g)).copy(args.slice(0, -1), args[args.length - 1], { chown });
    return 0;
  },
};
