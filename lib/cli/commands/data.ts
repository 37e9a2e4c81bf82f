// Data items (named blobs kept beside a record) of images, containers and layers, with the
// peer's command names: list-, get-, set-<kind>-data for all three, and get-<kind>-data-size
// and -digest for images and containers (the peer records those two only for them).
import fs from 'node:fs';
import { LayersError } from '../../errors.ts';
import type { DataOwnerKind } from '../../index.ts';
import { str } from '../args.ts';
import { open, spellings, type Command } from '../command.ts';
import { json } from '../flags.ts';
import { out, printJson } from '../output.ts';

/** "a layer", "an image", "a container" */
const withArticle = (kind: DataOwnerKind) => (kind === 'image' ? `an ${kind}` : `a ${kind}`);

function dataCommands(kind: DataOwnerKind): Command[] {
  const ref = `${kind}NameOrID`;
  const fact = (which: 'size' | 'digest'): Command => ({
    names: spellings(`get-${kind}-data-${which}`),
    args: `${ref} dataName`,
    help: `Print the ${which} of a data item of ${withArticle(kind)}`,
    min: 2,
    max: 2,
    flags: [],
    async run(g, p) {
      const item = await (await open(g)).bigData(kind, p.positionals[0], p.positionals[1]);
      out(`${item[which]}\n`);
      return 0;
    },
  });
  return [
    {
      names: spellings(`list-${kind}-data`),
      args: ref,
      help: `List the data items of ${withArticle(kind)}`,
      min: 1,
      max: 1,
      flags: [json],
      async run(g, p) {
        const names = await (await open(g)).bigDataNames(kind, p.positionals[0]);
        if (g.json) printJson(names);
        else out(names.map((n) => `${n}\n`).join(''));
        return 0;
      },
    },
    {
      names: spellings(`get-${kind}-data`),
      args: `${ref} dataName`,
      help: `Write a data item of ${withArticle(kind)} to stdout (or -f FILE)`,
      min: 2,
      max: 2,
      flags: [{ names: ['file', 'f'], value: true, help: 'write the data to this file' }],
      async run(g, p) {
        const { data } = await (await open(g)).bigData(kind, p.positionals[0], p.positionals[1]);
        const file = str(p, 'file');
        if (file !== undefined) fs.writeFileSync(file, data);
        else process.stdout.write(data);
        return 0;
      },
    },
    ...(kind === 'layer' ? [] : [fact('size'), fact('digest')]),
    {
      names: spellings(`set-${kind}-data`),
      args: `${ref} dataName`,
      help: `Store a data item with ${withArticle(kind)} (from -f FILE or stdin)`,
      min: 2,
      max: 2,
      flags: [{ names: ['file', 'f'], value: true, help: 'read the data from this file' }],
      async run(g, p) {
        const file = str(p, 'file');
        let data: Buffer;
        try {
          data = fs.readFileSync(file ?? 0);
        } catch (err) {
          throw new LayersError('EINPUT', `cannot read ${file ?? 'stdin'}: ${(err as NodeJS.ErrnoException).code}`);
        }
        await (await open(g)).setBigData(kind, p.positionals[0], p.positionals[1], data);
        return 0;
      },
    },
  ];
}

export const layerData = dataCommands('layer');
export const imageData = dataCommands('image');
export const containerData = dataCommands('container');
