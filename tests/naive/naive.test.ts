// The naive differ's two-tree diff / changes / size, and the tree copy (reflinks) and chown walk drivers share.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { treeChanges, treeDiff, treeDiffSize } from '../../drivers/naive/index.ts';
import { chownTree, copyTree } from '../../drivers/trees.ts';
import { extractTar } from '../../lib/tar/extract.ts';
import { loopFs, tempDir } from '../fixtures/fs.ts';
import { CAPABILITY, makeRichTree, snapshotTree } from '../fixtures/tree.ts';

test('copyTree keeps every entry type, owner, mode, ns time, xattr and hardlink', async (t) => {
  const dir = tempDir(t);
  const src = path.join(dir, 'src');
  const dst = path.join(dir, 'dst');
  fs.mkdirSync(src);
  fs.mkdirSync(dst);
  makeRichTree(src);
  fs.chmodSync(src, 0o711);
  fs.lchownSync(src, 7, 8);
  const res = await copyTree(src, dst);
  t.deepEqual(res.skipped, []);
  t.deepEqual(snapshotTree(dst), snapshotTree(src));
  const [a, b] = [fs.lstatSync(src), fs.lstatSync(dst)];
  t.deepEqual([b.mode, b.uid, b.gid], [a.mode, a.uid, a.gid]);
  t.is(fs.lstatSync(path.join(dst, 'hard/one')).ino, fs.lstatSync(path.join(dst, 'hard-three')).ino);
});

test('copyTree skips sockets and says so', async (t) => {
  const dir = tempDir(t);
  const src = path.join(dir, 'src');
  const dst = path.join(dir, 'dst');
  fs.mkdirSync(src);
  fs.mkdirSync(dst);
  fs.writeFileSync(path.join(src, 'f'), 'f');
  execFileSync('python3', ['-c', `import socket; s=socket.socket(socket.AF_UNIX); s.bind(${JSON.stringify(path.join(src, 'sock'))})`]);
  const res = await copyTree(src, dst);
  t.deepEqual(res.skipped, ['sock']);
  t.deepEqual(fs.readdirSync(dst), ['f']);
});

for (const kind of ['btrfs', 'xfs'] as const) {
  test(`${kind}: a copy of 256 MiB of files shares its data (reflink) and costs almost no space`, async (t) => {
    const mnt = loopFs(t, kind, 1 << 30);
    const src = path.join(mnt, 'src');
    const dst = path.join(mnt, 'dst');
    fs.mkdirSync(src);
    fs.mkdirSync(dst);
    const body = Buffer.alloc(4 << 20, 0x5a);
    for (let i = 0; i < 64; i++) fs.writeFileSync(path.join(src, `f${i}`), body.fill(i, 0, 1));
    execFileSync('sync', ['-f', mnt]);
    const used = () => {
      const s = fs.statfsSync(mnt);
      return (s.blocks - s.bfree) * s.bsize;
    };
    const before = used();
    await copyTree(src, dst);
    execFileSync('sync', ['-f', mnt]);
    const added = used() - before;
    t.true(added < 16 << 20, `${kind}: the copy added ${added} bytes`);
    t.deepEqual(fs.readFileSync(path.join(dst, 'f63')), fs.readFileSync(path.join(src, 'f63')));
  });
}

/** a parent tree and a child made from a copy of it with every kind of change */
async function parentAndChild(t: Parameters<typeof tempDir>[0]) {
  const dir = tempDir(t);
  const parent = path.join(dir, 'parent');
  const child = path.join(dir, 'child');
  fs.mkdirSync(parent);
  fs.mkdirSync(child);
  makeRichTree(parent);
  await copyTree(parent, child);
  fs.writeFileSync(path.join(child, 'b512'), 'modified');
  fs.writeFileSync(path.join(child, 'sub/dir/added.txt'), 'added');
  fs.rmSync(path.join(child, 'b513'));
  fs.rmSync(path.join(child, 'ünïcödé'), { recursive: true });
  fs.chmodSync(path.join(child, 'one'), 0o600);
  fs.mkdirSync(path.join(child, 'newdir/deep'), { recursive: true });
  fs.writeFileSync(path.join(child, 'newdir/deep/f'), 'deep');
  return { dir, parent, child };
}

test('changes of a child against its parent: Add, Modify, Delete with parent dirs, as the peer reports them', async (t) => {
  const { parent, child } = await parentAndChild(t);
  const changes = await treeChanges(child, parent);
  t.deepEqual(changes, [
    { path: '/b512', kind: 'Modify' },
    { path: '/b513', kind: 'Delete' },
    { path: '/newdir', kind: 'Add' },
    { path: '/newdir/deep', kind: 'Add' },
    { path: '/newdir/deep/f', kind: 'Add' },
    { path: '/one', kind: 'Modify' },
    { path: '/sub', kind: 'Modify' },
    { path: '/sub/dir', kind: 'Modify' },
    { path: '/sub/dir/added.txt', kind: 'Add' },
    { path: '/ünïcödé', kind: 'Delete' },
  ]);
  t.is(await treeDiffSize(child, parent), 'modified'.length + 'added'.length + 'deep'.length + 'x'.length);
});

test('diff of a child applied onto a copy of its parent gives the child, with whiteouts for deletions', async (t) => {
  const { dir, parent, child } = await parentAndChild(t);
  const tarPath = path.join(dir, 'diff.tar');
  const fd = fs.openSync(tarPath, 'w');
  await treeDiff(child, parent, fd, { outOffset: 0 });
  fs.closeSync(fd);
  const listing = execFileSync('tar', ['-tf', tarPath], { encoding: 'utf8' }).trim().split('\n');
  t.deepEqual(listing, ['b512', '.wh.b513', 'newdir/', 'newdir/deep/', 'newdir/deep/f', 'one', 'sub/', 'sub/dir/', 'sub/dir/added.txt', '.wh.ünïcödé']);
  const again = path.join(dir, 'again');
  fs.mkdirSync(again);
  await copyTree(parent, again);
  const rfd = fs.openSync(tarPath, 'r');
  await extractTar(rfd, again, { whiteouts: 'delete' });
  fs.closeSync(rfd);
  t.deepEqual(snapshotTree(again), snapshotTree(child));
  // the same two trees always give the same tar
  const tar2 = path.join(dir, 'diff2.tar');
  const fd2 = fs.openSync(tar2, 'w');
  await treeDiff(child, parent, fd2, { outOffset: 0 });
  fs.closeSync(fd2);
  t.deepEqual(fs.readFileSync(tar2), fs.readFileSync(tarPath));
});

test('chownTree shifts owners by mappings, keeps setuid bits and file capabilities, sends outside ids to 65534', async (t) => {
  const dir = tempDir(t);
  const root = path.join(dir, 'root');
  fs.mkdirSync(root);
  makeRichTree(root);
  const m = { uidmap: [{ container_id: 0, host_id: 100000, size: 65536 }], gidmap: [{ container_id: 0, host_id: 100000, size: 65536 }] };
  const res = await chownTree(root, undefined, m);
  // owners/big has uid 300000 and gid 3000000: both outside the 65536 range
  t.is(res.overflowed, 2);
  const st = (p: string) => fs.lstatSync(path.join(root, p));
  t.deepEqual([st('owners/plain').uid, st('owners/plain').gid], [101000, 100100]);
  t.deepEqual([st('owners/big').uid, st('owners/big').gid], [65534, 65534]);
  t.deepEqual([st('rel-link').uid, st('rel-link').gid], [104242, 104343]);
  t.is(st('bin/suid').mode & 0o7777, 0o4755);
  t.is(fs.lstatSync(root).uid, 100000);
  // three names of one inode: shifted once, not three times
  t.deepEqual([st('hard/one').uid, st('hard/two').uid, st('hard-three').uid], [100000, 100000, 100000]);
  t.deepEqual(execFileSync('getfattr', ['-n', 'security.capability', '-e', 'hex', '--only-values', path.join(root, 'bin/ping')]), CAPABILITY);
  // and back: ids in range return to what they were
  await chownTree(root, m, undefined);
  t.deepEqual([st('owners/plain').uid, st('owners/plain').gid], [1000, 100]);
  t.is(st('bin/suid').mode & 0o7777, 0o4755);
  // the native walk's errors are Node's: code, syscall and the path
  const err = await t.throwsAsync(chownTree(path.join(dir, 'nope'), undefined, m));
  t.like(err, { code: 'ENOENT', syscall: 'open', path: path.join(dir, 'nope') });
});
