// copyRange and ficlone: the bytes, the offsets, and the method that really ran on each
// filesystem (copy_file_range reflinks only at block-aligned offsets on btrfs and xfs, where
// unaligned copies take the buffered path), pipes (sendfile out, splice in), fallbacks.
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { native, type NativeError } from '../../lib/native.ts';
import { dirOn, tempDir, type FsKind } from '../fixtures/fs.ts';
import { closeEarly, fdOf, fifoWithCat, randomFile, sharedBytes } from './helpers.ts';

const MiB = 1 << 20;

test('copyRange copies at the given offsets, leaves fd positions alone, and returns the short count at EOF', (t) => {
  const dir = tempDir(t);
  const data = randomFile(path.join(dir, 'src'), 300_000);
  const src = fdOf(t, path.join(dir, 'src'), 'r');
  const dst = fdOf(t, path.join(dir, 'dst'), 'w+');
  const r = native().copyRange(src, 1000, dst, 5000, 200_000);
  t.deepEqual(r, { bytes: 200_000, method: 'copy_file_range' }); // ext4/tmp: no alignment rule
  const out = fs.readFileSync(path.join(dir, 'dst'));
  t.is(out.length, 205_000);
  t.true(out.subarray(0, 5000).equals(Buffer.alloc(5000)));
  t.true(out.subarray(5000).equals(data.subarray(1000, 201_000)));
  // positions untouched by positional copies
  t.is(fs.readSync(src, Buffer.alloc(4), 0, 4, null), 4);

  // past the end of the input: fewer bytes, no error
  const short = native().copyRange(src, 299_000, dst, 0, 10_000);
  t.is(short.bytes, 1000);
  t.is(native().copyRange(src, 300_000, dst, 0, 10).bytes, 0);
});

test('copyRange with -1 offsets reads and writes at the fd positions and advances them', (t) => {
  const dir = tempDir(t);
  const data = randomFile(path.join(dir, 'src'), 64 * 1024);
  const src = fdOf(t, path.join(dir, 'src'), 'r');
  const dst = fdOf(t, path.join(dir, 'dst'), 'w');
  fs.readSync(src, Buffer.alloc(100), 0, 100, null); // src position 100
  fs.writeSync(dst, 'head'); // dst position 4
  const a = native().copyRange(src, -1, dst, -1, 1000);
  const b = native().copyRange(src, -1, dst, -1, 1000);
  t.is(a.bytes + b.bytes, 2000);
  t.is(a.method, 'sendfile'); // a file output at its position: sendfile, which takes no output offset
  const out = fs.readFileSync(path.join(dir, 'dst'));
  t.is(out.toString('latin1', 0, 4), 'head');
  t.true(out.subarray(4).equals(data.subarray(100, 2100)));
});

test('forced methods: readwrite and copy_file_range do what they say', (t) => {
  const dir = tempDir(t);
  const data = randomFile(path.join(dir, 'src'), 3 * MiB + 17); // more than one read/write buffer
  const src = fdOf(t, path.join(dir, 'src'), 'r');
  for (const m of ['readwrite', 'copy_file_range'] as const) {
    const dst = fdOf(t, path.join(dir, `dst-${m}`), 'w');
    t.deepEqual(native().copyRange(src, 0, dst, 0, data.length, m), { bytes: data.length, method: m });
    t.true(fs.readFileSync(path.join(dir, `dst-${m}`)).equals(data), m);
  }
});

test('an O_APPEND target falls back to read/write and appends', (t) => {
  const dir = tempDir(t);
  const data = randomFile(path.join(dir, 'src'), 100_000);
  fs.writeFileSync(path.join(dir, 'log'), 'x');
  const src = fdOf(t, path.join(dir, 'src'), 'r');
  const dst = fdOf(t, path.join(dir, 'log'), 'a');
  const r = native().copyRange(src, 0, dst, -1, data.length);
  t.deepEqual(r, { bytes: data.length, method: 'readwrite' });
  t.true(fs.readFileSync(path.join(dir, 'log')).equals(Buffer.concat([Buffer.from('x'), data])));
});

test('into a pipe: sendfile; from a pipe: splice', async (t) => {
  const dir = tempDir(t);
  const data = randomFile(path.join(dir, 'src'), 2 * MiB + 3);

  const out = fifoWithCat(t, dir, 'out', { to: path.join(dir, 'drained') });
  const w = fdOf(t, out.fifo, 'w');
  const src = fdOf(t, path.join(dir, 'src'), 'r');
  t.deepEqual(native().copyRange(src, 0, w, -1, data.length), { bytes: data.length, method: 'sendfile' });
  closeEarly(w);
  t.is(await out.done, 0);
  t.true(fs.readFileSync(path.join(dir, 'drained')).equals(data));

  const inp = fifoWithCat(t, dir, 'in', { from: path.join(dir, 'src') });
  const r = fdOf(t, inp.fifo, 'r');
  const dst = fdOf(t, path.join(dir, 'spliced'), 'w');
  const got = native().copyRange(r, -1, dst, 0, data.length + 1000); // asks for more than there is
  t.deepEqual(got, { bytes: data.length, method: 'splice' });
  t.is(await inp.done, 0);
  t.true(fs.readFileSync(path.join(dir, 'spliced')).equals(data));
});

test('errors look like Node fs errors', (t) => {
  const dir = tempDir(t);
  const dst = fdOf(t, path.join(dir, 'dst'), 'w');
  const err = t.throws(() => native().copyRange(dst, 0, dst, 0, 10, 'copy_file_range')) as NativeError;
  t.is(err.code, 'EBADF'); // reading from a write-only fd: no fallback can help
  t.is(err.errno, 9);
  t.regex(err.message, /^EBADF: bad file descriptor, (copy_file_range|pread)$/);
});

for (const kind of ['btrfs', 'xfs'] as const satisfies readonly FsKind[]) {
  test(`${kind}: copy_file_range only at block-aligned offsets, where it shares extents; buffered elsewhere`, (t) => {
    const dir = dirOn(t, kind, 512 * MiB);
    const size = 8 * MiB;
    const data = randomFile(path.join(dir, 'src'), size);
    const src = fdOf(t, path.join(dir, 'src'), 'r');
    fs.fsyncSync(src);
    const st = native().fstatfs(src);
    t.is(st.type, kind === 'btrfs' ? native().constants.BTRFS_SUPER_MAGIC : native().constants.XFS_SUPER_MAGIC);
    t.is(st.bsize, 4096);

    const freeBefore = native().fstatfs(src).bfree * st.bsize;
    const dst = fdOf(t, path.join(dir, 'aligned'), 'w+');
    t.deepEqual(native().copyRange(src, 0, dst, 0, size), { bytes: size, method: 'copy_file_range' });
    fs.fsyncSync(dst);
    t.true(fs.readFileSync(path.join(dir, 'aligned')).equals(data));
    t.is(sharedBytes(path.join(dir, 'aligned')), size, 'every extent of the copy is shared with the source');
    const used = freeBefore - native().fstatfs(src).bfree * st.bsize;
    t.true(used < MiB, `the clone took ${used} bytes of new space`);

    // aligned source into an unaligned destination, and the other way round: the buffered path
    for (const [inOff, outOff] of [[0, 512], [4096 + 100, 8192]]) {
      const name = `unaligned-${inOff}-${outOff}`;
      const d = fdOf(t, path.join(dir, name), 'w+');
      t.deepEqual(native().copyRange(src, inOff, d, outOff, MiB), { bytes: MiB, method: 'readwrite' }, name);
      t.true(fs.readFileSync(path.join(dir, name)).subarray(outOff).equals(data.subarray(inOff, inOff + MiB)), name);
      fs.fsyncSync(d);
      t.is(sharedBytes(path.join(dir, name)), 0, name);
    }

    // FICLONE: the whole file, shared
    const c = fdOf(t, path.join(dir, 'cloned'), 'w');
    native().ficlone(src, c);
    t.true(fs.readFileSync(path.join(dir, 'cloned')).equals(data));
    t.is(sharedBytes(path.join(dir, 'cloned')), size);
  });
}

test('ficlone on a filesystem without reflink (ext4) fails with ENOTSUP, the name Node gives EOPNOTSUPP', (t) => {
  const dir = tempDir(t);
  randomFile(path.join(dir, 'src'), 4096);
  const src = fdOf(t, path.join(dir, 'src'), 'r');
  const dst = fdOf(t, path.join(dir, 'dst'), 'w');
  const err = t.throws(() => native().ficlone(src, dst)) as NativeError;
  t.is(err.code, 'ENOTSUP');
  t.is(err.errno, 95);
  t.is(err.syscall, 'ioctl(FICLONE)');
});
