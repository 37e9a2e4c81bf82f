// Benchmark: import-layer of a zstd layer (docs/performance.md, "zstd import"): ours (libzstd in
// the addon, native/zstd.cc) beside `zstd -dc F | tar -x -C D` on the same data (the floor issue
// 12 sets: within 1.3x), beside the data flow of the old command path (`zstd -dc F | layers
// import-layer`: the zstd command's output spooled through Node), ours of the same layer
// uncompressed, and the peer's import of the zstd file. The layer's bodies are half random, half
// text, so zstd works as on real layers (~2x). Whole-process wall times, medians. Root only:
//   unshare -m --propagation private node --import tsx hack/bench-zstd.ts
//     [--gib N] [--files N] [--drivers overlay,btrfs,vfs] [--rounds N] [--disk]
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { childrenCpuMs, imageDir, listOpt, loadAverage, median, numOpt, settle, Table, withLoopFs, type FsKind } from './bench-lib.ts';

const total = Math.round(numOpt('--gib', 1) * (1 << 30));
const files = numOpt('--files', 20_000);
const drivers = listOpt('--drivers', ['overlay']) as Array<'overlay' | 'btrfs' | 'vfs'>;
const ROUNDS = numOpt('--rounds', 3);
const FS: Record<(typeof drivers)[number], FsKind> = { overlay: 'ext4', btrfs: 'btrfs', vfs: 'xfs' };
const BIN = path.join(path.dirname(new URL(import.meta.url).pathname), '..', 'bin', 'layers.js');

/** files of ~total/files bytes: 4 KiB random, 4 KiB of text, alternating (zstd -3 makes ~half) */
function makeTree(dir: string): void {
  const random = randomBytes(8 << 20);
  const text = Buffer.from('the quick brown fox jumps over the lazy dog 0123456789\n'.repeat(80)).subarray(0, 4096);
  const per = Math.floor(total / files);
  let r = 0;
  for (let i = 0; i < files; i++) {
    const d = path.join(dir, `d${Math.floor(i / 500)}`);
    if (i % 500 === 0) fs.mkdirSync(d, { recursive: true });
    const parts: Buffer[] = [];
    for (let left = per; left > 0; left -= 8192) {
      parts.push(random.subarray(r, r + 4096), text);
      r = (r + 4096) % (random.length - 4096);
    }
    fs.writeFileSync(path.join(d, `f${i}`), Buffer.concat(parts).subarray(0, per));
  }
}

const table = new Table(['driver (fs)', 'operation', 'median', 'vs zstd|tar', 'CPU median', 'CPU vs zstd|tar', 'runs (ms)']);
const loads: string[] = [loadAverage()];
const size = total * 6 + 2 * 2 ** 30;
const images = imageDir(size);
try {
  for (const driver of drivers) {
    withLoopFs(path.join(images.base, driver), FS[driver], size, (mnt) => {
      const src = path.join(mnt, 'src');
      fs.mkdirSync(src);
      makeTree(src);
      const tar = path.join(mnt, 'layer.tar');
      execFileSync('tar', ['-cf', tar, '-C', src, '.']);
      fs.rmSync(src, { recursive: true });
      const zst = `${tar}.zst`;
      execFileSync('zstd', ['-q', '-3', '-T0', tar, '-o', zst]);
      settle(mnt);
      const g = (who: string) => ['-g', path.join(mnt, who), '-R', path.join(mnt, `${who}-run`), '--storage-driver', driver];
      const sh = (script: string, ...args: string[]) => execFileSync('sh', ['-c', script, 'bench', ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
      const warm = (p: string) => sh('cat "$1" > /dev/null', p);
      /** time one command line (wall and CPU, user+sys of all its processes); `undo` (untimed) removes what it made */
      const timed = (script: string, args: string[], undo: (out: string) => void) => {
        warm(zst);
        warm(tar);
        const c0 = childrenCpuMs();
        const t0 = process.hrtime.bigint();
        const out = sh(script, ...args);
        const ms = Number(process.hrtime.bigint() - t0) / 1e6;
        const cpu = childrenCpuMs() - c0;
        undo(out);
        settle(mnt);
        return { ms, cpu };
      };
      const x = path.join(mnt, 'x');
      const id = (out: string) => out.trim().split('\n')[0];
      const ours = (out: string) => execFileSync(process.execPath, [BIN, ...g('ours'), 'delete-layer', id(out)]);
      const rows: Array<[string, string, string[], (out: string) => void]> = [
        ['zstd -dc F | tar -x -C D', 'mkdir "$2" && zstd -dc -q "$1" | tar -x -C "$2"', [zst, x], () => fs.rmSync(x, { recursive: true })],
        ['ours: import-layer -f F.zst (libzstd)', `"${process.execPath}" "${BIN}" ${g('ours').join(' ')} import-layer -f "$1"`, [zst], ours],
        ['command path: zstd -dc F | layers import-layer', `zstd -dc -q "$1" | "${process.execPath}" "${BIN}" ${g('ours').join(' ')} import-layer`, [zst], ours],
        ['ours: import-layer -f F.tar (no compression)', `"${process.execPath}" "${BIN}" ${g('ours').join(' ')} import-layer -f "$1"`, [tar], ours],
        ['peer: import-layer -f F.zst', `containers-storage ${g('peer').join(' ')} import-layer -f "$1"`, [zst], (out) => execFileSync('containers-storage', [...g('peer'), 'delete-layer', id(out)])],
      ];
      const times = rows.map(() => [] as number[]);
      const cpus = rows.map(() => [] as number[]);
      for (let r = 0; r < ROUNDS; r++) {
        rows.forEach(([, script, args, undo], i) => {
          const { ms, cpu } = timed(script, args, undo);
          times[i].push(ms);
          cpus[i].push(cpu);
        });
        loads.push(loadAverage());
      }
      const floor = median(times[0]);
      const cpuFloor = median(cpus[0]);
      rows.forEach(([label], i) => {
        const m = median(times[i]);
        const c = median(cpus[i]);
        table.row([`${driver} (${FS[driver]})`, label, `${m.toFixed(0)} ms`, (m / floor).toFixed(2), `${c.toFixed(0)} ms`, (c / cpuFloor).toFixed(2), times[i].map((t) => t.toFixed(0)).join(' ')]);
      });
      const ratio = fs.statSync(tar).size / fs.statSync(zst).size;
      // the peer's overlay driver keeps its home mounted private until shutdown
      for (const who of ['peer', 'ours']) execFileSync(who === 'peer' ? 'containers-storage' : process.execPath, [...(who === 'peer' ? [] : [BIN]), ...g(who), 'shutdown']);
      table.row([`${driver} (${FS[driver]})`, `tar ${(fs.statSync(tar).size / 2 ** 20).toFixed(0)} MiB, zstd ${(fs.statSync(zst).size / 2 ** 20).toFixed(0)} MiB (${ratio.toFixed(2)}x)`, '', '', '', '', '']);
    });
  }
} finally {
  images.done();
}
table.print(`zstd import: ${files} files, ${(total / 2 ** 30).toFixed(2)} GiB; loop images ${images.inRam ? 'in RAM' : 'on disk'}; whole-process times, median of ${ROUNDS} runs; CPU = user+sys of all the command's processes; load average (1/5/15 min) at start and after each round: ${loads.join(', ')}`);
