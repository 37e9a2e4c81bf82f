// What the benchmarks in hack/ share: flags, medians, timing a process, settling a filesystem
// between runs, loop filesystems on an image in a tmpfs of their own, and the results table.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export type FsKind = 'ext4' | 'btrfs' | 'xfs';

const argv = process.argv.slice(2);
export const flag = (name: string) => argv.includes(name);
export const numOpt = (name: string, def: number) => (flag(name) ? Number(argv[argv.indexOf(name) + 1]) : def);
export const listOpt = (name: string, def: string[]) => (flag(name) ? argv[argv.indexOf(name) + 1].split(',') : def);

export const sh = (cmd: string, a: string[]) => execFileSync(cmd, a, { encoding: 'utf8' });
export const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** A whole process's wall time in ms (its output thrown away, its errors shown). */
export function timeProc(cmd: string, a: string[]): number {
  return timeProcCpu(cmd, a).wall;
}

/** A whole process's wall time and CPU time (user + sys, its own and its children's) in ms. */
export function timeProcCpu(cmd: string, a: string[]): { wall: number; cpu: number } {
  const c0 = childrenCpuMs();
  const t0 = process.hrtime.bigint();
  execFileSync(cmd, a, { stdio: ['ignore', 'ignore', 'inherit'] });
  return { wall: Number(process.hrtime.bigint() - t0) / 1e6, cpu: childrenCpuMs() - c0 };
}

/** USER_HZ: the unit of /proc's times (sysconf(_SC_CLK_TCK), 100 on Linux) */
const CLK_TCK = 100;

/**
 * CPU time (user + sys, ms) of the children this process has waited for, theirs included
 * (/proc/self/stat cutime + cstime; 10 ms resolution): the difference around a run is its CPU
 * time, which a loaded machine stretches much less than its wall time.
 */
export function childrenCpuMs(): number {
  const stat = fs.readFileSync('/proc/self/stat', 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // f[0] is field 3 (state)
  return ((Number(f[13]) + Number(f[14])) * 1000) / CLK_TCK;
}

/** This process's own CPU time (user + sys, ms, all its threads). */
export function selfCpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

/** The load average now (1, 5, 15 minutes), for the results' heading. */
export const loadAverage = () => os.loadavg().map((l) => l.toFixed(1)).join(' ');

/** flush dirty pages so one run's writeback does not land in the next one's time */
export const settle = (mnt: string) => sh('sync', ['-f', mnt]);

export const usedMiB = (mnt: string) => {
  const s = fs.statfsSync(mnt);
  return ((s.blocks - s.bfree) * s.bsize) / (1 << 20);
};

/**
 * A temp dir for loop images, in RAM unless --disk (a tmpfs of our own, in this mount
 * namespace): the filesystems under test are still real ext4/btrfs/xfs, but the machine's disk
 * and its writeback are out of the measurement (on a virtio disk they made GNU tar's own time
 * vary 2x between runs). Returns the dir and its cleanup.
 */
export function imageDir(bytes: number): { base: string; inRam: boolean; done: () => void } {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'layers-bench-'));
  const inRam = !flag('--disk');
  if (inRam) sh('mount', ['-t', 'tmpfs', '-o', `size=${Math.ceil(bytes / 2 ** 20)}m`, 'layers-bench', base]);
  return {
    base,
    inRam,
    done: () => {
      if (inRam) sh('umount', [base]);
      fs.rmSync(base, { recursive: true, force: true });
    },
  };
}

/** A fresh `kind` filesystem of `bytes` on a loop device, mounted at <dir>/mnt; done() removes all of it. */
function loopFs(dir: string, kind: FsKind, bytes: number): { mnt: string; loop: string; done: () => void } {
  const img = path.join(dir, 'img');
  const mnt = path.join(dir, 'mnt');
  fs.mkdirSync(mnt, { recursive: true });
  fs.writeFileSync(img, '');
  fs.truncateSync(img, bytes);
  const mkfs = { ext4: ['mkfs.ext4', '-q', '-F'], btrfs: ['mkfs.btrfs', '-q', '-f'], xfs: ['mkfs.xfs', '-q', '-f', '-m', 'reflink=1'] }[kind];
  sh(mkfs[0], [...mkfs.slice(1), img]);
  const loop = sh('losetup', ['--find', '--show', img]).trim();
  const detach = () => {
    sh('losetup', ['-d', loop]);
    fs.rmSync(dir, { recursive: true, force: true });
  };
  try {
    sh('mount', [loop, mnt]);
  } catch (err) {
    detach();
    throw err;
  }
  return {
    mnt,
    loop,
    done: () => {
      try {
        sh('umount', [mnt]);
      } finally {
        detach();
      }
    },
  };
}

/** Run fn on a fresh `kind` filesystem of `bytes` on a loop device, mounted at <dir>/mnt; all of it goes after. */
export function withLoopFs<T>(dir: string, kind: FsKind, bytes: number, fn: (mnt: string, loop: string) => T): T {
  const f = loopFs(dir, kind, bytes);
  try {
    return fn(f.mnt, f.loop);
  } finally {
    f.done();
  }
}

/** withLoopFs for an async fn: the filesystem goes when its promise settles. */
export async function withLoopFsAsync<T>(dir: string, kind: FsKind, bytes: number, fn: (mnt: string, loop: string) => Promise<T>): Promise<T> {
  const f = loopFs(dir, kind, bytes);
  try {
    return await fn(f.mnt, f.loop);
  } finally {
    f.done();
  }
}

/** The results: each row printed as it is made (a long run that fails later keeps what it measured), the table at the end. */
export class Table {
  private readonly rows: string[][];
  constructor(header: string[]) {
    this.rows = [header];
  }
  row(r: string[]): void {
    this.rows.push(r);
    console.error(r.join(' | '));
  }
  print(title: string): void {
    console.log(title);
    const widths = this.rows[0].map((_, i) => Math.max(...this.rows.map((r) => (r[i] ?? '').length)));
    for (const r of this.rows) console.log(r.map((c, i) => (c ?? '').padEnd(widths[i])).join('  '));
  }
}
