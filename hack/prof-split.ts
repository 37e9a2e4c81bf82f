// Profile: extract with and without the tar-split record, and reassemble from it (in process).
//   unshare -m --propagation private node --import tsx hack/prof-split.ts [--gib N] [--files N] [--fs ext4]
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { extractTar } from '../lib/tar/extract.ts';
import { applyRecording } from '../lib/store/tar-split-file.ts';
import { assembleTar } from '../lib/tar/tar-split.ts';
import { makeBulkTree } from '../tests/fixtures/tree.ts';
import { imageDir, numOpt, listOpt, settle, withLoopFsAsync, type FsKind } from './bench-lib.ts';

const total = Math.round(numOpt('--gib', 0.5) * (1 << 30));
const files = numOpt('--files', 50_000);
const kind = listOpt('--fs', ['ext4'])[0] as FsKind;
const size = total * 4 + 2 ** 30;
const images = imageDir(size);
const ms = (t0: bigint) => (Number(process.hrtime.bigint() - t0) / 1e6).toFixed(0);
try {
  await withLoopFsAsync(path.join(images.base, 'p'), kind, size, async (mnt) => {
    const src = path.join(mnt, 'src');
    fs.mkdirSync(src);
    makeBulkTree(src, files, total);
    const tar = path.join(mnt, 'layer.tar');
    execFileSync('tar', ['-cf', tar, '-C', src, '.']);
    fs.rmSync(src, { recursive: true });
    const record = path.join(mnt, 'r.tar-split.gz');
    for (let round = 0; round < 3; round++) {
      for (const withRecord of [false, true]) {
        const dir = path.join(mnt, `x${withRecord ? 'r' : 'n'}`);
        fs.mkdirSync(dir);
        settle(mnt);
        const fd = fs.openSync(tar, 'r');
        const t0 = process.hrtime.bigint();
        if (withRecord) await applyRecording(record, fd, () => extractTar(fd, dir, { whiteouts: 'keep' }));
        else await extractTar(fd, dir, { whiteouts: 'keep' });
        console.log(`extract ${withRecord ? 'with' : 'without'} record: ${ms(t0)} ms`);
        fs.closeSync(fd);
        if (!withRecord || round < 2) fs.rmSync(dir, { recursive: true });
      }
    }
    const dir = path.join(mnt, 'xr');
    settle(mnt);
    for (let round = 0; round < 3; round++) {
      for (const [label, open] of [
        ['/dev/null', () => fs.openSync('/dev/null', 'w')],
        ['file', () => fs.openSync(path.join(mnt, 'out.tar'), 'w')],
      ] as const) {
        const fd = open();
        const t0 = process.hrtime.bigint();
        await assembleTar(record, dir, fd, { verify: 'changed' });
        console.log(`assemble to ${label}: ${ms(t0)} ms`);
        fs.closeSync(fd);
      }
      fs.rmSync(path.join(mnt, 'out.tar'));
      settle(mnt);
    }
    fs.rmSync(dir, { recursive: true });
  });
} finally {
  images.done();
}
