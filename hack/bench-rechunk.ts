// Benchmark: rechunk a big image (docs/rechunk.md; issue 18). The image is one layer imported
// from a tar of host directories (default: /usr/share, /usr/bin, /usr/lib/x86_64-linux-gnu and
// dpkg's lists, ~1.6 GB / ~60 000 files); it is rechunked into --layers layers (default 32), and
// the same tree is copied with `cp -a --reflink=always` from the layer's directory, the floor for
// "clone every file". Reported: both wall times, their ratio, and the new disk space
// each takes (after sync) against the image's size. The btrfs driver on a btrfs loop fs, overlay
// on xfs, and vfs (which copies each parent: 32 layers hold 32 copies of the tree's metadata)
// on btrfs beside them. The store's part runs in this process, as a runtime calls the library.
// Root only; run it in a private mount namespace:
//   unshare -m --propagation private node --import tsx hack/bench-rechunk.ts
//     [--src DIR,DIR] [--layers N] [--rounds N] [--drivers btrfs,overlay,vfs] [--disk]
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { openRecordStore } from '../lib/store/store.ts';
import { imageDir, listOpt, median, numOpt, settle, Table, timeProc, usedMiB, withLoopFsAsync, type FsKind } from './bench-lib.ts';

const src = listOpt('--src', ['/usr/share', '/usr/bin', '/usr/lib/x86_64-linux-gnu', '/var/lib/dpkg/info']);
const LAYERS = numOpt('--layers', 32);
const ROUNDS = numOpt('--rounds', 1);
const drivers = listOpt('--drivers', ['btrfs', 'overlay', 'vfs']);
const FS: Record<string, FsKind> = { btrfs: 'btrfs', overlay: 'xfs', vfs: 'btrfs' };

// the tree's size, to size the filesystems
const du = execFileSync('du', ['-sbc', ...src], { encoding: 'utf8' }).trim().split('\n').pop()!;
const treeBytes = Number(du.split('\t')[0]);
const files = Number(execFileSync('bash', ['-c', `find ${src.map((s) => `'${s}'`).join(' ')} | wc -l`], { encoding: 'utf8' }).trim());
// vfs copies every parent: each of its layers holds the tree's metadata again (on btrfs, small
// files are inline in it), so it gets room for that too (use --disk: more than RAM may hold)
const perLayer = drivers.includes('vfs') ? LAYERS * 2 ** 28 : 0;
const fsBytes = Math.ceil((treeBytes * 3.5 + 2 ** 30 + perLayer) / 2 ** 20) * 2 ** 20;
console.error(`tree: ${(treeBytes / 2 ** 30).toFixed(2)} GiB, ${files} entries, from ${src.join(' ')}`);

const table = new Table(['driver (fs)', 'cp -a --reflink s', 'rechunk s', 'rechunk/cp', 'layers', 'image MiB', 'new MiB cp | rechunk', 'new % cp | rechunk']);
const images = imageDir(fsBytes + 2 ** 26);
try {
  for (const driver of drivers) {
    const kind = FS[driver];
    await withLoopFsAsync(path.join(images.base, driver), kind, fsBytes, async (mnt) => {
      const root = path.join(mnt, 'store');
      const runroot = path.join(mnt, 'run');
      const tar = path.join(mnt, 'image.tar');
      // the tree as GNU tar writes it, names relative to / (usr/share/..., var/lib/dpkg/info/...)
      execFileSync('tar', ['--xattrs', '--xattrs-include=*', '--numeric-owner', '-C', '/', '-cf', tar, ...src.map((s) => s.replace(/^\//, ''))]);
      const store = await openRecordStore({ root, runroot, driver });
      try {
        const top = await store.createLayer({}, tar);
        fs.rmSync(tar);
        await store.createImage({ layer: top.id, names: ['img'] });
        settle(mnt);
        const imageMiB = (top['diff-size'] ?? 0) / (1 << 20);
        const cpMs: number[] = [];
        const rcMs: number[] = [];
        let cpNew = 0;
        let rcNew = 0;
        let layers = 0;
        for (let i = 0; i < ROUNDS; i++) {
          // the floor: clone every file of the tree, from the layer's own directory (overlay's
          // merged view cannot be cloned from: EXDEV)
          const from = store.driver.layerDir(top.id);
          const to = path.join(mnt, `cp${i}`);
          fs.mkdirSync(to);
          let used = usedMiB(mnt);
          cpMs.push(timeProc('cp', ['-a', '--reflink=always', `${from}/.`, to]));
          settle(mnt);
          cpNew = usedMiB(mnt) - used;
          fs.rmSync(to, { recursive: true });
          settle(mnt);
          used = usedMiB(mnt);
          const t0 = process.hrtime.bigint();
          const r = await store.rechunk('img', { maxLayers: LAYERS, names: [`r${i}`] });
          rcMs.push(Number(process.hrtime.bigint() - t0) / 1e6);
          settle(mnt);
          rcNew = usedMiB(mnt) - used;
          layers = r.layers.length;
          await store.removeImage(`r${i}`);
          settle(mnt);
        }
        const cp = median(cpMs) / 1000;
        const rc = median(rcMs) / 1000;
        table.row([
          `${driver} (${kind})`,
          cp.toFixed(2),
          rc.toFixed(2),
          (rc / cp).toFixed(2),
          String(layers),
          imageMiB.toFixed(0),
          `${cpNew.toFixed(0)} | ${rcNew.toFixed(0)}`,
          `${((100 * cpNew) / imageMiB).toFixed(1)} | ${((100 * rcNew) / imageMiB).toFixed(1)}`,
        ]);
      } finally {
        await store.shutdown(true).catch(() => undefined);
        await store.close();
      }
    });
  }
} finally {
  images.done();
}
table.print(`rechunk into ${LAYERS} layers, ${(treeBytes / 2 ** 30).toFixed(2)} GiB / ${files} entries (median of ${ROUNDS}; loop images ${images.inRam ? 'in RAM' : 'on disk'})`);
