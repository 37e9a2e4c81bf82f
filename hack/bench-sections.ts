// Benchmark: a container checkpoint in one archive (docs/tar-engine.md, "Sections"; issue 17).
// New way: `layers diff --prefix rootfs-diff -f A`, `layers tar --prefix checkpoint --append -f A
// DIR`; restore with `layers applydiff --section rootfs-diff` and `layers untar --section
// checkpoint`. Two-step way (podman today): `layers diff -f rootfs-diff.tar`, then GNU tar puts
// that file and DIR in the archive; restore: GNU tar extracts both (the inner tar to a file),
// then `layers applydiff -f rootfs-diff.tar`. The store's part runs in this process (as a runtime
// calls the library), GNU tar as a process; on btrfs (btrfs driver) and xfs (overlay driver); the
// disk space each way's new files take (after sync) is reported too.
// Root only; run it in a private mount namespace:
//   unshare -m --propagation private node --import tsx hack/bench-sections.ts
//     [--diff-mib N] [--ckpt-mib N] [--rounds N] [--fs btrfs,xfs] [--disk]
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { openStore } from '../lib/index.ts';
import { extractTar } from '../lib/tar/extract.ts';
import { TarAppender } from '../lib/tar/sections.ts';
import { makeBulkTree } from '../tests/fixtures/tree.ts';
import { imageDir, listOpt, median, numOpt, settle, Table, timeProc, usedMiB, withLoopFsAsync, type FsKind } from './bench-lib.ts';

const diffMiB = numOpt('--diff-mib', 100);
const ckptMiB = numOpt('--ckpt-mib', 200);
const ROUNDS = numOpt('--rounds', 3);
const kinds = listOpt('--fs', ['btrfs', 'xfs']) as FsKind[];
const DRIVER: Record<FsKind, string> = { btrfs: 'btrfs', xfs: 'overlay', ext4: 'overlay' };
const BIN = path.join(path.dirname(new URL(import.meta.url).pathname), '..', 'bin', 'layers.js');

const table = new Table(['fs (driver)', 'step', 'two-step', 'sections', 'two-step/sections', 'disk MiB two-step | sections']);
const size = (diffMiB + ckptMiB) * 8 * (1 << 20) + (1 << 30);
const images = imageDir(size);
try {
  for (const kind of kinds) {
    await withLoopFsAsync(path.join(images.base, kind), kind, size, async (mnt) => {
      const g = ['-g', path.join(mnt, 'store'), '-R', path.join(mnt, 'run'), '-s', DRIVER[kind]];
      const layers = (...a: string[]) => execFileSync(process.execPath, [BIN, ...g, ...a], { encoding: 'utf8' }).trim();
      const base = path.join(mnt, 'base');
      makeBulkTree(base, 200, 8 << 20);
      execFileSync('tar', ['-cf', path.join(mnt, 'base.tar'), '-C', base, '.']);
      layers('import-layer', '--id', 'base', '-f', path.join(mnt, 'base.tar'));
      layers('create-image', '--id', 'img', 'base');
      layers('create-container', '--id', 'c1', 'img');
      const layerOf = (c: string) => (JSON.parse(layers('container', '--json', c)) as Array<{ layer: string }>)[0].layer;
      const c1Layer = layerOf('c1');
      const root = layers('mount', 'c1');
      makeBulkTree(path.join(root, 'changes'), 500, diffMiB << 20);
      fs.rmSync(path.join(root, 'd0'), { recursive: true }); // deletions: whiteouts
      layers('unmount', 'c1');
      const ckpt = path.join(mnt, 'checkpoint');
      makeBulkTree(ckpt, 20, ckptMiB << 20);
      settle(mnt);

      const store = await openStore({ root: path.join(mnt, 'store'), runroot: path.join(mnt, 'run'), driver: DRIVER[kind] });
      const timed = async (fn: () => Promise<unknown>) => {
        const t0 = process.hrtime.bigint();
        await fn();
        return Number(process.hrtime.bigint() - t0) / 1e6;
      };
      const times = { ckpt2: [] as number[], ckptS: [] as number[], rest2: [] as number[], restS: [] as number[] };
      const disk = { ckpt2: 0, ckptS: 0, rest2: 0, restS: 0 };
      for (let i = 0; i < ROUNDS; i++) {
        const work = path.join(mnt, `w${i}`);
        fs.mkdirSync(work);
        // two-step checkpoint: the diff to a file, GNU tar puts it and the directory in the archive
        let used = usedMiB(mnt);
        const inner = path.join(work, 'rootfs-diff.tar');
        const archive2 = path.join(work, 'two-step.tar');
        let ms = await timed(async () => {
          const fd = fs.openSync(inner, 'w');
          await store.diff(c1Layer, fd).finally(() => fs.closeSync(fd));
        });
        ms += timeProc('tar', ['-cf', archive2, '-C', work, 'rootfs-diff.tar', '-C', mnt, 'checkpoint']);
        fs.rmSync(inner); // podman removes its temp file
        settle(mnt);
        times.ckpt2.push(ms);
        disk.ckpt2 = usedMiB(mnt) - used;
        // sections checkpoint: one appender, two sections
        used = usedMiB(mnt);
        const archiveS = path.join(work, 'sections.tar');
        ms = await timed(async () => {
          const out = TarAppender.open(archiveS);
          await store.diffSection('c1', out, 'rootfs-diff');
          await out.addTree(ckpt, 'checkpoint');
          await out.close();
        });
        settle(mnt);
        times.ckptS.push(ms);
        disk.ckptS = usedMiB(mnt) - used;

        const c2 = await store.createContainer({ id: `t${i}`, image: 'img' });
        const cS = await store.createContainer({ id: `s${i}`, image: 'img' });
        settle(mnt);
        // two-step restore: GNU tar extracts the archive (the inner tar to a file), then it is applied
        used = usedMiB(mnt);
        const out2 = path.join(work, 'restore-two-step');
        fs.mkdirSync(out2);
        ms = timeProc('tar', ['-xf', archive2, '-C', out2]);
        ms += await timed(() => store.applyDiff(c2.layerId, path.join(out2, 'rootfs-diff.tar')));
        fs.rmSync(path.join(out2, 'rootfs-diff.tar'));
        settle(mnt);
        times.rest2.push(ms);
        disk.rest2 = usedMiB(mnt) - used;
        // sections restore: the diff section to the layer, the checkpoint section to a directory
        used = usedMiB(mnt);
        const outS = path.join(work, 'restore-sections', 'checkpoint');
        fs.mkdirSync(outS, { recursive: true });
        ms = await timed(async () => {
          await store.applyDiff(cS.layerId, archiveS, { section: 'rootfs-diff' });
          const fd = fs.openSync(archiveS, 'r');
          await extractTar(fd, outS, { whiteouts: 'keep', section: 'checkpoint', sectionDigest: false }).finally(() => fs.closeSync(fd));
        });
        settle(mnt);
        times.restS.push(ms);
        disk.restS = usedMiB(mnt) - used;
        execFileSync('cmp', [path.join(out2, 'checkpoint/d0/f0'), path.join(outS, 'd0/f0')]);
        for (const c of [`t${i}`, `s${i}`]) await store.deleteContainer(c);
        fs.rmSync(work, { recursive: true });
        settle(mnt);
      }
      await store.shutdown(true);
      const label = `${kind} (${DRIVER[kind]})`;
      const row = (step: string, a: number[], b: number[], da: number, db: number) =>
        table.row([label, step, `${median(a).toFixed(0)} ms`, `${median(b).toFixed(0)} ms`, (median(a) / median(b)).toFixed(2), `${da.toFixed(0)} | ${db.toFixed(0)}`]);
      row(`checkpoint (${diffMiB} MiB diff + ${ckptMiB} MiB dir)`, times.ckpt2, times.ckptS, disk.ckpt2, disk.ckptS);
      row('restore', times.rest2, times.restS, disk.rest2, disk.restS);
    });
  }
} finally {
  images.done();
}
table.print(`checkpoint and restore, median of ${ROUNDS}, store calls in-process, GNU tar as processes (${images.inRam ? 'loop images in RAM' : 'loop images on disk'})`);
