// The single-path calls: xattrs as raw bytes, mknod, lchown, lutimes with nanoseconds, all
// without following a final symlink; openat2 resolution beneath a root; fstatfs magics; flock.
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { native, type NativeError } from '../../lib/native.ts';
import { dirOn, tempDir } from '../fixtures/fs.ts';

// a real file capability (v2: cap_net_bind_service permitted+effective): bytes >= 0x80 included
const CAPABILITY = Buffer.from('01000002000400000000000000000000000000ff', 'hex');
const BINARY = Buffer.from([0x00, 0x80, 0xff, 0xfe, 0x7f, 0xc3, 0x28]);

test('xattrs round-trip raw bytes; a missing one is undefined; list and remove', (t) => {
  const dir = tempDir(t);
  const f = path.join(dir, 'f');
  fs.writeFileSync(f, 'x');
  t.is(native().lgetxattr(f, 'user.none'), undefined);
  native().lsetxattr(f, 'user.bin', BINARY);
  native().lsetxattr(f, 'user.empty', Buffer.alloc(0));
  native().lsetxattr(f, 'security.capability', CAPABILITY);
  t.deepEqual(native().lgetxattr(f, 'user.bin'), BINARY);
  t.deepEqual(native().lgetxattr(f, 'user.empty'), Buffer.alloc(0));
  t.deepEqual(native().lgetxattr(f, 'security.capability'), CAPABILITY);
  t.deepEqual(native().llistxattr(f).sort(), ['security.capability', 'user.bin', 'user.empty']);
  native().lremovexattr(f, 'user.bin');
  t.is(native().lgetxattr(f, 'user.bin'), undefined);
  // XATTR_CREATE (1) on an existing name
  const err = t.throws(() => native().lsetxattr(f, 'user.empty', BINARY, 1)) as NativeError;
  t.is(err.code, 'EEXIST');
  t.is(err.path, f);
  const gone = t.throws(() => native().lremovexattr(f, 'user.bin')) as NativeError;
  t.is(gone.code, 'ENODATA');
  const missing = t.throws(() => native().lgetxattr(path.join(dir, 'nope'), 'user.x')) as NativeError;
  t.is(missing.code, 'ENOENT');
  t.is(missing.syscall, 'lgetxattr');
  t.is(missing.message, `ENOENT: no such file or directory, lgetxattr '${path.join(dir, 'nope')}'`);
});

test('xattr calls act on a symlink itself, never its target', (t) => {
  const dir = tempDir(t);
  const target = path.join(dir, 'target');
  const link = path.join(dir, 'link');
  fs.writeFileSync(target, 'x');
  fs.symlinkSync('target', link);
  native().lsetxattr(link, 'trusted.on-link', BINARY);
  t.deepEqual(native().lgetxattr(link, 'trusted.on-link'), BINARY);
  t.deepEqual(native().llistxattr(link), ['trusted.on-link']);
  t.deepEqual(native().llistxattr(target), []);
  t.is(native().lgetxattr(target, 'trusted.on-link'), undefined);
  native().lremovexattr(link, 'trusted.on-link');
  t.deepEqual(native().llistxattr(link), []);
});

test('mknod makes char and block devices with their rdev, and fifos', (t) => {
  const dir = tempDir(t);
  native().mknod(path.join(dir, 'null'), fs.constants.S_IFCHR | 0o666, 1, 3);
  native().mknod(path.join(dir, 'blk'), fs.constants.S_IFBLK | 0o600, 259, 70000); // minor above 255
  native().mknod(path.join(dir, 'fifo'), fs.constants.S_IFIFO | 0o644, 0, 0);
  native().mknod(path.join(dir, 'wh'), fs.constants.S_IFCHR, 0, 0); // an overlay whiteout
  const c = fs.lstatSync(path.join(dir, 'null'));
  t.true(c.isCharacterDevice());
  t.is(c.rdev, (1 << 8) | 3);
  const b = fs.lstatSync(path.join(dir, 'blk'));
  t.true(b.isBlockDevice());
  // glibc's makedev: major in bits 8-19 and 32-43, minor in 0-7 and 20-39
  t.is(b.rdev, ((70000 & 0xff) | ((259 & 0xfff) << 8) | ((70000 >>> 8) << 20)) >>> 0);
  t.true(fs.lstatSync(path.join(dir, 'fifo')).isFIFO());
  t.is(fs.lstatSync(path.join(dir, 'wh')).rdev, 0);
  const err = t.throws(() => native().mknod(path.join(dir, 'null'), fs.constants.S_IFCHR, 1, 3)) as NativeError;
  t.is(err.code, 'EEXIST');
  t.is(err.syscall, 'mknod');
});

test('lchown and lutimes change a symlink, not its target; times keep nanoseconds', (t) => {
  const dir = tempDir(t);
  const target = path.join(dir, 'target');
  const link = path.join(dir, 'link');
  fs.writeFileSync(target, 'x');
  fs.symlinkSync('target', link);
  const before = fs.statSync(target, { bigint: true });
  native().lchown(link, 1234, 5678);
  native().lutimes(link, { sec: 1_000_000_000, nsec: 1 }, { sec: 1_600_000_000, nsec: 123_456_789 });
  const l = fs.lstatSync(link, { bigint: true });
  t.is(l.uid, 1234n);
  t.is(l.gid, 5678n);
  t.is(l.mtimeNs, 1_600_000_000_123_456_789n);
  t.is(l.atimeNs, 1_000_000_000_000_000_001n);
  const after = fs.statSync(target, { bigint: true });
  t.is(after.uid, before.uid);
  t.is(after.mtimeNs, before.mtimeNs);
  // ids above 2^31 go through as unsigned
  native().lchown(target, 4_000_000_000, 3_000_000_000);
  t.is(fs.lstatSync(target).uid, 4_000_000_000);
  t.is(fs.lstatSync(target).gid, 3_000_000_000);
});

test('openat2 beneath a root: escapes through symlinks are EXDEV, missing is ENOENT, a final symlink with O_NOFOLLOW is ELOOP', (t) => {
  const dir = tempDir(t);
  const root = path.join(dir, 'root');
  fs.mkdirSync(path.join(root, 'sub'), { recursive: true });
  fs.writeFileSync(path.join(root, 'sub', 'f'), 'inside');
  fs.writeFileSync(path.join(dir, 'secret'), 'outside');
  fs.symlinkSync('/', path.join(root, 'abs'));
  fs.symlinkSync('../..', path.join(root, 'sub', 'up'));
  fs.symlinkSync('f', path.join(root, 'sub', 'lf'));
  const { RESOLVE_BENEATH, RESOLVE_NO_MAGICLINKS, RESOLVE_IN_ROOT } = native().constants;
  const rootFd = fs.openSync(root, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
  t.teardown(() => fs.closeSync(rootFd));
  const beneath = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;

  const fd = native().openat2(rootFd, 'sub/f', fs.constants.O_RDONLY, 0, beneath);
  t.is(fs.readFileSync(fd, 'utf8'), 'inside');
  fs.closeSync(fd);
  t.is(fs.readlinkSync(`/proc/self/fd/${rootFd}`), root);

  for (const p of ['abs/etc/passwd', 'sub/up/secret', '../secret', '/etc/passwd']) {
    const err = t.throws(() => native().openat2(rootFd, p, fs.constants.O_RDONLY, 0, beneath)) as NativeError;
    t.is(err.code, 'EXDEV', p);
    t.is(err.errno, 18, p);
    t.is(err.syscall, 'openat2', p);
    t.is(err.path, p);
    t.is(err.message, `EXDEV: cross-device link not permitted, openat2 '${p}'`);
  }
  const missing = t.throws(() => native().openat2(rootFd, 'sub/none', fs.constants.O_RDONLY, 0, beneath)) as NativeError;
  t.is(missing.code, 'ENOENT');
  const loop = t.throws(() => native().openat2(rootFd, 'sub/lf', fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW, 0, beneath)) as NativeError;
  t.is(loop.code, 'ELOOP');

  // RESOLVE_IN_ROOT: '/' is the root, so the absolute symlink lands inside
  const inRoot = native().openat2(rootFd, 'abs/sub/f', fs.constants.O_RDONLY, 0, RESOLVE_IN_ROOT);
  t.is(fs.readFileSync(inRoot, 'utf8'), 'inside');
  fs.closeSync(inRoot);

  // O_CREAT with a mode; O_PATH directories
  const made = native().openat2(rootFd, 'sub/new', fs.constants.O_CREAT | fs.constants.O_WRONLY | fs.constants.O_EXCL, 0o640, beneath);
  fs.closeSync(made);
  t.is(fs.statSync(path.join(root, 'sub', 'new')).mode & 0o777, 0o640 & ~process.umask());
  const p = native().openat2(native().constants.AT_FDCWD, path.join(root, 'sub'), native().constants.O_PATH | fs.constants.O_DIRECTORY, 0, 0);
  t.true(fs.fstatSync(p).isDirectory());
  fs.closeSync(p);
});

test('fstatfs reports each filesystem magic', (t) => {
  const dir = tempDir(t);
  const fd = fs.openSync(dir, 'r');
  t.teardown(() => fs.closeSync(fd));
  const s = native().fstatfs(fd);
  t.true([native().constants.EXT4_SUPER_MAGIC, native().constants.TMPFS_MAGIC].includes(s.type));
  t.true(s.bsize > 0 && s.blocks > 0 && s.bfree <= s.blocks && s.bavail <= s.bfree);
  for (const kind of ['btrfs', 'xfs'] as const) {
    const m = dirOn(t, kind);
    const mfd = fs.openSync(m, 'r');
    t.is(native().fstatfs(mfd).type, kind === 'btrfs' ? 0x9123683e : 0x58465342, kind);
    fs.closeSync(mfd);
  }
  const err = t.throws(() => native().fstatfs(1_000_000)) as NativeError;
  t.is(err.code, 'EBADF');
});

test('tryLockExclusive: one open file at a time holds the flock; closing the holder frees it', (t) => {
  const f = path.join(tempDir(t), 'lock');
  const a = fs.openSync(f, 'w');
  const b = fs.openSync(f, 'r');
  try {
    t.true(native().tryLockExclusive(a));
    t.true(native().tryLockExclusive(a), 'taking it again through the same open file is a no-op');
    t.false(native().tryLockExclusive(b), 'another open file of the same process is refused');
    fs.closeSync(a);
    t.true(native().tryLockExclusive(b));
    t.throws(() => native().tryLockExclusive(-1), { code: 'EBADF' });
  } finally {
    fs.closeSync(b);
  }
});
