// `exists`: whether names or ids are known, optionally only as one kind of record.
import { bool } from '../args.ts';
import { open, type Command } from '../command.ts';
import { json } from '../flags.ts';
import { out, printJson } from '../output.ts';

export const exists: Command = {
  names: ['exists'],
  args: 'layerOrImageOrContainerNameOrID [...]',
  help: 'Check that layers, images or containers exist (exit 1 if any does not)',
  min: 1,
  flags: [
    { names: ['layer', 'l'], help: 'only succeed if the match is a layer' },
    { names: ['image', 'i'], help: 'only succeed if the match is an image' },
    { names: ['container', 'c'], help: 'only succeed if the match is a container' },
    { names: ['quiet', 'q'], help: "don't print names" },
    json,
  ],
  async run(g, p) {
    const store = await open(g);
    const only = (['layer', 'image', 'container'] as const).filter((k) => bool(p, k));
    const found: Record<string, boolean> = {};
    for (const ref of p.positionals) found[ref] = (await store.resolve(ref, only.length > 0 ? [...only] : undefined)) !== undefined;
    if (g.json) printJson(found);
    else if (!bool(p, 'quiet')) for (const [ref, ok] of Object.entries(found)) out(`${ref}: ${ok}\n`);
    return Object.values(found).every(Boolean) ? 0 : 1;
  },
};
