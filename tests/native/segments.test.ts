// writeSegments: a tar-like stream of header bytes and file bodies, checked byte for byte,
// with the method per body on each output kind: copy_file_range/coalesced buffer on ext4, the
// two-pass writer on btrfs/xfs (aligned bulks cloned, shared extents), sendfile into a pipe.
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { native, type NativeError, type TarSegment } from '../../lib/native.ts';
import { dirOn, tempDir, type FsKind } from '../fixtures/fs.ts';
import { closeEarly, fdOf, fifoWithCat, randomFile, sharedBytes } from './helpers.ts';

const MiB = 1 << 20;

interface Plan {
  data: Buffer;
  segments: TarSegment[];
  expected: Buffer;
}

/** headers of `headerLen` bytes before each file; each file's body then padding to 512 */
function plan(root: string, files: Array<[string, Buffer]>, headerLen = 512): Plan {
  const data: Buffer[] = [];
  const segments: TarSegment[] = [];
  const expected: Buffer[] = [];
  let used = 0;
  const bytes = (b: Buffer) => {
    segments.push({ kind: 'bytes', offset: used, length: b.length });
    data.push(b);
    expected.push(b);
    used += b.length;
  };
  for (const [name, body] of files) {
    fs.writeFileSync(path.join(root, name), body);
    bytes(Buffer.alloc(headerLen, name.charCodeAt(0)));
    segments.push({ kind: 'file', path: name, size: body.length });
    expected.push(body);
    const pad = (512 - (body.length % 512)) % 512;
    if (pad) bytes(Buffer.alloc(pad));
  }
  bytes(Buffer.alloc(1024));
  return { data: Buffer.concat(data), segments, expected: Buffer.concat(expected) };
}

function rootFdOf(t: Parameters<typeof tempDir>[0], root: string): number {
  return fdOf(t, root, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
}

test('ext4: headers and small bodies coalesced, big bodies by copy_file_range, at an offset', async (t) => {
  const dir = tempDir(t);
  const root = path.join(dir, 'root');
  fs.mkdirSync(root);
  const big = randomFile(path.join(dir, 'x'), 3 * MiB + 5);
  const p = plan(root, [['small', Buffer.from('hello')], ['big', big], ['empty', Buffer.alloc(0)], ['mid', big.subarray(0, 60_000)]]);
  const out = fdOf(t, path.join(dir, 'out.tar'), 'w+');
  const r = await native().writeSegments(out, p.data, p.segments, { rootFd: rootFdOf(t, root), outOffset: 1000 });
  t.is(r.written, p.expected.length);
  t.deepEqual(r.bytes, { copy_file_range: big.length, readwrite: 5 + 60_000 });
  const got = fs.readFileSync(path.join(dir, 'out.tar'));
  t.true(got.subarray(0, 1000).equals(Buffer.alloc(1000)));
  t.true(got.subarray(1000).equals(p.expected));

  // forced read/write: the same bytes
  const out2 = fdOf(t, path.join(dir, 'rw.tar'), 'w+');
  const r2 = await native().writeSegments(out2, p.data, p.segments, { rootFd: rootFdOf(t, root), outOffset: 0, method: 'readwrite' });
  t.deepEqual(r2.bytes, { readwrite: big.length + 5 + 60_000 });
  t.true(fs.readFileSync(path.join(dir, 'rw.tar')).equals(p.expected));
});

test('outOffset -1 writes at the fd position and leaves it at the end; O_APPEND appends', async (t) => {
  const dir = tempDir(t);
  const root = path.join(dir, 'root');
  fs.mkdirSync(root);
  const p = plan(root, [['a', randomFile(path.join(dir, 'x'), 200_000)], ['b', Buffer.from('bee')]]);
  const out = fdOf(t, path.join(dir, 'out'), 'w+');
  fs.writeSync(out, 'prefix');
  const rootFd = rootFdOf(t, root);
  const r1 = await native().writeSegments(out, p.data, p.segments, { rootFd, outOffset: -1 });
  const r2 = await native().writeSegments(out, p.data, p.segments, { rootFd, outOffset: -1 });
  t.is(r1.written + r2.written, 2 * p.expected.length);
  fs.writeSync(out, 'suffix');
  t.true(fs.readFileSync(path.join(dir, 'out')).equals(Buffer.concat([Buffer.from('prefix'), p.expected, p.expected, Buffer.from('suffix')])));

  fs.writeFileSync(path.join(dir, 'log'), 'L');
  const app = fdOf(t, path.join(dir, 'log'), 'a');
  const r3 = await native().writeSegments(app, p.data, p.segments, { rootFd, outOffset: -1 });
  t.is(r3.written, p.expected.length);
  t.true(fs.readFileSync(path.join(dir, 'log')).equals(Buffer.concat([Buffer.from('L'), p.expected])));
});

test('into a pipe: sendfile for big bodies, and the reader sees the exact stream', async (t) => {
  const dir = tempDir(t);
  const root = path.join(dir, 'root');
  fs.mkdirSync(root);
  const big = randomFile(path.join(dir, 'x'), 2 * MiB);
  const p = plan(root, [['big', big], ['tiny', Buffer.from('t')]]);
  const sink = fifoWithCat(t, dir, 'fifo', { to: path.join(dir, 'drained') });
  const w = fdOf(t, sink.fifo, 'w');
  const r = await native().writeSegments(w, p.data, p.segments, { rootFd: rootFdOf(t, root), outOffset: -1 });
  closeEarly(w);
  t.is(await sink.done, 0);
  t.deepEqual(r.bytes, { sendfile: big.length, readwrite: 1 });
  t.true(fs.readFileSync(path.join(dir, 'drained')).equals(p.expected));
});

test('sparse file segments read only their map ranges; fd segments read the given fd', async (t) => {
  const dir = tempDir(t);
  const root = path.join(dir, 'root');
  fs.mkdirSync(root);
  const fd = fs.openSync(path.join(root, 'sparse'), 'w+');
  const d1 = Buffer.alloc(4096, 1);
  const d2 = Buffer.alloc(100, 2);
  fs.writeSync(fd, d1, 0, d1.length, 8192);
  fs.writeSync(fd, d2, 0, d2.length, 1 << 20);
  fs.closeSync(fd);
  const other = randomFile(path.join(dir, 'other'), 1000);
  const otherFd = fdOf(t, path.join(dir, 'other'), 'r');
  const data = Buffer.from('HDR');
  const segments: TarSegment[] = [
    { kind: 'bytes', offset: 0, length: 3 },
    { kind: 'file', path: 'sparse', size: 4196, sparse: [{ offset: 8192, length: 4096 }, { offset: 1 << 20, length: 100 }] },
    { kind: 'file', path: 'not-opened', fd: otherFd, size: 1000 },
  ];
  const out = fdOf(t, path.join(dir, 'out'), 'w+');
  const r = await native().writeSegments(out, data, segments, { rootFd: rootFdOf(t, root), outOffset: 0 });
  t.is(r.written, 3 + 4196 + 1000);
  t.true(fs.readFileSync(path.join(dir, 'out')).equals(Buffer.concat([data, d1, d2, other])));

  // a map range past the end of the file: the file shrank
  const past = await t.throwsAsync(
    native().writeSegments(out, data, [{ kind: 'file', path: 'sparse', size: 10, sparse: [{ offset: (1 << 20) + 95, length: 10 }] }], { rootFd: rootFdOf(t, root), outOffset: 0 }),
  );
  t.is((past as NativeError).code, 'ESHRANK');
  t.is((past as NativeError).path, 'sparse');
});

test('a file shorter than its size is ESHRANK naming it; escapes and final symlinks are refused', async (t) => {
  const dir = tempDir(t);
  const root = path.join(dir, 'root');
  fs.mkdirSync(path.join(root, 'sub'), { recursive: true });
  fs.writeFileSync(path.join(root, 'short'), 'abc');
  fs.writeFileSync(path.join(dir, 'secret'), 'secret');
  fs.symlinkSync('/', path.join(root, 'abs'));
  fs.symlinkSync('../..', path.join(root, 'sub', 'up'));
  fs.symlinkSync('short', path.join(root, 'lnk'));
  const rootFd = rootFdOf(t, root);
  const out = fdOf(t, path.join(dir, 'out'), 'w+');
  const data = Buffer.alloc(512);
  const hdr: TarSegment = { kind: 'bytes', offset: 0, length: 512 };
  const cases: Array<[string, number, string]> = [
    ['short', 10, 'ESHRANK'],
    [`abs${dir}/secret`, 6, 'EXDEV'],
    ['sub/up/secret', 6, 'EXDEV'],
    ['lnk', 3, 'ELOOP'],
    ['missing', 1, 'ENOENT'],
  ];
  for (const [p, size, code] of cases) {
    const err = (await t.throwsAsync(native().writeSegments(out, data, [hdr, { kind: 'file', path: p, size }], { rootFd, outOffset: 0 }))) as NativeError;
    t.is(err.code as string, code, p);
    t.is(err.index, 1, p);
    t.is(err.path, p, p);
    t.true(err.errno > 0, p);
  }
  t.throws(() => native().writeSegments(out, data, [{ kind: 'bytes', offset: 500, length: 100 }], { rootFd, outOffset: 0 }), { instanceOf: RangeError });
});

for (const kind of ['btrfs', 'xfs'] as const satisfies readonly FsKind[]) {
  test(`${kind}: two passes — aligned body bulks cloned (shared extents), everything else buffered`, async (t) => {
    const dir = dirOn(t, kind, 512 * MiB);
    const root = path.join(dir, 'root');
    fs.mkdirSync(root);
    const big = randomFile(path.join(dir, 'x'), 4 * MiB + 1000); // bulk 4 MiB + a 1000-byte tail
    const odd = big.subarray(0, 300_000);
    // 4096-byte headers put the first body at an aligned offset; the next ones land unaligned
    const p = plan(root, [['big', big], ['odd', odd], ['small', Buffer.from('s')]], 4096);
    fsyncAll(root);
    const out = fdOf(t, path.join(dir, 'out.tar'), 'w+');
    const r = await native().writeSegments(out, p.data, p.segments, { rootFd: rootFdOf(t, root), outOffset: 0 });
    t.is(r.written, p.expected.length);
    t.deepEqual(r.bytes, { copy_file_range: 4 * MiB, readwrite: 1000 + odd.length + 1 });
    fs.fsyncSync(out);
    t.true(fs.readFileSync(path.join(dir, 'out.tar')).equals(p.expected));
    t.is(sharedBytes(path.join(dir, 'out.tar')), 4 * MiB, 'the aligned bulk shares the source extents');

    // written at an unaligned tar offset: nothing is aligned, nothing is cloned
    const out2 = fdOf(t, path.join(dir, 'unaligned.tar'), 'w+');
    const r2 = await native().writeSegments(out2, p.data, p.segments, { rootFd: rootFdOf(t, root), outOffset: 512 });
    t.deepEqual(r2.bytes, { readwrite: big.length + odd.length + 1 });
    t.true(fs.readFileSync(path.join(dir, 'unaligned.tar')).subarray(512).equals(p.expected));
  });
}

function fsyncAll(root: string): void {
  // the sources on disk before they are cloned, as they are when a layer is diffed
  for (const name of fs.readdirSync(root)) {
    const fd = fs.openSync(path.join(root, name), 'r');
    fs.fsyncSync(fd);
    fs.closeSync(fd);
  }
}
