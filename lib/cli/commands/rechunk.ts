// rechunk: an image's files regrouped into new layers (docs/rechunk.md, docs/cli.md "rechunk").
import fs from 'node:fs';
import { LayersError } from '../../errors.ts';
import { bool, list, str, usageError, type Parsed } from '../args.ts';
import { open, type Command } from '../command.ts';
import { json, nameFlag } from '../flags.ts';
import { printCreated, printJson } from '../output.ts';

/** A whole number flag (or environment value) of at least `min`. */
function wholeNumber(p: Parsed, key: string, min: number, fallback?: string): number | undefined {
  const v = str(p, key) ?? fallback;
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v) || Number(v) < min || !Number.isSafeInteger(Number(v))) throw usageError(`--${key} ${v}: want a whole number of at least ${min}`);
  return Number(v);
}

function readPlan(file: string): unknown {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new LayersError('EINPUT', `--plan ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new LayersError('EINPUT', `--plan ${file}: not JSON (${(err as Error).message})`, { cause: err });
  }
}

export const rechunk: Command = {
  names: ['rechunk'],
  args: 'IMAGE',
  help: 'Make a new image of the image\'s files regrouped into at most --max-layers layers (data reflinked, tars in a fixed order)',
  min: 1,
  max: 1,
  flags: [
    { names: ['max-layers', 'm'], value: true, help: 'at most this many layers (needed unless --plan is given)' },
    nameFlag('new image'),
    { names: ['like'], value: true, help: 'a previous image (a previous rechunk): files keep the layer they had there' },
    { names: ['plan'], value: true, help: 'take the assignment of paths to layers from this JSON file (docs/rechunk.md)' },
    { names: ['dry-run'], help: 'print the plan (JSON) and make nothing' },
    { names: ['source-date-epoch'], value: true, help: 'write later mtimes as this time, in seconds (default: $SOURCE_DATE_EPOCH)' },
    json,
  ],
  async run(g, p) {
    const maxLayers = wholeNumber(p, 'max-layers', 1);
    const planFile = str(p, 'plan');
    if (maxLayers === undefined && planFile === undefined) throw usageError('rechunk needs --max-layers or --plan');
    const dryRun = bool(p, 'dry-run');
    if (!dryRun && list(p, 'name').length === 0) throw usageError('rechunk needs a name for the new image (-n NAME)');
    const epochEnv = process.env.SOURCE_DATE_EPOCH || undefined;
    const sourceDateEpoch = wholeNumber(p, 'source-date-epoch', 0, epochEnv);
    const store = await open(g);
    const result = await store.rechunk(p.positionals[0], {
      maxLayers,
      names: list(p, 'name'),
      like: str(p, 'like'),
      plan: planFile === undefined ? undefined : readPlan(planFile),
      planSource: planFile,
      sourceDateEpoch,
      dryRun,
    });
    if (dryRun) printJson(result.plan);
    else if (g.json) printJson({ image: result.image, layers: result.layers });
    else printCreated(g, result.image!);
    return 0;
  },
};
