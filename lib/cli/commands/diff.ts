// A layer's changes, in and out: applydiff (a tar applied to a layer), diff (the changes as a
// tar), changes (as a list) and diffsize.
import fs from 'node:fs';
import { LayersError } from '../../errors.ts';
import type { DiffOptions } from '../../index.ts';
import { bool, str, usageError, type Parsed } from '../args.ts';
import { open, type Command, type Globals } from '../command.ts';
import { expectedDigestFlags, expectedDigests, isTerminal, json, tarFileFlag, tarInput } from '../flags.ts';
import { out, printJson, withProgress, withReportedProgress } from '../output.ts';
import { appendFlag, appenderFor, prefixFlag, sectionFlag } from './sections.ts';

export const applyDiff: Command = {
  names: ['applydiff', 'apply-diff'],
  args: 'layerNameOrID',
  help: 'Apply a tar (from -f FILE or stdin) to a layer',
  min: 1,
  max: 1,
  flags: [tarFileFlag, ...expectedDigestFlags, json, sectionFlag],
  async run(g, p) {
    const store = await open(g);
    const src = tarInput(p);
    const section = str(p, 'section');
    const what = `${section ?? ''}${section ? ' of ' : ''}${src.what}`;
    const layer = await withReportedProgress(`applying ${what}`, src.size, (onProgress) => store.applyDiff(p.positionals[0], src.input, { ...expectedDigests(p), onProgress, section }));
    if (g.json) printJson(layer);
    return 0;
  },
};

/** layerNameOrID [referenceLayerNameOrID] for diff, changes and diffsize */
const twoLayers = { args: 'layerNameOrID [referenceLayerNameOrID]', min: 1, max: 2 };

export const diff: Command = {
  names: ['diff'],
  ...twoLayers,
  help: "Write a layer's changes against its parent (or the reference layer) as a tar",
  flags: [
    { names: ['file', 'f'], value: true, help: 'write to this file instead of stdout' },
    { names: ['gzip', 'c'], help: 'compress with gzip' },
    { names: ['zstd'], help: 'ours: compress with zstd' },
    { names: ['compression'], value: true, help: 'ours: gzip, zstd or none' },
    { names: ['uncompressed', 'u'], help: 'no compression (the default)' },
    { names: ['bzip2', 'bz2', 'b'], help: 'compress with bzip2 (not supported)' },
    { names: ['xz', 'x'], help: 'compress with xz (not supported)' },
    { names: ['sparse', 'S'], help: "ours: every file with holes as a sparse entry, holes left out (GNU tar's --sparse); by default only files mostly holes" },
    { names: ['no-sparse'], help: 'ours: no sparse entries, every byte of every file written (as the peer does)' },
    { ...prefixFlag, help: "ours: the changes under this name prefix, as a section of a tar; the layer may be a container's" },
    appendFlag,
  ],
  async run(g, p) {
    if (str(p, 'prefix') !== undefined) return diffSection(g, p);
    if (bool(p, 'append')) throw usageError('--append adds a section: give --prefix P');
    if (bool(p, 'bzip2') || bool(p, 'xz')) throw usageError(`${bool(p, 'xz') ? 'xz' : 'bzip2'} compression is not supported; use --gzip, --zstd or none`);
    const compression = outputCompression(p);
    const sparse = sparseChoice(p);
    const store = await open(g);
    const [layer, reference] = p.positionals;
    const file = str(p, 'file');
    if (file === undefined && isTerminal(1)) throw usageError('refusing to write a tar to a terminal: give -f FILE or redirect stdout');
    let fd = 1;
    if (file !== undefined) {
      try {
        fd = fs.openSync(file, 'w', 0o644);
      } catch (err) {
        throw new LayersError('EINPUT', `cannot create ${file}: ${(err as NodeJS.ErrnoException).code}`);
      }
    }
    try {
      // fd 1 itself goes to the driver: the tar engine sends bodies into a pipe with sendfile
      const written = () => (fs.fstatSync(fd).isFile() ? fs.fstatSync(fd).size : undefined);
      await withProgress(`writing the diff of ${layer}`, store.diff(layer, fd, { reference, compression, sparse }), written);
    } finally {
      if (fd !== 1) fs.closeSync(fd);
    }
    return 0;
  },
};

type OutputCompression = NonNullable<DiffOptions['compression']>;

/**
 * The diff's compression from -c/--gzip, --zstd, --compression KIND and -u/--uncompressed: at
 * most one kind may be asked for; -u wins, as the peer's -u overrides its -c.
 */
function outputCompression(p: Parsed): OutputCompression | undefined {
  const named = str(p, 'compression');
  if (named !== undefined && !['gzip', 'zstd', 'none'].includes(named)) throw usageError(`--compression ${named}: use gzip, zstd or none`);
  const kinds = new Set<string>();
  if (bool(p, 'gzip')) kinds.add('gzip');
  if (bool(p, 'zstd')) kinds.add('zstd');
  if (named !== undefined) kinds.add(named);
  if (kinds.size > 1) throw usageError(`conflicting compressions: ${[...kinds].join(' and ')}`);
  const [kind] = kinds;
  return bool(p, 'uncompressed') || kind === undefined || kind === 'none' ? undefined : (kind as OutputCompression);
}

/** -S: every file with holes sparse; --no-sparse: none; neither: those mostly holes (DiffOptions.sparse) */
function sparseChoice(p: Parsed): boolean | undefined {
  if (bool(p, 'sparse') && bool(p, 'no-sparse')) throw usageError('--sparse and --no-sparse contradict each other');
  return bool(p, 'sparse') ? true : bool(p, 'no-sparse') ? false : undefined;
}

/** diff --prefix P [--append]: the changes as a section of a tar (lib/tar/sections.ts) */
async function diffSection(g: Globals, p: Parsed): Promise<number> {
  if (outputCompression(p) !== undefined || bool(p, 'bzip2') || bool(p, 'xz')) throw usageError('--prefix writes an uncompressed section');
  if (p.positionals.length > 1) throw usageError('--prefix takes no reference layer');
  const store = await open(g);
  const output = await appenderFor(p);
  try {
    await withProgress(`writing the diff of ${p.positionals[0]}`, store.diffSection(p.positionals[0], output, str(p, 'prefix')!, { sparse: sparseChoice(p) }));
    await output.close();
  } catch (err) {
    output.abort();
    throw err;
  }
  return 0;
}

/** Go's %q for the paths changes prints: a byte that is not UTF-8 (an escaped byte, lib/tar/names.ts)
 *  as \xNN, as Go shows it */
const quote = (s: string) => JSON.stringify(s).replace(/\\(\\|udc[89a-f][0-9a-f])/g, (m, g: string) => (g === '\\' ? m : `\\x${g.slice(3)}`));
/** the peer's JSON numbers for a change's kind (archive.ChangeType) */
const KIND_NUMBERS = { Modify: 0, Add: 1, Delete: 2 } as const;

export const changes: Command = {
  names: ['changes'],
  ...twoLayers,
  help: "List a layer's changes against its parent (or the reference layer)",
  flags: [json],
  async run(g, p) {
    const store = await open(g);
    const list = await store.changes(p.positionals[0], p.positionals[1]);
    if (g.json) printJson(list.map((c) => ({ Path: c.path, Kind: KIND_NUMBERS[c.kind] })));
    else out(list.map((c) => `${c.kind} ${quote(c.path)}\n`).join(''));
    return 0;
  },
};

export const diffSize: Command = {
  names: ['diffsize'],
  ...twoLayers,
  help: "Bytes of file data in a layer's changes",
  flags: [json],
  async run(g, p) {
    const store = await open(g);
    const size = await store.diffSize(p.positionals[0], p.positionals[1]);
    if (g.json) printJson(size);
    else out(`${size}\n`);
    return 0;
  },
};
