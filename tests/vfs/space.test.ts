// On btrfs and xfs a vfs child (and a template copy) of a 1 GiB layer shares its parent's data
// through reflinks: it costs almost no disk space.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { VfsDriver } from '../../drivers/vfs/index.ts';
import { loopFs } from '../fixtures/fs.ts';

const MiB = 1 << 20;

function fill(dir: string): void {
  // 1 GiB in 64 files of 16 MiB, not all the same bytes
  const chunk = Buffer.alloc(16 * MiB);
  for (let i = 0; i < chunk.length; i += 4096) chunk.writeUInt32LE(i, i);
  fs.mkdirSync(path.join(dir, 'data'));
  for (let i = 0; i < 64; i++) {
    chunk.writeUInt32LE(i, 0);
    fs.writeFileSync(path.join(dir, 'data', `blob${i}`), chunk);
  }
}

function used(mnt: string): number {
  execFileSync('sync', ['-f', mnt]);
  const s = fs.statfsSync(mnt);
  return (s.blocks - s.bfree) * s.bsize;
}

for (const kind of ['btrfs', 'xfs'] as const) {
  test(`${kind}: a vfs child and a template copy of a 1 GiB layer each add under 16 MiB`, async (t) => {
    t.timeout(5 * 60_000);
    const mnt = loopFs(t, kind, 3 * 2 ** 30);
    const d = new VfsDriver(path.join(mnt, 'vfs'));
    await d.create('p', undefined);
    fill(await d.mount('p'));
    const before = used(mnt);
    await d.create('c', 'p');
    const child = used(mnt) - before;
    t.true(child < 16 * MiB, `the child added ${(child / MiB).toFixed(1)} MiB`);
    await d.createFromTemplate('t', 'p');
    const template = used(mnt) - before - child;
    t.true(template < 16 * MiB, `the template copy added ${(template / MiB).toFixed(1)} MiB`);
    const cd = await d.mount('c');
    t.deepEqual(fs.readFileSync(path.join(cd, 'data/blob63')), fs.readFileSync(path.join(await d.mount('p'), 'data/blob63')));
    if (kind === 'btrfs') {
      // btrfs's own accounting: the child's data is shared, almost none of it exclusive
      const out = execFileSync('btrfs', ['filesystem', 'du', '-s', '--raw', cd], { encoding: 'utf8' }).trim().split('\n').pop()!;
      const [total, exclusive] = out.trim().split(/\s+/).map(Number);
      t.true(total >= 1 << 30, `total ${total}`);
      t.true(exclusive < MiB, `exclusive ${exclusive}`);
    }
  });
}
