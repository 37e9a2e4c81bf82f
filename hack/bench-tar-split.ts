// Benchmark: what the tar-split record costs and gives (docs/tar-engine.md, "tar-split records").
// 1. The record's cost at import. It is made in the read that hashes the tar (native hashTar,
//    native/tar-split.cc), so the driver's ApplyDiff alone already makes it; its parts:
//    - native: hashTar (sha256 + the record) against hashRange (sha256 alone) of the same file,
//      in process;
//    - the rest: ApplyDiff alone against applyRecording (ApplyDiff and the record's file written,
//      as every import does).
//    The total, against ApplyDiff less the native part, is the record's cost.
// 2. diff of the applied layer: ours (reassembled from the record) and the peer's (the same
//    record, its own reassembly), whole processes.
// Root only; run it in a private mount namespace:
//   unshare -m --propagation private node --import tsx hack/bench-tar-split.ts
//     [--gib N] [--files N] [--drivers overlay,btrfs,vfs] [--rounds N] [--disk] [--apply-only]
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { openDriver } from '../drivers/index.ts';
import { applyRecording } from '../lib/store/tar-split-file.ts';
import { native } from '../lib/native.ts';
import { makeBulkTree } from '../tests/fixtures/tree.ts';
import { imageDir, listOpt, loadAverage, median, numOpt, selfCpuMs, settle, Table, timeProcCpu, withLoopFsAsync, type FsKind } from './bench-lib.ts';

const total = Math.round(numOpt('--gib', 1) * (1 << 30));
const files = numOpt('--files', 20_000);
const drivers = listOpt('--drivers', ['overlay', 'btrfs', 'vfs']) as Array<'overlay' | 'btrfs' | 'vfs'>;
const ROUNDS = numOpt('--rounds', 5);
/** only the import rows: diff from the record is not measured */
const applyOnly = process.argv.includes('--apply-only');
const FS: Record<(typeof drivers)[number], FsKind> = { overlay: 'ext4', btrfs: 'btrfs', vfs: 'xfs' };
const BIN = path.join(path.dirname(new URL(import.meta.url).pathname), '..', 'bin', 'layers.js');

const table = new Table(['driver (fs)', 'operation', 'without', 'with', 'ratio', 'CPU without', 'CPU with', 'CPU ratio', 'notes']);
const loads: string[] = [loadAverage()];
const size = total * 6 + 2 * 2 ** 30;
const images = imageDir(size);
try {
  for (const driver of drivers) {
    await withLoopFsAsync(path.join(images.base, driver), FS[driver], size, async (mnt) => {
      const src = path.join(mnt, 'src');
      fs.mkdirSync(src);
      makeBulkTree(src, files, total);
      const tar = path.join(mnt, 'layer.tar');
      execFileSync('tar', ['-cf', tar, '-C', src, '.']);
      fs.rmSync(src, { recursive: true });
      settle(mnt);
      const d = openDriver(driver, path.join(mnt, 'bench'), path.join(mnt, 'bench-run'), []);
      const record = path.join(mnt, 'record.tar-split.gz');
      const apply = async (withRecord: boolean, i: number) => {
        const id = `${withRecord ? 'r' : 'n'}${i}`;
        await d.create(id, undefined);
        const fd = fs.openSync(tar, 'r');
        const c0 = selfCpuMs();
        const t0 = process.hrtime.bigint();
        if (withRecord) await applyRecording(record, fd, () => d.applyDiff(id, undefined, fd));
        else await d.applyDiff(id, undefined, fd);
        const ms = Number(process.hrtime.bigint() - t0) / 1e6;
        const cpu = selfCpuMs() - c0;
        fs.closeSync(fd);
        await d.remove(id);
        settle(mnt);
        return { ms, cpu };
      };
      const times = { without: [] as number[], with: [] as number[], cpuWithout: [] as number[], cpuWith: [] as number[] };
      await apply(false, -1); // warm the tar's pages
      for (let i = 0; i < ROUNDS; i++) {
        const n = await apply(false, i);
        const r = await apply(true, i);
        times.without.push(n.ms);
        times.with.push(r.ms);
        times.cpuWithout.push(n.cpu);
        times.cpuWith.push(r.cpu);
      }
      // the native part: the same read with and without the record
      const hashCpu = { range: [] as number[], tar: [] as number[] };
      for (let i = 0; i < ROUNDS; i++) {
        const fd = fs.openSync(tar, 'r');
        try {
          let c0 = selfCpuMs();
          await native().hashRange(fd, 0, -1, native().sha256());
          hashCpu.range.push(selfCpuMs() - c0);
          c0 = selfCpuMs();
          await native().hashTar(fd, native().sha256());
          hashCpu.tar.push(selfCpuMs() - c0);
        } finally {
          fs.closeSync(fd);
        }
      }
      const hr = median(hashCpu.range);
      const ht = median(hashCpu.tar);
      table.row([`${driver} (${FS[driver]})`, 'hashRange / hashTar (sha256 / + record)', '', '', '', `${hr.toFixed(0)} ms`, `${ht.toFixed(0)} ms`, (ht / hr).toFixed(3), `runs ${hashCpu.range.map((t, i) => `${t.toFixed(0)}/${hashCpu.tar[i].toFixed(0)}`).join(' ')}`]);
      const a = median(times.without);
      const b = median(times.with);
      const ca = median(times.cpuWithout);
      const cb = median(times.cpuWith);
      table.row([`${driver} (${FS[driver]})`, 'ApplyDiff (driver alone)', `${a.toFixed(0)} ms`, `${b.toFixed(0)} ms`, (b / a).toFixed(3), `${ca.toFixed(0)} ms`, `${cb.toFixed(0)} ms`, (cb / ca).toFixed(3), `record ${(fs.statSync(record).size / 1024).toFixed(0)} KiB; runs ${times.without.map((t, i) => `${t.toFixed(0)}/${times.with[i].toFixed(0)}`).join(' ')}`]);
      const recordCpu = cb - ca + (ht - hr);
      table.row([`${driver} (${FS[driver]})`, 'the record, total CPU', '', '', '', `${(ca - (ht - hr)).toFixed(0)} ms`, `${(ca - (ht - hr) + recordCpu).toFixed(0)} ms`, ((ca - (ht - hr) + recordCpu) / (ca - (ht - hr))).toFixed(3), 'ApplyDiff without any record work / with the record written']);
      loads.push(loadAverage());
      if (applyOnly) {
        await d.cleanup();
        return;
      }

      // diff of the same layer, applied by the peer (its record), ours vs its own
      const g = ['-g', path.join(mnt, 'store'), '-R', path.join(mnt, 'store-run'), '--storage-driver', driver];
      const id = execFileSync('containers-storage', [...g, 'import-layer', '-f', tar], { encoding: 'utf8' }).trim().split('\n').pop()!;
      const out = path.join(mnt, 'out.tar');
      // the same shell redirection for both: to a file on the layer's filesystem, to /dev/null, to a pipe
      const sinks: Array<[string, string]> = [
        ['a file', `> ${out}`],
        ['/dev/null', '> /dev/null'],
        ['a pipe', '| cat > /dev/null'],
      ];
      for (const [label, sink] of sinks) {
        const diffTimes = { peer: [] as number[], ours: [] as number[], cpuPeer: [] as number[], cpuOurs: [] as number[] };
        for (let i = 0; i < ROUNDS; i++) {
          const p = timeProcCpu('sh', ['-c', `containers-storage "$@" diff ${id} ${sink}`, 'sh', ...g]);
          fs.rmSync(out, { force: true });
          settle(mnt);
          const o = timeProcCpu('sh', ['-c', `"$0" "${BIN}" "$@" diff ${id} ${sink}`, process.execPath, ...g]);
          fs.rmSync(out, { force: true });
          settle(mnt);
          diffTimes.peer.push(p.wall);
          diffTimes.ours.push(o.wall);
          diffTimes.cpuPeer.push(p.cpu);
          diffTimes.cpuOurs.push(o.cpu);
        }
        const p = median(diffTimes.peer);
        const o = median(diffTimes.ours);
        const cp = median(diffTimes.cpuPeer);
        const co = median(diffTimes.cpuOurs);
        const runs = diffTimes.peer.map((t, i) => `${t.toFixed(0)}/${diffTimes.ours[i].toFixed(0)}`).join(' ');
        table.row([`${driver} (${FS[driver]})`, `diff to ${label} (peer | ours)`, `${p.toFixed(0)} ms`, `${o.toFixed(0)} ms`, (p / o).toFixed(2), `${cp.toFixed(0)} ms`, `${co.toFixed(0)} ms`, (cp / co).toFixed(2), `peer/ours, whole processes; runs ${runs}`]);
        loads.push(loadAverage());
      }
      execFileSync('containers-storage', [...g, 'shutdown']);
      await d.cleanup();
    });
  }
} finally {
  images.done();
}
table.print(`tar-split: the record at import, and diff from it; ${files} files, ${(total / 2 ** 30).toFixed(2)} GiB, median of ${ROUNDS}; CPU = user+sys; load average (1/5/15 min) at start and after each row: ${loads.join(', ')}`);
