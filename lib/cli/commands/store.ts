// The store as a whole: status, wipe, shutdown, and the version of this program.
import fs from 'node:fs';
import path from 'node:path';
import { packageRoot } from '../../package-root.ts';
import { bool } from '../args.ts';
import { open, type Command } from '../command.ts';
import { json } from '../flags.ts';
import { out, printJson } from '../output.ts';

/** [key, value] facts, as `Key: value` lines or one JSON array of pairs */
function printFacts(g: { json: boolean }, facts: Array<[string, string]>): void {
  if (g.json) printJson(facts);
  else out(facts.map(([k, v]) => `${k}: ${v}\n`).join(''));
}

export const status: Command = {
  names: ['status'],
  args: '',
  help: 'Show the store and graph driver status',
  min: 0,
  max: 0,
  flags: [json],
  async run(g) {
    const facts = await (await open(g)).status();
    // which storage.conf chose the store (none when flags did): last, after the peer's lines
    if (g.storageConf !== undefined) facts.push(['Storage Conf', g.storageConf || 'none (built-in defaults)']);
    printFacts(g, facts);
    return 0;
  },
};

export const wipe: Command = {
  names: ['wipe'],
  args: '',
  help: 'Delete every container, image and layer (unmounting mounted ones)',
  min: 0,
  max: 0,
  flags: [json],
  async run(g) {
    await (await open(g)).wipe();
    return 0;
  },
};

export const shutdown: Command = {
  names: ['shutdown'],
  args: '',
  help: 'Release the graph driver; refuses while layers are mounted unless --force',
  min: 0,
  max: 0,
  flags: [{ names: ['force', 'f'], help: 'unmount mounted layers first' }, json],
  async run(g, p) {
    const unmounted = await (await open(g)).shutdown(bool(p, 'force'));
    if (g.json) printJson(unmounted);
    return 0;
  },
};

export const version: Command = {
  names: ['version'],
  args: '',
  help: 'Print version information',
  min: 0,
  max: 0,
  flags: [json],
  // no storage.conf read: unlike the peer's, `version` does not fail on a bad one
  store: false,
  async run(g) {
    // read here, not at import: `--help` and the other commands need not read package.json
    const { version } = JSON.parse(fs.readFileSync(path.join(packageRoot, 'package.json'), 'utf8')) as { version: string };
    printFacts(g, [
      ['Version', version],
      ['Node Version', process.version],
    ]);
    return 0;
  },
};
