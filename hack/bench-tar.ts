// Benchmark: our tar writer and extractor beside GNU tar, on ext4, btrfs and xfs loop
// filesystems, in one run, on the same data (default: 1 GiB in 50 000 files). Prints times
// and the ratio GNU tar / ours (above 1: we are faster). Root only; run it in a private mount
// namespace:  unshare -m --propagation private node --import tsx hack/bench-tar.ts [--gib N] [--files N]
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

function timeProc(cmd: string, a: string[]): number {
  const t0 = process.hrtime.bigint();
  execFileSync(cmd, a, { stdio: ['ignore', 'ignore', 'inherit'] });
  return Number(process.hrtime.bigint() - t0) / 1e6;
}
function ours(a: string[]): { ms: number; bytes: Record<string, number>; maxRSS: number } {
  const out = execFileSync(process.execPath, ['--import', 'tsx', path.join(here, 'tar.ts'), ...a], { encoding: 'utf8' });
  return JSON.parse(out.trim().split('\n').pop()!);
}
/** flush dirty pages so one run's writeback does not land in the next one's time */
const settle = (mnt: string) => sh('sync', ['-f', mnt]);
const usedMiB = (mnt: string) => {
  const s = fs.statfsSync(mnt);
  return ((s.blocks - s.bfree) * s.bsize) / (1 << 20);
};

const rows: string[][] = [['fs', 'operation', 'GNU tar', 'ours', 'ratio', 'notes']];
const base = fs.mkdtempSync(path.join(os.tmpdir(), 'layers-bench-'));
try {
  for (const kind of kinds) {
    const dir = path.join(base, kind);
    const img = path.join(dir, 'img');
    const mnt = path.join(dir, 'mnt');
    fs.mkdirSync(mnt, { recursive: true });
    fs.writeFileSync(img, '');
    fs.truncateSync(img, total * 5 + (1 << 30));
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
        const gnuTar = path.join(mnt, 'gnu.tar');
        const ourTar = path.join(mnt, 'ours.tar');
        const alignedTar = path.join(mnt, 'aligned.tar');
        // writing
        const g = timeProc('tar', ['-cf', gnuTar, '-C', src, '.']);
        settle(mnt);
        const o = ours(['create', src, ourTar]);
        settle(mnt);
        rows.push([kind, 'create tar', `${g.toFixed(0)} ms`, `${o.ms.toFixed(0)} ms`, (g / o.ms).toFixed(2), `${JSON.stringify(o.bytes)} peak RSS ${(o.maxRSS / 2 ** 20).toFixed(0)} MiB`]);
        if (kind !== 'ext4') {
          const before = usedMiB(mnt);
          const oa = ours(['create', src, alignedTar, '--align']);
          settle(mnt);
          rows.push([kind, 'create tar, 4 KiB-aligned', `${g.toFixed(0)} ms`, `${oa.ms.toFixed(0)} ms`, (g / oa.ms).toFixed(2), `new space ${(usedMiB(mnt) - before).toFixed(0)} MiB of ${(fs.statSync(alignedTar).size / 2 ** 20).toFixed(0)}`]);
        }
        // extracting (each from the tar it wrote, into a fresh directory)
        const gx = path.join(mnt, 'gx');
        const ox = path.join(mnt, 'ox');
        fs.mkdirSync(gx);
        fs.mkdirSync(ox);
        const ge = timeProc('tar', ['-xf', gnuTar, '-C', gx]);
        settle(mnt);
        const before = usedMiB(mnt);
        const oe = ours(['extract', gnuTar, ox]);
        settle(mnt);
        rows.push([kind, 'extract tar', `${ge.toFixed(0)} ms`, `${oe.ms.toFixed(0)} ms`, (ge / oe.ms).toFixed(2), `new space ${(usedMiB(mnt) - before).toFixed(0)} MiB; peak RSS ${(oe.maxRSS / 2 ** 20).toFixed(0)} MiB`]);
        if (kind !== 'ext4') {
          fs.rmSync(ox, { recursive: true });
          fs.mkdirSync(ox);
          settle(mnt);
          const before2 = usedMiB(mnt);
          const oa = ours(['extract', alignedTar, ox]);
          settle(mnt);
          rows.push([kind, 'extract 4 KiB-aligned tar', `${ge.toFixed(0)} ms`, `${oa.ms.toFixed(0)} ms`, (ge / oa.ms).toFixed(2), `new space ${(usedMiB(mnt) - before2).toFixed(0)} MiB`]);
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
  fs.rmSync(base, { recursive: true, force: true });
}
console.log(`tar benchmark: ${files} files, ${(total / 2 ** 30).toFixed(2)} GiB, warm cache; ratio = GNU tar time / our time`);
const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
for (const r of rows) console.log(r.map((c, i) => c.padEnd(widths[i])).join('  '));
