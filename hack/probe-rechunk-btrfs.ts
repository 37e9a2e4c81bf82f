// Probe (issue 18): where the btrfs driver's rechunk puts its new space: data vs metadata
// (`btrfs filesystem df`), after cp -a --reflink and after rechunk, on one btrfs loop fs.
// --meta-single: metadata converted to the single profile first (mkfs.btrfs makes it DUP: two
// copies, both counted by statfs). Also the new MiB by statfs, as hack/bench-rechunk.ts counts it.
//   unshare -m --propagation private node --import tsx hack/probe-rechunk-btrfs.ts [--src DIR,DIR] [--layers N] [--meta-single] [--du]
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { openRecordStore } from '../lib/store/store.ts';
import { imageDir, listOpt, numOpt, settle, usedMiB, withLoopFsAsync } from './bench-lib.ts';

const src = listOpt('--src', ['/usr/share', '/var/lib/dpkg/info']);
const LAYERS = numOpt('--layers', 32);
const fsBytes = 6 * 2 ** 30;
const df = (mnt: string) => {
  const out = execFileSync('btrfs', ['filesystem', 'df', '-b', mnt], { encoding: 'utf8' });
  const get = (k: string) => Number(new RegExp(`^${k}, [^:]+: total=\\d+, used=(\\d+)`, 'm').exec(out)![1]) / 2 ** 20;
  return { data: get('Data'), meta: get('Metadata'), prof: /^Metadata, (\w+)/m.exec(out)![1] };
};
type Use = ReturnType<typeof df> & { statfs: number };
const use = (mnt: string): Use => ({ ...df(mnt), statfs: usedMiB(mnt) });
const delta = (a: Use, b: Use) => `data +${(b.data - a.data).toFixed(1)} MiB, metadata +${(b.meta - a.meta).toFixed(1)} MiB (${a.prof}); statfs +${(b.statfs - a.statfs).toFixed(1)} MiB`;
const images = imageDir(fsBytes + 2 ** 26);
try {
  await withLoopFsAsync(path.join(images.base, 'b'), 'btrfs', fsBytes, async (mnt) => {
    if (process.argv.includes('--meta-single')) execFileSync('btrfs', ['balance', 'start', '-f', '-mconvert=single', '-sconvert=single', mnt], { stdio: 'ignore' });
    const tar = path.join(mnt, 'image.tar');
    execFileSync('tar', ['--xattrs', '--xattrs-include=*', '--numeric-owner', '-C', '/', '-cf', tar, ...src.map((s) => s.replace(/^\//, ''))]);
    const store = await openRecordStore({ root: path.join(mnt, 'store'), runroot: path.join(mnt, 'run'), driver: 'btrfs' });
    try {
      const top = await store.createLayer({}, tar);
      fs.rmSync(tar);
      await store.createImage({ layer: top.id, names: ['img'] });
      settle(mnt);
      console.log(`image: ${((top['diff-size'] ?? 0) / 2 ** 20).toFixed(0)} MiB`, df(mnt));
      const from = store.driver.layerDir(top.id);
      let a = use(mnt);
      const to = path.join(mnt, 'cp');
      fs.mkdirSync(to);
      execFileSync('cp', ['-a', '--reflink=always', `${from}/.`, to]);
      settle(mnt);
      console.log('cp -a --reflink:', delta(a, use(mnt)));
      fs.rmSync(to, { recursive: true });
      settle(mnt);
      a = use(mnt);
      const r = await store.rechunk('img', { maxLayers: LAYERS, names: ['r'] });
      settle(mnt);
      console.log(`rechunk ${r.layers.length} layers:`, delta(a, use(mnt)));
      console.log(execFileSync('du', ['-sb', ...fs.readdirSync(path.join(mnt, 'store')).map((d) => path.join(mnt, 'store', d))], { encoding: 'utf8' }));
      console.log(execFileSync('du', ['-sb', '--apparent-size', path.join(mnt, 'store', 'btrfs-layers')], { encoding: 'utf8' }));
      if (process.argv.includes('--du')) console.log(execFileSync('btrfs', ['filesystem', 'du', '-s', ...r.layers.map((l) => store.driver.layerDir(l.id))], { encoding: 'utf8' }));
    } finally {
      await store.shutdown(true).catch(() => undefined);
      await store.close();
    }
  });
} finally {
  images.done();
}
