// Benchmark: our tar writer and extractor beside GNU tar, on ext4, btrfs and xfs loop
// filesystems, in one run, on the same data (default: 1 GiB in 50 000 files). Prints times
// and the ratio GNU tar / ours (above 1: we are faster). Root only; run it in a private mount
// namespace:  unshare -m --propagation private node --import tsx hack/bench-tar.ts
//   [--gib N] [--files N] [--fs ext4,btrfs,xfs] [--rounds N] [--disk] [--cold]
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { makeBulkTree } from '../tests/fixtures/tree.ts';

const args = process.argv.slice(2);
const opt = (name: string, def: number) => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : def;
};
const total = Math.round(opt('--gib', 1) * (1 << 30));
const files = opt('--files', 50_000);
const kinds = (args.includes('--fs') ? args[args.indexOf('--fs') + 1].split(',') : ['ext4', 'btrfs', 'xfs']) as Array<'ext4' | 'btrfs' | 'xfs'>;
const here = path.dirname(new URL(import.meta.url).pathname);
const sh = (cmd: string, a: string[]) => execFileSync(cmd, a, { encoding: 'utf8' });
const ROUNDS = opt('--rounds', 3);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
/** every run, in order, GNU tar's then ours: the spread behind a median */
const runs = (g: number[], o: number[]) => `runs ${g.map((x, i) => `${x.toFixed(0)}/${o[i].toFixed(0)}`).join(' ')}`;

function timeProc(cmd: string, a: string[]): number {
  const t0 = process.hrtime.bigint();
  execFileSync(cmd, a, { stdio: ['ignore', 'ignore', 'inherit'] });
  return Number(process.hrtime.bigint() - t0) / 1e6;
}
function ours(a: string[]): { ms: number; bytes: Record<string, number>; maxRSS: number } {
  // the time is measured inside the process: Node and tsx start-up (~0.3 s) are not the engine's
  const out = execFileSync(process.execPath, ['--import', 'tsx', path.join(here, 'tar.ts'), ...a], { encoding: 'utf8' });
  return JSON.parse(out.trim().split('\n').pop()!);
}
/** flush dirty pages so one run's writeback does not land in the next one's time */
const settle = (mnt: string) => sh('sync', ['-f', mnt]);
/** Read what the next run reads, so both tools start from a warm page cache. Without it the
 *  input is partly cold, and by chance: this machine reclaims page cache left untouched for
 *  ~30 s (DAMON pageout of cold memory), and 41 000 of the 50 000 source files were found
 *  uncached before a round. --cold instead evicts it (umount and mount) before every run. */
const cold = args.includes('--cold');
const prepare = (input: string, mnt: string, loop: string) => {
  if (cold) {
    sh('umount', [mnt]);
    sh('mount', [loop, mnt]);
  } else if (fs.statSync(input).isDirectory()) sh('sh', ['-c', 'tar -cf - -C "$1" . | cat > /dev/null', 'warm', input]);
  else sh('sh', ['-c', 'cat "$1" > /dev/null', 'warm', input]);
};
const usedMiB = (mnt: string) => {
  const s = fs.statfsSync(mnt);
  return ((s.blocks - s.bfree) * s.bsize) / (1 << 20);
};

const rows: string[][] = [['fs', 'operation', 'GNU tar', 'ours', 'ratio', 'notes']];
/** keep a row for the table, and print it now: a long run that fails later keeps what it measured */
const row = (r: string[]) => {
  rows.push(r);
  console.error(r.join(' | '));
};
const base = fs.mkdtempSync(path.join(os.tmpdir(), 'layers-bench-'));
// The loop images live in RAM (a tmpfs of our own, in this mount namespace): the filesystems
// under test are still real ext4/btrfs/xfs, but the machine's disk and its writeback are out
// of the measurement (on a virtio disk they made GNU tar's own time vary 2x between runs).
// --disk keeps the images on the disk instead.
const inRam = !args.includes('--disk');
if (inRam) sh('mount', ['-t', 'tmpfs', '-o', `size=${Math.ceil((total * 6 + 2 * 2 ** 30) / 2 ** 20)}m`, 'layers-bench', base]);
try {
  for (const kind of kinds) {
    const dir = path.join(base, kind);
    const img = path.join(dir, 'img');
    const mnt = path.join(dir, 'mnt');
    fs.mkdirSync(mnt, { recursive: true });
    fs.writeFileSync(img, '');
    fs.truncateSync(img, total * 6 + 2 * 2 ** 30);
    const mkfs = { ext4: ['mkfs.ext4', '-q', '-F'], btrfs: ['mkfs.btrfs', '-q', '-f'], xfs: ['mkfs.xfs', '-q', '-f', '-m', 'reflink=1'] }[kind];
    sh(mkfs[0], [...mkfs.slice(1), img]);
    const loop = sh('losetup', ['--find', '--show', img]).trim();
    try {
      sh('mount', [loop, mnt]);
      try {
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
      } finally {
        sh('umount', [mnt]);
      }
    } finally {
      sh('losetup', ['-d', loop]);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }
} finally {
  if (inRam) sh('umount', [base]);
  fs.rmSync(base, { recursive: true, force: true });
}
console.log(`tar benchmark: ${files} files, ${(total / 2 ** 30).toFixed(2)} GiB, loop images ${inRam ? 'in RAM' : 'on disk'}, ${cold ? 'cold cache (remounted before each run)' : 'warm cache'}, median of ${ROUNDS} alternating runs; ratio = GNU tar time / our time (above 1: ours is faster)`);
const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
for (const r of rows) console.log(r.map((c, i) => c.padEnd(widths[i])).join('  '));
