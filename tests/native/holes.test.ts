// Copies keep holes (issue 14, "work proportional to data"): where copy_file_range cannot
// reflink (ext4), the copy engine copies only the source's data ranges and leaves the holes
// holes (docs/tar-engine.md, "Copy paths"). Checked through a vfs child layer and a template
// copy (both copyTree), Store.copy (a temp tar) of a layer with sparse files, and on copyRange.
import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { native } from '../../lib/native.ts';
import { canMount, loopFs } from '../fixtures/fs.ts';
import { sha256File, tempStore } from '../fixtures/store.ts';
import { fdOf, randomFile } from './helpers.ts';

const KiB = 1 << 10;
const MiB = 1 << 20;
const GiB = 1 << 30;

const mountTest = canMount ? test.serial : test.skip;

/** Bytes the file takes on disk. */
const allocated = (file: string) => fs.statSync(file).blocks * 512;

function writeAt(file: string, offset: number, data: Buffer): void {
  const fd = fs.openSync(file, fs.constants.O_WRONLY | fs.constants.O_CREAT, 0o644);
  try {
    fs.writeSync(fd, data, 0, data.length, offset);
  } finally {
    fs.closeSync(fd);
  }
}

/** Random bytes, distinct per seed, without touching a file. */
function bytes(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed * 7 + (i >> 8)) & 0xff;
  return b;
}

/**
 * The layer's files: `huge` (1 GiB, 4 KiB of data at 512 MiB, a trailing hole), `extents`
 * (48 MiB: data at 0, a 1 MiB run at 8 MiB, a block at 40 MiB, a trailing hole), `dense`
 * (3 MiB of random bytes, no hole), `hole-only` (1 MiB, nothing written).
 */
function makeSparseFiles(dir: string): void {
  const huge = path.join(dir, 'huge');
  writeAt(huge, 512 * MiB, bytes(4 * KiB, 1));
  fs.truncateSync(huge, GiB);
  const extents = path.join(dir, 'extents');
  writeAt(extents, 0, bytes(100, 2));
  writeAt(extents, 8 * MiB, bytes(MiB, 3));
  writeAt(extents, 40 * MiB, bytes(4 * KiB, 4));
  fs.truncateSync(extents, 48 * MiB);
  randomFile(path.join(dir, 'dense'), 3 * MiB);
  fs.writeFileSync(path.join(dir, 'hole-only'), '');
  fs.truncateSync(path.join(dir, 'hole-only'), MiB);
}

/**
 * `to` has from's files with the same bytes and their holes. `viaTar`: the bodies were copied out
 * of a tar, where they start at 512-byte offsets, so the blocks a body shares with its neighbours
 * in the tar are data: a few blocks at its ends are written (zeros).
 */
async function assertSameFiles(t: ExecutionContext, from: string, to: string, viaTar = false): Promise<void> {
  for (const name of ['huge', 'extents', 'dense', 'hole-only']) {
    const a = path.join(from, name);
    const b = path.join(to, name);
    t.is(fs.statSync(b).size, fs.statSync(a).size, name);
    t.is(await sha256File(b), await sha256File(a), name);
  }
  t.true(allocated(path.join(to, 'huge')) < MiB, `huge takes ${allocated(path.join(to, 'huge'))} bytes`);
  t.true(allocated(path.join(to, 'extents')) < 2 * MiB, `extents takes ${allocated(path.join(to, 'extents'))} bytes`);
  if (viaTar) t.true(allocated(path.join(to, 'hole-only')) <= 16 * KiB, `hole-only takes ${allocated(path.join(to, 'hole-only'))} bytes`);
  else t.is(allocated(path.join(to, 'hole-only')), 0);
  // a file with no hole is copied whole, as before
  t.true(allocated(path.join(to, 'dense')) >= 3 * MiB);
}

mountTest('a vfs child layer, a template copy and `copy` of a layer with sparse files keep the holes (ext4)', async (t) => {
  // 256 MiB: a copy that wrote the 1 GiB of zeros out would not fit
  const s = tempStore(t, loopFs(t, 'ext4', 256 * MiB));
  const store = await s.open();
  t.teardown(() => store.close());
  const base = await store.createLayer({});
  const baseDir = await store.mount(base.id);
  makeSparseFiles(baseDir);
  t.true(allocated(path.join(baseDir, 'huge')) < MiB); // the fixture itself is sparse

  const child = await store.createLayer({ parent: base.id });
  await assertSameFiles(t, baseDir, await store.mount(child.id));
  const copy = await store.createFromTemplate({ template: base.id });
  await assertSameFiles(t, baseDir, await store.mount(copy.id));
  // `layers copy`: through a temp tar on the store's filesystem, written and extracted by the copy engine
  const target = await store.createLayer({});
  for (const name of ['huge', 'extents', 'dense', 'hole-only']) await store.copy([{ layer: base.id, path: name }], { layer: target.id, path: '/' });
  await assertSameFiles(t, baseDir, await store.mount(target.id), true);
  for (const id of [child.id, copy.id, target.id, base.id]) await store.unmount(id);
});

mountTest('copyRange leaves holes only past the end of the target, and keeps fd positions (ext4)', (t) => {
  const dir = loopFs(t, 'ext4', 64 * MiB);
  const src = path.join(dir, 'src');
  writeAt(src, 0, bytes(100, 6));
  writeAt(src, 4 * MiB, bytes(8 * KiB, 5));
  fs.truncateSync(src, 16 * MiB);
  const want = fs.readFileSync(src);
  const sfd = fdOf(t, src, 'r');
  fs.readSync(sfd, Buffer.alloc(10), 0, 10, null); // position 10

  // a new target, at an offset: the holes stay holes, the size reaches the range's end
  const fresh = path.join(dir, 'fresh');
  const ffd = fdOf(t, fresh, 'w');
  t.is(native().copyRange(sfd, 0, ffd, MiB, 16 * MiB).bytes, 16 * MiB);
  t.is(fs.statSync(fresh).size, 17 * MiB);
  t.true(fs.readFileSync(fresh).subarray(MiB).equals(want));
  t.true(allocated(fresh) < MiB);
  // SEEK_DATA/SEEK_HOLE move the position: it is put back at 10
  const next = Buffer.alloc(4);
  t.is(fs.readSync(sfd, next, 0, 4, null), 4);
  t.true(next.equals(want.subarray(10, 14)));

  // a target with bytes already where the holes fall: every byte is written, zeros included
  const used = path.join(dir, 'used');
  fs.writeFileSync(used, Buffer.alloc(16 * MiB, 0xaa));
  const ufd = fdOf(t, used, 'r+');
  t.is(native().copyRange(sfd, 0, ufd, 0, 16 * MiB).bytes, 16 * MiB);
  t.true(fs.readFileSync(used).equals(want));

  // a range that ends inside the trailing hole, and one past the source's end
  const part = path.join(dir, 'part');
  const pfd = fdOf(t, part, 'w');
  t.is(native().copyRange(sfd, 2 * MiB, pfd, 0, 10 * MiB).bytes, 10 * MiB);
  t.true(fs.readFileSync(part).equals(want.subarray(2 * MiB, 12 * MiB)));
  const tail = path.join(dir, 'tail');
  const tfd = fdOf(t, tail, 'w');
  t.is(native().copyRange(sfd, 15 * MiB, tfd, 0, 4 * MiB).bytes, MiB);
  t.is(fs.statSync(tail).size, MiB);
  t.is(allocated(tail), 0);
});
