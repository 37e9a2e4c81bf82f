// Benchmark: our tar writer and extractor beside GNU tar, on ext4, btrfs and xfs loop
// filesystems, in one run, on the same data (default: 1 GiB in 50 000 files). Prints times
// and the ratio GNU tar / ours (above 1: we are faster). Root only; run it in a private mount
// namespace:  unshare -m --propagation private node --import tsx hack/bench-tar.ts
//   [--gib N] [--files N] [--fs ext4,btrfs,xfs] [--rounds N] [--disk] [--cold]
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { makeBulkTree } from '../tests/fixtures/tree.ts';
import { flag, imageDir, listOpt, median, numOpt, settle, sh, Table, timeProc, usedMiB, withLoopFs, type FsKind } from './bench-lib.ts';

const total = Math.round(numOpt('--gib', 1) * (1 << 30));
const files = numOpt('--files', 50_000);
const kinds = listOpt('--fs', ['ext4', 'btrfs', 'xfs']) as FsKind[];
const here = path.dirname(new URL(import.meta.url).pathname);
const ROUNDS = numOpt('--rounds', 3);
/** every run, in order, GNU tar's then ours: the spread behind a median */
const runs = (g: number[], o: number[]) => `runs ${g.map((x, i) => `${x.toFixed(0)}/${o[i].toFixed(0)}`).join(' ')}`;

function ours(a: string[]): { ms: number; bytes: Record<string, number>; maxRSS: number } {
  // the time is measured inside the process: Node and tsx start-up (~0.3 s) are not the engine's
  const out = execFileSync(process.execPath, ['--import', 'tsx', path.join(here, 'tar.mjs'), ...a], { encoding: 'utf8', env: { ...process.env, LAYERS_SOURCES: '1' } });
  return JSON.parse(out.trim().split('\n').pop()!);
}
/** Read what the next run reads, so both tools start from a warm page cache. Without it the
 *  input is partly cold, and by chance: this machine reclaims page cache left untouched for
 *  ~30 s (DAMON pageout of cold memory), and 41 000 of the 50 000 source files were found
 *  uncached before a round. --cold instead evicts it (umount and mount) before every run. */
const cold = flag('--cold');
const prepare = (input: string, mnt: string, loop: string) => {
  if (cold) {
    sh('umount', [mnt]);
    sh('mount', [loop, mnt]);
  } else if (fs.statSync(input).isDirectory()) sh('sh', ['-c', 'tar -cf - -C "$1" . | cat > /dev/null', 'warm', input]);
  else sh('sh', ['-c', 'cat "$1" > /dev/null', 'warm', input]);
};
const table = new Table(['fs', 'operation', 'GNU tar', 'ours', 'ratio', 'notes']);
const row = (r: string[]) => table.row(r);
const images = imageDir(total * 6 + 2 * 2 ** 30);
try {
  for (const kind of kinds) {
    withLoopFs(path.join(images.base, kind), kind, total * 6 + 2 * 2 ** 30, (mnt, loop) => {
      const src = path.join(mnt, 'src');
      fs.mkdirSync(src);
      makeBulkTree(src, files, total);
      settle(mnt);
      // Each comparison runs GNU tar and ours alternately, ROUNDS times, removing the output
      // and syncing between runs: on a loop device the run after a big write otherwise pays
      // for its writeback (measured: 3x slower, whichever tool goes second). Medians reported.
      const gnuTar = path.join(mnt, 'gnu.tar');
      const ourTar = path.join(mnt, 'ours.tar');
      const alignedTar = path.join(mnt, 'aligned.tar');
      const clean = (...ps: string[]) => {
        for (const p of ps) fs.rmSync(p, { recursive: true, force: true });
        settle(mnt);
      };
      const createRow = (label: string, out: string, flags: string[] = []) => {
        const g: number[] = [];
        const o: Array<ReturnType<typeof ours>> = [];
        let space = 0;
        for (let r = 0; r < ROUNDS; r++) {
          clean(gnuTar, out);
          prepare(src, mnt, loop);
          g.push(timeProc('tar', ['-cf', gnuTar, '-C', src, '.']));
          clean(gnuTar, out);
          prepare(src, mnt, loop);
          const before = usedMiB(mnt);
          o.push(ours(['create', src, out, ...flags]));
          settle(mnt);
          space = usedMiB(mnt) - before;
        }
        clean(gnuTar, out);
        const om = median(o.map((x) => x.ms));
        const last = o[o.length - 1];
        row([kind, label, `${median(g).toFixed(0)} ms`, `${om.toFixed(0)} ms`, (median(g) / om).toFixed(2), `${JSON.stringify(last.bytes)}; new space ${space.toFixed(0)} MiB; peak RSS ${(last.maxRSS / 2 ** 20).toFixed(0)} MiB; ${runs(g, o.map((x) => x.ms))}`]);
      };
      const extractRow = (label: string, from: string) => {
        const gx = path.join(mnt, 'gx');
        const ox = path.join(mnt, 'ox');
        const g: number[] = [];
        const o: Array<ReturnType<typeof ours>> = [];
        let space = 0;
        for (let r = 0; r < ROUNDS; r++) {
          clean(gx, ox);
          fs.mkdirSync(gx);
          prepare(from, mnt, loop);
          g.push(timeProc('tar', ['-xf', from, '-C', gx]));
          clean(gx, ox);
          fs.mkdirSync(ox);
          prepare(from, mnt, loop);
          const before = usedMiB(mnt);
          o.push(ours(['extract', from, ox]));
          settle(mnt);
          space = usedMiB(mnt) - before;
        }
        clean(gx, ox);
        const om = median(o.map((x) => x.ms));
        row([kind, label, `${median(g).toFixed(0)} ms`, `${om.toFixed(0)} ms`, (median(g) / om).toFixed(2), `new space ${space.toFixed(0)} MiB; peak RSS ${(o[o.length - 1].maxRSS / 2 ** 20).toFixed(0)} MiB; ${runs(g, o.map((x) => x.ms))}`]);
      };
      createRow('create tar', ourTar);
      if (kind !== 'ext4') createRow('create tar, 4 KiB-aligned', alignedTar, ['--align']);
      // the tars to extract: GNU tar's own, and our aligned one where reflinks apply
      execFileSync('tar', ['-cf', gnuTar, '-C', src, '.']);
      settle(mnt);
      extractRow('extract GNU tar\'s tar', gnuTar);
      if (kind !== 'ext4') {
        ours(['create', src, alignedTar, '--align']);
        settle(mnt);
        extractRow('extract 4 KiB-aligned tar', alignedTar);
      }
    });
  }
} finally {
  images.done();
}
table.print(`tar benchmark: ${files} files, ${(total / 2 ** 30).toFixed(2)} GiB, loop images ${images.inRam ? 'in RAM' : 'on disk'}, ${cold ? 'cold cache (remounted before each run)' : 'warm cache'}, median of ${ROUNDS} alternating runs; ratio = GNU tar time / our time (above 1: ours is faster)`);
