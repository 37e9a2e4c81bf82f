// applyBatch / applyBatchSync: every op kind with owners, modes, xattr bytes, rdev, link counts
// and nanosecond times; the replacement rules; sparse bodies; pipe input with a hash; escapes
// refused beneath the root; truncated input; and the copy method per filesystem.
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { native, type ApplyOp, type NativeError } from '../../lib/native.ts';
import { dirOn, tempDir, type FsKind } from '../fixtures/fs.ts';
import { closeEarly, fdOf, fifoWithCat, randomFile, sha256 } from './helpers.ts';

const CAPABILITY = Buffer.from('01000002000400000000000000000000000000ff', 'hex');
const T1 = { sec: 1_600_000_000, nsec: 123_456_789 };
const T2 = { sec: 1_500_000_000, nsec: 987_654_321 };
const ns = (t: { sec: number; nsec: number }) => BigInt(t.sec) * 1_000_000_000n + BigInt(t.nsec);

function rootOf(t: Parameters<typeof tempDir>[0], dir: string): { root: string; rootFd: number } {
  const root = path.join(dir, 'root');
  fs.mkdirSync(root, { recursive: true });
  return { root, rootFd: fdOf(t, root, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY) };
}

test('every op kind: owners, modes, xattrs, rdev, link counts and times as asked', async (t) => {
  const dir = tempDir(t);
  const src = randomFile(path.join(dir, 'src'), 200_000);
  const srcFd = fdOf(t, path.join(dir, 'src'), 'r');
  const { root, rootFd } = rootOf(t, dir);
  const ops: ApplyOp[] = [
    { op: 'dir', path: 'd', mode: 0o2750, uid: 11, gid: 12, xattrs: [['trusted.dir', Buffer.from([0xff])]] },
    { op: 'file', path: 'd/suid', mode: 0o4755, uid: 1000, gid: 1001, mtime: T1, atime: T2, srcFd, srcOffset: 100, size: 150_000, xattrs: [['security.capability', CAPABILITY], ['user.k', Buffer.from([0x80, 0])]] },
    { op: 'file', path: 'd/empty', mode: 0o600, uid: 0, gid: 0, mtime: T1, srcFd, srcOffset: 0, size: 0 },
    { op: 'symlink', path: 'd/link', target: '../nowhere', uid: 21, gid: 22, mtime: T2, xattrs: [['trusted.sym', Buffer.from([1, 0x90])]] },
    { op: 'hardlink', path: 'd/hard', target: 'd/suid' },
    { op: 'mknod', path: 'd/null', mode: fs.constants.S_IFCHR | 0o666, major: 1, minor: 3, uid: 5, gid: 6, mtime: T1, xattrs: [['trusted.dev', Buffer.from('v')]] },
    { op: 'mknod', path: 'd/fifo', mode: fs.constants.S_IFIFO | 0o640, major: 0, minor: 0, uid: 7, gid: 8, mtime: T2 },
    { op: 'times', path: 'd', mtime: T2, atime: T1 },
  ];
  const r = await native().applyBatch(rootFd, ops);
  t.is(r.ops, ops.length);
  t.deepEqual(r.bytes, { copy_file_range: 150_000 });

  const st = (p: string) => fs.lstatSync(path.join(root, p), { bigint: true });
  const d = st('d');
  t.is(Number(d.mode & 0o7777n), 0o2750);
  t.deepEqual([d.uid, d.gid], [11n, 12n]);
  t.deepEqual(native().lgetxattr(path.join(root, 'd'), 'trusted.dir'), Buffer.from([0xff]));
  t.is(d.mtimeNs, ns(T2));
  t.is(d.atimeNs, ns(T1));

  const f = st('d/suid');
  t.is(Number(f.mode & 0o7777n), 0o4755, 'setuid survives: mode is set after the owner');
  t.deepEqual([f.uid, f.gid], [1000n, 1001n]);
  t.is(f.nlink, 2n);
  t.is(f.mtimeNs, ns(T1));
  t.is(f.atimeNs, ns(T2));
  t.true(fs.readFileSync(path.join(root, 'd/suid')).equals(src.subarray(100, 150_100)));
  t.deepEqual(native().lgetxattr(path.join(root, 'd/suid'), 'security.capability'), CAPABILITY);
  t.deepEqual(native().lgetxattr(path.join(root, 'd/suid'), 'user.k'), Buffer.from([0x80, 0]));
  t.is(st('d/hard').ino, f.ino);

  const e = st('d/empty');
  t.is(e.size, 0n);
  t.is(Number(e.mode & 0o7777n), 0o600);
  t.is(e.atimeNs, ns(T1), 'atime defaults to mtime');

  const l = st('d/link');
  t.true(l.isSymbolicLink());
  t.is(fs.readlinkSync(path.join(root, 'd/link')), '../nowhere');
  t.deepEqual([l.uid, l.gid], [21n, 22n]);
  t.is(l.mtimeNs, ns(T2));
  t.deepEqual(native().lgetxattr(path.join(root, 'd/link'), 'trusted.sym'), Buffer.from([1, 0x90]));

  const n = st('d/null');
  t.true(n.isCharacterDevice());
  t.is(n.rdev, 259n);
  t.is(Number(n.mode & 0o7777n), 0o666);
  t.deepEqual([n.uid, n.gid], [5n, 6n]);
  t.is(n.mtimeNs, ns(T1));
  t.deepEqual(native().lgetxattr(path.join(root, 'd/null'), 'trusted.dev'), Buffer.from('v'));
  const p = st('d/fifo');
  t.true(p.isFIFO());
  t.is(Number(p.mode & 0o7777n), 0o640);
  t.is(p.mtimeNs, ns(T2));
});

test('missing parents are made; sparse bodies keep their holes', (t) => {
  const dir = tempDir(t);
  const src = randomFile(path.join(dir, 'src'), 3 * 4096);
  const srcFd = fdOf(t, path.join(dir, 'src'), 'r');
  const { root, rootFd } = rootOf(t, dir);
  const realSize = 10 << 20;
  const map = [{ offset: 0, length: 4096 }, { offset: 5 << 20, length: 8192 }];
  const r = native().applyBatchSync(rootFd, [
    { op: 'file', path: 'a/b/sparse', mode: 0o644, uid: 0, gid: 0, mtime: T1, srcFd, srcOffset: 0, size: 3 * 4096, sparse: { realSize, map } },
  ]);
  t.is(r.ops, 1);
  t.true(fs.statSync(path.join(root, 'a/b')).isDirectory());
  const out = fs.readFileSync(path.join(root, 'a/b/sparse'));
  t.is(out.length, realSize);
  t.true(out.subarray(0, 4096).equals(src.subarray(0, 4096)));
  t.true(out.subarray(5 << 20, (5 << 20) + 8192).equals(src.subarray(4096, 3 * 4096)));
  t.true(out.subarray(4096, 5 << 20).equals(Buffer.alloc((5 << 20) - 4096)));
  t.true(out.subarray((5 << 20) + 8192).equals(Buffer.alloc(realSize - (5 << 20) - 8192)));
  t.true(fs.statSync(path.join(root, 'a/b/sparse')).blocks * 512 <= 64 * 1024, 'holes stay holes');
});

test('replacement rules: non-dirs replaced, dirs kept for dirs and removed for non-dirs, symlinks never followed', (t) => {
  const dir = tempDir(t);
  randomFile(path.join(dir, 'src'), 10);
  const srcFd = fdOf(t, path.join(dir, 'src'), 'r');
  const { root, rootFd } = rootOf(t, dir);
  const outside = path.join(dir, 'outside');
  fs.mkdirSync(outside);
  fs.writeFileSync(path.join(outside, 'keep'), 'keep');
  // what is there before
  fs.mkdirSync(path.join(root, 'dir-to-file/deep/er'), { recursive: true });
  fs.writeFileSync(path.join(root, 'dir-to-file/deep/er/x'), 'x');
  fs.symlinkSync(outside, path.join(root, 'dir-to-file/deep/out')); // must not be followed by the removal
  fs.writeFileSync(path.join(root, 'file-to-dir'), 'f');
  fs.mkdirSync(path.join(root, 'kept'));
  fs.writeFileSync(path.join(root, 'kept/child'), 'c');
  fs.symlinkSync(outside, path.join(root, 'link-to-dir'));
  fs.writeFileSync(path.join(root, 'file-to-link'), 'f');
  fs.symlinkSync(path.join(outside, 'keep'), path.join(root, 'link-to-file'));
  const file = (p: string): ApplyOp => ({ op: 'file', path: p, mode: 0o644, uid: 0, gid: 0, mtime: T1, srcFd, srcOffset: 0, size: 10 });
  native().applyBatchSync(rootFd, [
    file('dir-to-file'),
    { op: 'dir', path: 'file-to-dir', mode: 0o755, uid: 3, gid: 3 },
    { op: 'dir', path: 'kept', mode: 0o711, uid: 4, gid: 4 },
    { op: 'dir', path: 'link-to-dir', mode: 0o755, uid: 0, gid: 0 },
    { op: 'symlink', path: 'file-to-link', target: 'x', uid: 0, gid: 0, mtime: T1 },
    file('link-to-file'),
  ]);
  t.true(fs.lstatSync(path.join(root, 'dir-to-file')).isFile());
  t.true(fs.lstatSync(path.join(root, 'file-to-dir')).isDirectory());
  const kept = fs.lstatSync(path.join(root, 'kept'));
  t.is(kept.mode & 0o7777, 0o711);
  t.is(kept.uid, 4);
  t.deepEqual(fs.readdirSync(path.join(root, 'kept')), ['child'], 'an existing dir keeps its children');
  t.true(fs.lstatSync(path.join(root, 'link-to-dir')).isDirectory());
  t.is(fs.readlinkSync(path.join(root, 'file-to-link')), 'x');
  t.true(fs.lstatSync(path.join(root, 'link-to-file')).isFile());
  t.deepEqual(fs.readdirSync(outside), ['keep']);
  t.is(fs.readFileSync(path.join(outside, 'keep'), 'utf8'), 'keep');
});

test('remove, clear and times; a hardlink replacing an entry in a cached directory', async (t) => {
  const dir = tempDir(t);
  const { root, rootFd } = rootOf(t, dir);
  const outside = path.join(dir, 'outside');
  fs.mkdirSync(outside);
  fs.writeFileSync(path.join(outside, 'keep'), 'keep');
  fs.mkdirSync(path.join(root, 'gone/sub'), { recursive: true });
  fs.writeFileSync(path.join(root, 'gone/sub/f'), 'f');
  fs.symlinkSync(outside, path.join(root, 'gone/out'));
  fs.mkdirSync(path.join(root, 'opaque/sub'), { recursive: true });
  fs.writeFileSync(path.join(root, 'opaque/f'), 'f');
  fs.chmodSync(path.join(root, 'opaque'), 0o701);
  fs.mkdirSync(path.join(root, 'h'));
  fs.writeFileSync(path.join(root, 'h/a'), 'a');
  fs.writeFileSync(path.join(root, 'h/b'), 'old b');
  fs.symlinkSync('h/a', path.join(root, 'sym'));
  const r = await native().applyBatch(rootFd, [
    { op: 'remove', path: 'gone' },
    { op: 'remove', path: 'never/was/here' },
    { op: 'remove', path: 'nothing' },
    { op: 'clear', path: 'opaque' },
    { op: 'hardlink', path: 'h/b', target: 'h/a' },
    { op: 'times', path: 'sym', mtime: T1 },
  ]);
  t.is(r.ops, 6);
  t.false(fs.existsSync(path.join(root, 'gone')));
  t.deepEqual(fs.readdirSync(outside), ['keep'], 'removal does not follow symlinks out of the root');
  t.deepEqual(fs.readdirSync(path.join(root, 'opaque')), []);
  t.is(fs.statSync(path.join(root, 'opaque')).mode & 0o7777, 0o701, 'clear keeps the directory itself');
  t.is(fs.statSync(path.join(root, 'h/b')).ino, fs.statSync(path.join(root, 'h/a')).ino);
  t.is(fs.statSync(path.join(root, 'h/a')).nlink, 2);
  t.is(fs.lstatSync(path.join(root, 'sym'), { bigint: true }).mtimeNs, ns(T1));
  t.not(fs.statSync(path.join(root, 'h/a'), { bigint: true }).mtimeNs, ns(T1), 'times does not follow the symlink');
});

test('paths that escape the root through symlinks are EXDEV with the op index and path; nothing outside changes', async (t) => {
  const dir = tempDir(t);
  randomFile(path.join(dir, 'src'), 10);
  const srcFd = fdOf(t, path.join(dir, 'src'), 'r');
  const outside = path.join(dir, 'outside');
  fs.mkdirSync(outside);
  fs.writeFileSync(path.join(outside, 'victim'), 'untouched');
  const cases: Array<[string, ApplyOp[], number, string]> = [
    ['absolute symlink parent', [{ op: 'symlink', path: 'a', target: '/', uid: 0, gid: 0, mtime: T1 }, { op: 'remove', path: `a${outside}/victim` }], 1, `a${outside}/victim`],
    ['climbing symlink parent', [{ op: 'dir', path: 'd', mode: 0o755, uid: 0, gid: 0 }, { op: 'symlink', path: 'd/up', target: '../..', uid: 0, gid: 0, mtime: T1 }, { op: 'file', path: 'd/up/outside/victim', mode: 0o644, uid: 0, gid: 0, mtime: T1, srcFd, srcOffset: 0, size: 10 }], 2, 'd/up/outside/victim'],
    ['hardlink target through a symlink', [{ op: 'symlink', path: 'esc', target: outside, uid: 0, gid: 0, mtime: T1 }, { op: 'hardlink', path: 'hl', target: 'esc/victim' }], 1, 'esc/victim'],
    ['times through a symlink', [{ op: 'symlink', path: 'esc', target: outside, uid: 0, gid: 0, mtime: T1 }, { op: 'times', path: 'esc/victim', mtime: T1 }], 1, 'esc/victim'],
  ];
  for (const [what, ops, index, p] of cases) {
    const { rootFd } = rootOf(t, path.join(dir, what.replace(/ /g, '-')));
    const err = (await t.throwsAsync(native().applyBatch(rootFd, ops), undefined, what)) as NativeError;
    t.is(err.code, 'EXDEV', what);
    t.is(err.syscall, 'openat2', what);
    t.is(err.index, index, what);
    t.is(err.path, p, what);
    const sync = t.throws(() => native().applyBatchSync(rootFd, ops)) as NativeError;
    t.is(sync.code, 'EXDEV', what);
    t.is(fs.readFileSync(path.join(outside, 'victim'), 'utf8'), 'untouched', what);
    t.deepEqual(fs.readdirSync(outside), ['victim'], what);
  }
});

test('a body that ends early is ETARTRUNCATED naming the entry; other errors carry index and path', async (t) => {
  const dir = tempDir(t);
  randomFile(path.join(dir, 'src'), 5000);
  const srcFd = fdOf(t, path.join(dir, 'src'), 'r');
  const { root, rootFd } = rootOf(t, dir);
  const ok: ApplyOp = { op: 'file', path: 'ok', mode: 0o644, uid: 0, gid: 0, mtime: T1, srcFd, srcOffset: 0, size: 100 };
  const err = (await t.throwsAsync(native().applyBatch(rootFd, [ok, { ...ok, path: 'big', srcOffset: 1000, size: 10_000 }]))) as NativeError;
  t.is(err.code, 'ETARTRUNCATED');
  t.is(err.errno, 61); // ENODATA
  t.is(err.index, 1);
  t.is(err.path, 'big');
  t.regex(err.message, /4000 of 10000 bytes/);
  t.is(fs.statSync(path.join(root, 'ok')).size, 100);

  fs.writeFileSync(path.join(root, 'plain'), 'p');
  const notDir = t.throws(() => native().applyBatchSync(rootFd, [ok, ok, { ...ok, path: 'plain/x' }])) as NativeError;
  t.is(notDir.code, 'ENOTDIR');
  t.is(notDir.index, 2);
  t.is(notDir.path, 'plain/x');
  const noTarget = t.throws(() => native().applyBatchSync(rootFd, [{ op: 'hardlink', path: 'hl', target: 'missing' }])) as NativeError;
  t.is(noTarget.code, 'ENOENT');
  t.is(noTarget.syscall, 'linkat');
  t.is(noTarget.index, 0);
});

test('pipe input: bodies read in order from the fd position (splice), or read/write feeding a hash', async (t) => {
  const dir = tempDir(t);
  const a = randomFile(path.join(dir, 'a'), 300_000);
  const b = randomFile(path.join(dir, 'b'), 70_000);
  fs.writeFileSync(path.join(dir, 'stream'), Buffer.concat([a, b, a.subarray(0, 12_288)]));
  const { root, rootFd } = rootOf(t, dir);

  const plain = fifoWithCat(t, dir, 'p1', { from: path.join(dir, 'stream') });
  const in1 = fdOf(t, plain.fifo, 'r');
  const file = (p: string, size: number): ApplyOp & { op: 'file' } => ({ op: 'file', path: p, mode: 0o644, uid: 0, gid: 0, mtime: T1, srcFd: in1, srcOffset: -1, size });
  const r1 = native().applyBatchSync(rootFd, [
    file('a', a.length),
    file('b', b.length),
    { ...file('s', 12_288), sparse: { realSize: 1 << 20, map: [{ offset: 4096, length: 8192 }, { offset: 1 << 19, length: 4096 }] } },
  ]);
  t.is(await plain.done, 0);
  t.deepEqual(r1.bytes, { splice: a.length + b.length + 12_288 });
  t.true(fs.readFileSync(path.join(root, 'a')).equals(a));
  t.true(fs.readFileSync(path.join(root, 'b')).equals(b));
  const s = fs.readFileSync(path.join(root, 's'));
  t.true(s.subarray(4096, 12_288).equals(a.subarray(0, 8192)));
  t.true(s.subarray(1 << 19, (1 << 19) + 4096).equals(a.subarray(8192, 12_288)));

  const hashed = fifoWithCat(t, dir, 'p2', { from: path.join(dir, 'stream') });
  const in2 = fdOf(t, hashed.fifo, 'r');
  const hash = native().sha256();
  const r2 = native().applyBatchSync(rootFd, [
    { ...file('ha', a.length), srcFd: in2, hash },
    { ...file('hb', b.length), srcFd: in2, hash },
  ]);
  t.deepEqual(r2.bytes, { readwrite: a.length + b.length }, 'a hash makes the bytes pass through the process');
  hash.update(a.subarray(0, 12_288)); // the caller feeds what the batch does not read
  t.is(hash.digest(), sha256(fs.readFileSync(path.join(dir, 'stream'))));
  t.true(fs.readFileSync(path.join(root, 'hb')).equals(b));
  closeEarly(in2);
  await hashed.done;

  // a pipe that ends early
  const cut = fifoWithCat(t, dir, 'p3', { from: path.join(dir, 'b') });
  const in3 = fdOf(t, cut.fifo, 'r');
  const err = t.throws(() => native().applyBatchSync(rootFd, [{ ...file('cut', b.length + 1), srcFd: in3 }])) as NativeError;
  t.is(err.code, 'ETARTRUNCATED');
  t.is(err.path, 'cut');
  await cut.done;
});

for (const kind of ['btrfs', 'xfs'] as const satisfies readonly FsKind[]) {
  test(`${kind}: bodies at block-aligned source offsets are cloned (on btrfs only from 64 KiB), others go through the buffer`, async (t) => {
    const dir = dirOn(t, kind, 512 * 1024 * 1024);
    const src = randomFile(path.join(dir, 'tar'), 4 << 20);
    const srcFd = fdOf(t, path.join(dir, 'tar'), 'r');
    fs.fsyncSync(srcFd);
    const { root, rootFd } = rootOf(t, dir);
    const file = (p: string, srcOffset: number, size: number): ApplyOp => ({ op: 'file', path: p, mode: 0o644, uid: 0, gid: 0, mtime: T1, srcFd, srcOffset, size });
    const r = await native().applyBatch(rootFd, [file('aligned', 4096, 2 << 20), file('unaligned', 512, 100_000), file('tail', 8192, 5000)]);
    // 'tail' is aligned but small: on btrfs a clone would cost more than copying its 5000 bytes
    if (kind === 'btrfs') t.deepEqual(r.bytes, { copy_file_range: 2 << 20, readwrite: 100_000 + 5000 });
    else t.deepEqual(r.bytes, { copy_file_range: (2 << 20) + 5000, readwrite: 100_000 });
    t.true(fs.readFileSync(path.join(root, 'aligned')).equals(src.subarray(4096, 4096 + (2 << 20))));
    t.true(fs.readFileSync(path.join(root, 'unaligned')).equals(src.subarray(512, 100_512)));
    t.true(fs.readFileSync(path.join(root, 'tail')).equals(src.subarray(8192, 8192 + 5000)));
  });
}
