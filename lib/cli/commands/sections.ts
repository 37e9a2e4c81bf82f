// Sections of one tar stream (docs/tar-engine.md, "Sections"; docs/cli.md): `tar` appends a host
// directory or files under a name prefix, `untar` extracts one section to a host directory.
// `diff --prefix` and `applydiff --section` (diff.ts) do the same for a layer's changes.
import fs from 'node:fs';
import path from 'node:path';
import { LayersError } from '../../errors.ts';
import { bool, str, usageError, type FlagSpec, type Parsed } from '../args.ts';
import type { Command } from '../command.ts';
import { isTerminal, tarFileFlag, tarInput } from '../flags.ts';
import { withProgress } from '../output.ts';

export const prefixFlag: FlagSpec = { names: ['prefix'], value: true, help: 'ours: write every entry under this name prefix (a section of the tar)' };
export const appendFlag: FlagSpec = { names: ['append'], help: 'ours: append to the tar in -f FILE (its end-of-archive blocks are rewritten), or create it' };
export const sectionFlag: FlagSpec = { names: ['section'], value: true, help: 'ours: only the entries under this name prefix, the prefix removed; the rest is skipped' };

/** The tar appender for -f FILE (--append: after the tar there) or stdout; usage checked first. */
export async function appenderFor(p: Parsed) {
  const { TarAppender } = await import('../../tar/sections.ts');
  const file = str(p, 'file');
  if (file === undefined) {
    if (bool(p, 'append')) throw usageError('--append needs -f FILE');
    if (isTerminal(1)) throw usageError('refusing to write a tar to a terminal: give -f FILE or redirect stdout');
    return TarAppender.onFd(1);
  }
  return TarAppender.open(file, { append: bool(p, 'append') });
}

function required(p: Parsed, key: string): string {
  const v = str(p, key);
  if (v === undefined || v === '') throw usageError(`--${key} is required`);
  return v;
}

export const tar: Command = {
  names: ['tar'],
  args: 'PATH [PATH...]',
  help: 'ours: write a host directory (its tree under the prefix) or files (each as PREFIX/NAME) as a section of a tar',
  min: 1,
  flags: [{ names: ['file', 'f'], value: true, help: 'write to this file instead of stdout' }, { ...prefixFlag, help: 'the name prefix of the section (required)' }, appendFlag],
  async run(_g, p) {
    const prefix = required(p, 'prefix');
    const paths = p.positionals;
    const stats = paths.map((f) => {
      try {
        return fs.lstatSync(f);
      } catch (err) {
        throw new LayersError('EINPUT', `cannot read ${f}: ${(err as NodeJS.ErrnoException).code}`);
      }
    });
    const out = await appenderFor(p);
    try {
      await withProgress(`writing ${prefix}`, (async () => {
        if (paths.length === 1 && stats[0].isDirectory()) return void (await out.addTree(paths[0], prefix));
        for (const [i, f] of paths.entries()) {
          if (stats[i].isDirectory()) await out.addTree(f, `${prefix}/${path.basename(path.resolve(f))}`);
          else await out.addFiles([f], prefix);
        }
      })());
      await out.close();
    } catch (err) {
      out.abort();
      throw err;
    }
    return 0;
  },
};

export const untar: Command = {
  names: ['untar'],
  args: '',
  help: 'ours: extract one section of a tar (from -f FILE or stdin) to a host directory',
  min: 0,
  max: 0,
  flags: [tarFileFlag, { ...sectionFlag, help: 'the name prefix of the section to extract (required)' }, { names: ['directory', 'C'], value: true, help: 'the directory to extract into (required; made when missing)' }],
  async run(_g, p) {
    const section = required(p, 'section');
    const dir = required(p, 'directory');
    const src = tarInput(p);
    const { extractTar } = await import('../../tar/extract.ts');
    fs.mkdirSync(dir, { recursive: true });
    let fd = 0;
    if (typeof src.input === 'string') {
      try {
        fd = fs.openSync(src.input, 'r');
      } catch (err) {
        throw new LayersError('EINPUT', `cannot open ${src.input}: ${(err as NodeJS.ErrnoException).code}`);
      }
    }
    try {
      await withProgress(`extracting ${section} from ${src.what}`, extractTar(fd, dir, { whiteouts: 'keep', section, sectionDigest: false }), () => src.size);
    } finally {
      if (fd !== 0) fs.closeSync(fd);
    }
    return 0;
  },
};
