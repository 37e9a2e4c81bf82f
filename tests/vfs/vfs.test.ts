// The vfs driver on its own: layout, base-layer roots, copies of parents (reflinked on btrfs and
// xfs), id shifts, removal of read-only trees, status.
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { VfsDriver } from '../../drivers/vfs/index.ts';
import { openDriver } from '../../drivers/index.ts';
import { isLayersError } from '../../lib/errors.ts';
import { canMount, dirOn, tempDir } from '../fixtures/fs.ts';
import { makeTree } from '../fixtures/store.ts';

const map = (host: number) => ({ uidmap: [{ container_id: 0, host_id: host, size: 65536 }], gidmap: [{ container_id: 0, host_id: host, size: 65536 }] });

test('a base layer is an empty 0555 dir owned by the mapping root, in <home>/dir/<id>', async (t) => {
  const d = new VfsDriver(path.join(tempDir(t), 'vfs'));
  await d.create('a', undefined);
  await d.create('b', undefined, { idMappings: map(3000) });
  const a = fs.statSync(path.join(d.home, 'dir', 'a'));
  const b = fs.statSync(path.join(d.home, 'dir', 'b'));
  t.deepEqual([a.mode & 0o7777, a.uid, a.gid], [0o555, 0, 0]);
  t.deepEqual([b.uid, b.gid], [3000, 3000]);
  t.is(await d.mount('a'), path.join(d.home, 'dir', 'a'));
  t.true(await d.exists('a'));
  t.false(await d.exists('zz'));
  await t.throwsAsync(d.mount('zz'), { message: /vfs: layer zz has no directory/ });
});

// the shared driver suite (tests/drivers/) covers vfs on the temp dir; these are vfs on the two
// filesystems where a child's copy is reflinked
for (const kind of ['btrfs', 'xfs'] as const) {
  test(`a child is a full copy of its parent; changes and diffSize see only what changed (${kind})`, async (t) => {
    if (!canMount) return t.pass('needs root to mount');
    const d = new VfsDriver(path.join(dirOn(t, kind, 512 << 20), 'vfs'));
    await d.create('p', undefined);
    const pd = await d.mount('p');
    makeTree(pd);
    await d.create('c', 'p');
    const cd = await d.mount('c');
    t.deepEqual(fs.readFileSync(path.join(cd, 'bin/tool')), fs.readFileSync(path.join(pd, 'bin/tool')));
    t.is(fs.statSync(path.join(cd, 'bin/tool')).ino, fs.statSync(path.join(cd, 'bin/tool-link')).ino);
    t.is(fs.readlinkSync(path.join(cd, 'bin/alias')), 'tool');
    t.is(fs.statSync(path.join(cd, 'tmp')).mode & 0o7777, 0o1777);
    t.deepEqual(await d.changes('c', 'p'), []);
    fs.writeFileSync(path.join(cd, 'etc/hostname'), 'x');
    t.deepEqual(await d.changes('c', 'p'), [
      { path: '/etc', kind: 'Modify' },
      { path: '/etc/hostname', kind: 'Modify' },
    ]);
    t.is(await d.diffSize('c', 'p'), 1);
    const [key, fsName] = (await d.status())[0];
    t.is(key, 'Backing Filesystem');
    t.is(fsName, kind);
  });
}

test('remove deletes a tree with read-only directories (as root: no EACCES to get around)', async (t) => {
  const d = new VfsDriver(path.join(tempDir(t), 'vfs'));
  await d.create('r', undefined);
  const rd = await d.mount('r');
  fs.mkdirSync(path.join(rd, 'ro/deeper'), { recursive: true });
  fs.writeFileSync(path.join(rd, 'ro/deeper/f'), 'f');
  fs.chmodSync(path.join(rd, 'ro/deeper'), 0o500);
  fs.chmodSync(path.join(rd, 'ro'), 0o500);
  await d.remove('r');
  t.false(await d.exists('r'));
  await d.remove('r');
});

test('the driver factory puts each driver in <root>/<name> and refuses unknown names', (t) => {
  const root = tempDir(t);
  t.is(openDriver('vfs', root, undefined, []).home, path.join(root, 'vfs'));
  t.is(openDriver('overlay', root, undefined, []).home, path.join(root, 'overlay'));
  const err = t.throws(() => openDriver('zfs', root, undefined, []));
  t.true(isLayersError(err, 'EDRIVER'));
  t.regex(err!.message, /unknown storage driver "zfs"/);
});
