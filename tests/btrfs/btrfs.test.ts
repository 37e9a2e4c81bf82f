// The btrfs driver on a loop-mounted btrfs of its own per test: layers are subvolumes, children
// and template copies are snapshots (checked by inode and against the peer containers-storage;
// their space and time at scale in scale.timed.test.ts), removal gets through nested and read-only subvolumes, and a root
// that is not on btrfs is refused with an error that says so.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BtrfsDriver } from '../../drivers/btrfs/index.ts';
import { parseSize as parseSizeOf } from '../../drivers/options.ts';
import { openDriver } from '../../drivers/index.ts';
import { isLayersError } from '../../lib/errors.ts';
import { openStore } from '../../lib/index.ts';
import { native } from '../../lib/native.ts';
import { loopFs } from '../fixtures/fs.ts';
import { gnuTar, makeTree, runCli } from '../fixtures/store.ts';
import { makeBulkTree, makeRichTree, snapshotTree } from '../fixtures/tree.ts';

const MiB = 1 << 20;
const GNU_X = ['--xattrs', '--xattrs-include=*', '--numeric-owner', '-p'];
const map = (host: number) => ({ uidmap: [{ container_id: 0, host_id: host, size: 65536 }], gidmap: [{ container_id: 0, host_id: host, size: 65536 }] });

function richTar(dir: string): { src: string; tar: string } {
  const src = path.join(dir, 'src');
  fs.mkdirSync(src);
  makeRichTree(src);
  const tar = path.join(dir, 'rich.tar');
  execFileSync('tar', ['--format=pax', '--xattrs', '--xattrs-include=*', '--numeric-owner', '-cf', tar, '-C', src, '.']);
  return { src, tar };
}

function extract(tarPath: string, dir: string): string {
  fs.mkdirSync(dir);
  execFileSync('tar', [...GNU_X, '-xf', tarPath, '-C', dir]);
  return dir;
}

test('a base layer is a fresh 0555 subvolume owned by the mapping root; a child is a snapshot of its parent', async (t) => {
  const mnt = loopFs(t, 'btrfs', 256 * MiB);
  const d = new BtrfsDriver(path.join(mnt, 'btrfs'));
  await d.create('a', undefined);
  await d.create('b', undefined, { idMappings: map(3000) });
  const a = path.join(mnt, 'btrfs/subvolumes/a');
  t.is(await d.mount('a'), a);
  t.true(native().btrfsIsSubvolume(a));
  const sa = fs.statSync(a);
  t.deepEqual([sa.mode & 0o7777, sa.uid, sa.gid], [0o555, 0, 0]);
  const sb = fs.statSync(await d.mount('b'));
  t.deepEqual([sb.uid, sb.gid], [3000, 3000]);
  t.true(await d.exists('a'));
  t.false(await d.exists('zz'));
  await t.throwsAsync(d.mount('zz'), { message: /btrfs: layer zz has no subvolume/ });

  makeTree(a);
  await d.create('c', 'a');
  const c = await d.mount('c');
  t.true(native().btrfsIsSubvolume(c));
  t.deepEqual(snapshotTree(c), snapshotTree(a));
  t.deepEqual(await d.changes('c', 'a'), []);
  fs.writeFileSync(path.join(c, 'etc/hostname'), 'x');
  fs.rmSync(path.join(c, 'bin/alias'));
  fs.writeFileSync(path.join(c, 'new'), 'abc');
  t.deepEqual(await d.changes('c', 'a'), [
    { path: '/bin', kind: 'Modify' },
    { path: '/bin/alias', kind: 'Delete' },
    { path: '/etc', kind: 'Modify' },
    { path: '/etc/hostname', kind: 'Modify' },
    { path: '/new', kind: 'Add' },
  ]);
  t.is(await d.diffSize('c', 'a'), 4);
  // the parent did not change
  t.is(fs.readFileSync(path.join(a, 'etc/hostname'), 'utf8'), 'layers\n');

  const status = new Map(await d.status());
  t.is(status.get('Backing Filesystem'), 'btrfs');
  t.true(Number(status.get('Space Available')) > 0);
});

test('createFromTemplate snapshots the template; updateIdMappings shifts every owner of the copy only', async (t) => {
  const mnt = loopFs(t, 'btrfs', 256 * MiB);
  const d = new BtrfsDriver(path.join(mnt, 'btrfs'));
  await d.create('t', undefined);
  const td = await d.mount('t');
  makeTree(td);
  fs.lchownSync(path.join(td, 'etc/hostname'), 1000, 100);
  await d.createFromTemplate('n', 't');
  const nd = await d.mount('n');
  t.true(native().btrfsIsSubvolume(nd));
  t.deepEqual(snapshotTree(nd), snapshotTree(td));
  await d.updateIdMappings('n', undefined, map(100000));
  t.deepEqual([fs.statSync(nd).uid, fs.statSync(nd).gid], [100000, 100000]);
  t.deepEqual([fs.statSync(path.join(nd, 'etc/hostname')).uid, fs.statSync(path.join(nd, 'etc/hostname')).gid], [101000, 100100]);
  t.is(fs.lstatSync(path.join(nd, 'bin/alias')).gid, 100000);
  t.is(fs.statSync(path.join(nd, 'tmp')).mode & 0o7777, 0o1777);
  t.is(fs.statSync(path.join(td, 'etc/hostname')).uid, 1000);
  t.is(fs.statSync(td).uid, 0);
});

test('through the store: a child with other id mappings is a snapshot of its parent with every owner shifted', async (t) => {
  const mnt = loopFs(t, 'btrfs', 128 * MiB);
  const src = path.join(mnt, 'src');
  fs.mkdirSync(src);
  makeTree(src);
  fs.lchownSync(path.join(src, 'etc/hostname'), 1000, 100);
  const store = await openStore({ root: path.join(mnt, 'root'), runroot: path.join(mnt, 'run'), driver: 'btrfs' });
  const base = await store.createLayer({ names: ['base'] }, gnuTar(src, path.join(mnt, 'base.tar')));
  const child = await store.createLayer({ parent: 'base', uidmap: map(5000).uidmap, gidmap: map(5000).gidmap });
  const bd = path.join(mnt, 'root/btrfs/subvolumes', base.id);
  const cd = path.join(mnt, 'root/btrfs/subvolumes', child.id);
  t.true(native().btrfsIsSubvolume(cd));
  t.deepEqual([fs.statSync(path.join(cd, 'etc/hostname')).uid, fs.statSync(path.join(cd, 'etc/hostname')).gid], [6000, 5100]);
  t.is(fs.lstatSync(path.join(cd, 'bin/alias')).uid, 5000);
  t.is(fs.statSync(path.join(bd, 'etc/hostname')).uid, 1000);
  t.is(fs.statSync(path.join(bd, 'bin/tool')).uid, 0);
});

test('--layer-opt size= reaches the driver from create-layer, create-container and create-from-template; other keys and drivers are refused', async (t) => {
  const mnt = loopFs(t, 'btrfs', 256 * MiB);
  const g = (driver: string) => ['-g', path.join(mnt, `root-${driver}`), '-R', path.join(mnt, `run-${driver}`), '--driver', driver];
  const ok = async (args: string[]) => {
    const r = await runCli([...g('btrfs'), ...args]);
    t.is(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    return r.stdout.split('\n')[0];
  };
  const overQuota = (dir: string) => {
    const err = t.throws(() => fs.writeFileSync(path.join(dir, 'more'), Buffer.alloc(16 * MiB, 1))) as NodeJS.ErrnoException;
    t.is(err.errno, -os.constants.errno.EDQUOT, `${dir}: over its limit`);
  };
  const sub = (id: string) => path.join(mnt, 'root-btrfs/btrfs/subvolumes', id);
  const capped = await ok(['create-layer', '--layer-opt', 'size=8M', '-n', 'capped']);
  overQuota(sub(capped));
  const free = await ok(['create-layer', '-n', 'free']);
  fs.writeFileSync(path.join(sub(free), 'big'), Buffer.alloc(16 * MiB, 1));
  await ok(['create-image', '-n', 'img', 'free']);
  await ok(['create-container', '--layer-opt', 'size=24M', '-n', 'c1', 'img']);
  const c1 = JSON.parse((await runCli([...g('btrfs'), 'container', '--json', 'c1'])).stdout)[0].layer;
  // the snapshot references its parent's 16 MiB already: 16 more is over 24
  overQuota(sub(c1));
  const copy = await ok(['create-from-template', '--hostuidmap', '--hostgidmap', '--layer-opt', 'size=20M', 'free']);
  overQuota(sub(copy));

  const wrongKey = await runCli([...g('btrfs'), 'create-layer', '--layer-opt', 'color=red']);
  t.is(wrongKey.code, 2, 'a key the driver does not take is a bad flag value');
  t.regex(wrongKey.stderr, /btrfs: no per-layer option "color" \(it takes size\)/);
  const notKv = await runCli([...g('btrfs'), 'create-layer', '--layer-opt', 'size']);
  t.is(notKv.code, 2);
  t.regex(notKv.stderr, /--layer-opt size: want KEY=VALUE/);
  const vfs = await runCli([...g('vfs'), 'create-layer', '--layer-opt', 'size=8M']);
  t.is(vfs.code, 2);
  t.regex(vfs.stderr, /vfs: no per-layer option "size" \(it takes none\)/);
  t.deepEqual(JSON.parse((await runCli([...g('vfs'), 'layers', '--json'])).stdout), [], 'nothing was made');
  t.is(JSON.parse((await runCli([...g('btrfs'), 'layers', '--json'])).stdout).length, 4, 'capped, free, the container layer and the copy');
});

test('remove deletes nested subvolumes deepest first, read-only ones included', async (t) => {
  const mnt = loopFs(t, 'btrfs', 256 * MiB);
  const d = new BtrfsDriver(path.join(mnt, 'btrfs'));
  const subvols = path.join(mnt, 'btrfs/subvolumes');
  await d.create('l', undefined);
  const l = await d.mount('l');
  makeTree(l);
  // what a container might do: a subvolume inside the layer, another inside that, a read-only snapshot
  native().btrfsSubvolCreate(path.join(l, 'etc'), 'nested');
  native().btrfsSubvolCreate(path.join(l, 'etc/nested'), 'deeper');
  fs.writeFileSync(path.join(l, 'etc/nested/deeper/f'), 'f');
  native().btrfsSnapshot(l, path.join(l, 'bin'), 'ro-snap', true);
  t.true(native().btrfsGetReadOnly(path.join(l, 'bin/ro-snap')));
  // and the layer itself made read-only
  native().btrfsSetReadOnly(l, true);
  t.throws(() => fs.writeFileSync(path.join(l, 'x'), 'x'), { code: 'EROFS' });
  await d.remove('l');
  t.false(await d.exists('l'));
  await d.remove('l');

  // a read-only snapshot as the layer (as a peer tool may leave one)
  await d.create('p', undefined);
  native().btrfsSnapshot(await d.mount('p'), subvols, 'ro', true);
  await d.remove('ro');
  t.false(await d.exists('ro'));
  t.deepEqual(fs.readdirSync(subvols), ['p']);
  const listed = execFileSync('btrfs', ['subvolume', 'list', mnt], { encoding: 'utf8' }).trim().split('\n');
  t.is(listed.length, 1, listed.join('\n'));

  // errors come through the addon's errors, naming the call and the path
  const err = t.throws(() => native().btrfsSubvolDelete(subvols, 'missing')) as NodeJS.ErrnoException;
  t.is(err.code, 'ENOENT');
  t.is(err.syscall, 'BTRFS_IOC_SNAP_DESTROY');
  t.is(err.path, path.join(subvols, 'missing'));
});

test('remove leaves alone another btrfs mounted inside the layer', async (t) => {
  const mnt = loopFs(t, 'btrfs', 128 * MiB);
  const other = loopFs(t, 'btrfs', 128 * MiB);
  fs.writeFileSync(path.join(other, 'keep'), 'keep');
  const d = new BtrfsDriver(path.join(mnt, 'btrfs'));
  await d.create('l', undefined);
  const inside = path.join(await d.mount('l'), 'mnt');
  fs.mkdirSync(inside);
  execFileSync('mount', ['--bind', other, inside]);
  t.teardown(() => {
    // gone already when the layer's deletion detached it
    if (fs.readFileSync('/proc/self/mountinfo', 'utf8').includes(` ${inside} `)) execFileSync('umount', ['-l', inside]);
  });
  t.true(native().btrfsIsSubvolume(inside));
  await d.remove('l');
  t.false(await d.exists('l'));
  t.is(fs.readFileSync(path.join(other, 'keep'), 'utf8'), 'keep');
});

test('a root not on btrfs is refused with an error that says so, by the driver and by the CLI', async (t) => {
  const mnt = loopFs(t, 'ext4', 32 * MiB);
  const err = t.throws(() => openDriver('btrfs', path.join(mnt, 'root'), undefined, []));
  t.true(isLayersError(err, 'EDRIVER'));
  t.regex(err!.message, /is not on a btrfs filesystem/);
  t.false(fs.existsSync(path.join(mnt, 'root/btrfs')));
  const r = await runCli(['-g', path.join(mnt, 'store'), '-R', path.join(mnt, 'run'), '--driver', 'btrfs', 'layers']);
  t.is(r.code, 1);
  t.regex(r.stderr, /not on a btrfs filesystem/);
});

test('the same tar applied by containers-storage and by layers (btrfs) gives identical trees, and both diffs extract alike', async (t) => {
  const mnt = loopFs(t, 'btrfs', 256 * MiB);
  const { src, tar } = richTar(mnt);
  const peerG = ['-g', path.join(mnt, 'peer'), '-R', path.join(mnt, 'peer-run'), '--storage-driver', 'btrfs'];
  const peer = (args: string[]) => execFileSync('containers-storage', [...peerG, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  // the peer bind-mounts its driver home on itself; its shutdown takes that mount away again
  t.teardown(() => {
    try {
      peer(['shutdown']);
    } catch {
      /* the loop filesystem's teardown unmounts lazily what is left */
    }
  });
  const ours = (args: string[]) => runCli(['-g', path.join(mnt, 'ours'), '-R', path.join(mnt, 'ours-run'), '--driver', 'btrfs', ...args]);
  const firstLine = (s: string) => s.trim().split('\n')[0];

  const peerId = firstLine(peer(['import-layer', '-f', tar, '-n', 'base']));
  const o = await ours(['import-layer', '-f', tar, '-n', 'base']);
  t.is(o.code, 0, o.stderr);
  const ourTree = path.join(mnt, 'ours/btrfs/subvolumes', firstLine(o.stdout));
  const peerTree = path.join(mnt, 'peer/btrfs/subvolumes', peerId);
  t.true(native().btrfsIsSubvolume(ourTree));
  t.true(native().btrfsIsSubvolume(peerTree));
  t.deepEqual(snapshotTree(ourTree), snapshotTree(peerTree));
  t.deepEqual(snapshotTree(ourTree), snapshotTree(src));

  const ourDiff = path.join(mnt, 'ours.tar');
  const peerDiff = path.join(mnt, 'peer.tar');
  const od = await ours(['diff', '-f', ourDiff, 'base']);
  t.is(od.code, 0, od.stderr);
  peer(['diff', '-u', '-f', peerDiff, 'base']);
  t.deepEqual(snapshotTree(extract(ourDiff, path.join(mnt, 'x-ours'))), snapshotTree(extract(peerDiff, path.join(mnt, 'x-peer'))));

  // a child with an added, a rewritten and a whited-out file: both snapshots of the base take
  // the change alike, and both diffs against the base list and extract alike
  const change = path.join(mnt, 'change');
  fs.mkdirSync(path.join(change, 'sub/dir'), { recursive: true });
  fs.writeFileSync(path.join(change, 'sub/dir/new.txt'), 'new\n');
  fs.writeFileSync(path.join(change, 'b512'), 'rewritten\n');
  fs.writeFileSync(path.join(change, '.wh.b513'), '');
  const changeTar = path.join(mnt, 'change.tar');
  execFileSync('tar', ['--format=pax', '--numeric-owner', '-cf', changeTar, '-C', change, '.']);
  const peerChild = path.join(mnt, 'peer/btrfs/subvolumes', firstLine(peer(['import-layer', '-f', changeTar, '-n', 'child', 'base'])));
  const oc = await ours(['import-layer', '-f', changeTar, '-n', 'child', 'base']);
  t.is(oc.code, 0, oc.stderr);
  const ourChild = path.join(mnt, 'ours/btrfs/subvolumes', firstLine(oc.stdout));
  t.deepEqual(snapshotTree(ourChild, { dirTimes: false }), snapshotTree(peerChild, { dirTimes: false }));
  t.false(fs.existsSync(path.join(ourChild, 'b513')));
  const ourChildDiff = path.join(mnt, 'ours-child.tar');
  const peerChildDiff = path.join(mnt, 'peer-child.tar');
  t.is((await ours(['diff', '-f', ourChildDiff, 'child'])).code, 0);
  peer(['diff', '-u', '-f', peerChildDiff, 'child']);
  // the one intended difference, as with vfs: the peer stamps whiteouts with the time of the
  // diff, we with 0
  const snap = (p: string) => {
    const s = snapshotTree(p, { dirTimes: false });
    for (const [k, v] of Object.entries(s)) if (path.basename(k).startsWith('.wh.')) v.mtimeNs = 'whiteout';
    return s;
  };
  t.deepEqual(snap(extract(ourChildDiff, path.join(mnt, 'xc-ours'))), snap(extract(peerChildDiff, path.join(mnt, 'xc-peer'))));
  t.truthy(snap(path.join(mnt, 'xc-ours'))['.wh.b513']);

  const status = await ours(['status']);
  t.is(status.code, 0, status.stderr);
  t.regex(status.stdout, /Driver Name: btrfs/);
  t.regex(status.stdout, /Backing Filesystem: btrfs/);

  for (const layer of ['child', 'base']) {
    const r = await ours(['delete-layer', layer]);
    t.is(r.code, 0, r.stderr);
  }
  t.deepEqual(fs.readdirSync(path.join(mnt, 'ours/btrfs/subvolumes')), []);
});

test('size= caps what a layer references with a qgroup limit; quotas are turned on only then', async (t) => {
  const mnt = loopFs(t, 'btrfs', 256 * MiB);
  const d = new BtrfsDriver(path.join(mnt, 'btrfs'));
  await d.create('free', undefined);
  t.is(new Map(await d.status()).get('Quota'), 'disabled');
  await t.throwsAsync(d.create('bad', undefined, { storageOpt: { size: '8 apples' } }), { message: /btrfs: invalid size "8 apples"/ });
  t.false(await d.exists('bad'));
  await d.create('small', undefined, { storageOpt: { size: '8M' } });
  t.is(new Map(await d.status()).get('Quota'), 'enabled');
  const big = Buffer.alloc(16 * MiB, 1);
  const small = await d.mount('small');
  // libuv has no name for EDQUOT ('UNKNOWN'): the errno says it
  const overQuota = (f: () => void) => t.is((t.throws(f) as NodeJS.ErrnoException).errno, -os.constants.errno.EDQUOT);
  overQuota(() => fs.writeFileSync(path.join(small, 'big'), big));
  fs.writeFileSync(path.join(await d.mount('free'), 'big'), big);
  await d.createFromTemplate('copy', 'free', { storageOpt: { size: '4M' } });
  // the snapshot references the template's 16 MiB already: any new data is over the limit
  const copy = await d.mount('copy');
  overQuota(() => fs.writeFileSync(path.join(copy, 'more'), Buffer.alloc(MiB, 2)));
  await d.remove('small');
  await d.remove('copy');
  t.false(await d.exists('small'));
  const parseSize = (v: string) => parseSizeOf('btrfs', v);
  t.deepEqual([parseSize('100'), parseSize('8M'), parseSize('1.5g'), parseSize('10KiB'), parseSize('2 GB')], [100, 8 * MiB, 1.5 * 1024 * MiB, 10240, 2 * 1024 * MiB]);
});
