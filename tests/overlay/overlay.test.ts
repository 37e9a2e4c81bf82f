// The overlay driver on ext4 and xfs loop filesystems: the peer's layout, mounts 1, 2 and 128
// deep, whiteouts and opaque dirs on disk and back in Diff, round trips of every entry kind,
// and the same diff/ tree as containers-storage makes from the same tar. Every mount a test
// makes is released by a teardown, pass or fail.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { OverlayDriver } from '../../drivers/overlay/index.ts';
import { native } from '../../lib/native.ts';
import { canMount } from '../fixtures/fs.ts';
import { makeTree } from '../fixtures/store.ts';
import { makeRichTree, snapshotTree } from '../fixtures/tree.ts';
import { apply, diffTo, KINDS, map, setup, tarEntries, tarOf } from './helpers.ts';

/** Whiteout devices' times left out: the peer leaves them at the time of extraction, we give them the tar entry's. */
function withoutWhiteoutTimes(snap: ReturnType<typeof snapshotTree>): ReturnType<typeof snapshotTree> {
  for (const f of Object.values(snap)) if (f.type === 'char' && f.rdev === '0') f.mtimeNs = '-';
  return snap;
}

for (const kind of KINDS) {
  test(`layout as containers/storage: diff, work, merged, link, lower, empty and l/ links (${kind})`, async (t) => {
    if (!canMount) return t.pass('needs root to mount');
    const { d } = setup(t, kind);
    await d.create('a', undefined, { idMappings: map(2000) });
    await d.create('b', 'a');
    await d.create('c', 'b');
    const entries = (id: string) => fs.readdirSync(d.dir(id)).sort();
    t.deepEqual(entries('a'), ['diff', 'empty', 'link', 'merged', 'work']);
    t.deepEqual(entries('c'), ['diff', 'link', 'lower', 'merged', 'work']);
    const link = (id: string) => fs.readFileSync(path.join(d.dir(id), 'link'), 'utf8');
    for (const id of ['a', 'b', 'c']) {
      t.regex(link(id), /^[A-Z2-7]{26}$/);
      t.is(fs.readlinkSync(path.join(d.home, 'l', link(id))), `../${id}/diff`);
    }
    t.is(fs.readFileSync(path.join(d.dir('c'), 'lower'), 'utf8'), `l/${link('b')}:l/${link('a')}`);
    const root = fs.statSync(d.diffDir('a'));
    t.deepEqual([root.mode & 0o7777, root.uid, root.gid], [0o555, 2000, 2000]);
    const child = fs.statSync(d.diffDir('c'));
    t.deepEqual([child.mode & 0o7777, child.uid], [0o555, 2000]);

    // the peer's own layout on the same filesystem kind has the same entries and modes
    const proot = path.join(path.dirname(d.home), '..', 'peer');
    const cs = (...args: string[]) =>
      execFileSync('containers-storage', ['-g', path.join(proot, 'root'), '-R', path.join(proot, 'run'), '-s', 'overlay', ...args], { encoding: 'utf8' }).trim();
    t.teardown(() => void cs('shutdown'));
    const pa = cs('create-layer').split('\n').pop()!;
    const pb = cs('create-layer', pa).split('\n').pop()!;
    const home = path.join(proot, 'root', 'overlay');
    const facts = (dir: string) => fs.readdirSync(dir).sort().map((n) => [n, (fs.lstatSync(path.join(dir, n)).mode & 0o170777).toString(8)]);
    t.deepEqual(facts(d.dir('a')), facts(path.join(home, pa)));
    t.deepEqual(facts(d.dir('b')), facts(path.join(home, pb)));
  });

  test(`mounts one and two deep show the right files; read-only mounts have no upper (${kind})`, async (t) => {
    if (!canMount) return t.pass('needs root to mount');
    const env = setup(t, kind);
    const { d } = env;
    await d.create('a', undefined);
    await apply(d, 'a', tarOf(env, 'a', makeTree));
    const ma = await d.mount('a');
    t.is(ma, path.join(d.dir('a'), 'merged'));
    t.is(fs.readFileSync(path.join(ma, 'etc/hostname'), 'utf8'), 'layers\n');
    t.is(await d.mount('a'), ma, 'a second mount finds the first');
    fs.writeFileSync(path.join(ma, 'new'), 'written through the mount');
    await d.unmount('a');
    t.false(d.isMounted('a'));
    t.is(fs.readFileSync(path.join(d.diffDir('a'), 'new'), 'utf8'), 'written through the mount');

    await d.create('b', 'a');
    const mb = await d.mount('b');
    t.is(fs.readFileSync(path.join(mb, 'bin/tool')).length, 100_000);
    fs.rmSync(path.join(mb, 'etc/hostname'));
    fs.writeFileSync(path.join(mb, 'etc/motd'), 'hi');
    await d.unmount('b');
    const wh = fs.lstatSync(path.join(d.diffDir('b'), 'etc/hostname'));
    t.true(wh.isCharacterDevice() && wh.rdev === 0, 'the deletion is a char 0/0 whiteout');
    t.deepEqual(await d.changes('b', 'a'), [
      { path: '/etc', kind: 'Modify' },
      { path: '/etc/hostname', kind: 'Delete' },
      { path: '/etc/motd', kind: 'Add' },
    ]);
    t.is(await d.diffSize('b', 'a'), 2);

    await d.create('c', 'b');
    const mc = await d.mount('c', { readOnly: true });
    t.false(fs.existsSync(path.join(mc, 'etc/hostname')));
    t.is(fs.readFileSync(path.join(mc, 'etc/motd'), 'utf8'), 'hi');
    t.throws(() => fs.writeFileSync(path.join(mc, 'x'), 'x'), { code: 'EROFS' });
    await d.unmount('c');

    // lost l/ links and link files are made again on mount
    const linkB = fs.readFileSync(path.join(d.dir('b'), 'link'), 'utf8');
    fs.rmSync(path.join(d.home, 'l', linkB));
    fs.rmSync(path.join(d.dir('a'), 'link'));
    const again = await d.mount('c');
    t.is(fs.readFileSync(path.join(again, 'bin/tool-link')).length, 100_000);
    t.is(fs.readlinkSync(path.join(d.home, 'l', linkB)), '../b/diff');
    t.regex(fs.readFileSync(path.join(d.dir('a'), 'link'), 'utf8'), /^[A-Z2-7]{26}$/);
    await d.mount('a');
    await d.cleanup();
    t.false(d.isMounted('a') || d.isMounted('c'), 'cleanup unmounts everything the driver mounted');
  });

  test(`128 lowers fit in one page of mount data; more are refused naming the limit (${kind})`, async (t) => {
    if (!canMount) return t.pass('needs root to mount');
    const { d } = setup(t, kind);
    // 64-char ids as the store makes them: the longest upperdir/workdir paths
    const ids = Array.from({ length: 140 }, (_, i) => i.toString(16).padStart(64, '0'));
    for (let i = 0; i < ids.length; i++) {
      await d.create(ids[i], i ? ids[i - 1] : undefined);
      fs.writeFileSync(path.join(d.diffDir(ids[i]), `f${i}`), String(i));
      if (i > 0) native().mknod(path.join(d.diffDir(ids[i]), `f${i - 1}`), fs.constants.S_IFCHR, 0, 0);
    }
    const top = ids[128]; // 128 lowers below it
    const m = await d.mount(top);
    t.deepEqual(fs.readdirSync(m), ['f128']);
    fs.writeFileSync(path.join(m, 'up'), 'up');
    await d.unmount(top);
    const ro = await d.mount(ids[127], { readOnly: true });
    t.deepEqual(fs.readdirSync(ro), ['f127']);
    await d.unmount(ids[127]);
    await t.throwsAsync(d.mount(ids[139]), { message: /139 lower layers, over the kernel's limit of one page \(4095 bytes\)/ });
    t.false(d.isMounted(ids[139]));
  });

  test(`deletions and opaque dirs in a tar become whiteouts on disk and the same entries in Diff (${kind})`, async (t) => {
    if (!canMount) return t.pass('needs root to mount');
    const env = setup(t, kind);
    const { d } = env;
    await d.create('p', undefined);
    await apply(
      d,
      'p',
      tarOf(env, 'p', (dir) => {
        fs.mkdirSync(path.join(dir, 'opq'));
        fs.writeFileSync(path.join(dir, 'opq/hidden'), 'h');
        fs.writeFileSync(path.join(dir, 'gone'), 'g');
        fs.writeFileSync(path.join(dir, 'kept'), 'k');
      }),
    );
    await d.create('c', 'p');
    const tar = tarOf(env, 'c', (dir) => {
      fs.writeFileSync(path.join(dir, '.wh.gone'), '');
      fs.mkdirSync(path.join(dir, 'opq'));
      fs.writeFileSync(path.join(dir, 'opq/.wh..wh..opq'), '');
      fs.writeFileSync(path.join(dir, 'opq/new'), 'n');
    });
    await apply(d, 'c', tar);
    const wh = fs.lstatSync(path.join(d.diffDir('c'), 'gone'));
    t.true(wh.isCharacterDevice());
    t.is(wh.rdev, 0);
    t.is(native().lgetxattr(path.join(d.diffDir('c'), 'opq'), 'trusted.overlay.opaque')?.toString(), 'y');
    const m = await d.mount('c', { readOnly: true });
    t.deepEqual(fs.readdirSync(m).sort(), ['kept', 'opq']);
    t.deepEqual(fs.readdirSync(path.join(m, 'opq')), ['new']);
    await d.unmount('c');

    const out = await diffTo(env, 'c', 'p', 'c-diff.tar');
    const names = (await tarEntries(out)).map(([n, type, mode]) => `${n} ${type}${n.includes('.wh.') ? ' ' + mode.toString(8) : ''}`);
    t.deepEqual(names, ['.wh.gone file 600', 'opq directory', 'opq/.wh..wh..opq file 755', 'opq/new file']);
    t.deepEqual(
      (await tarEntries(out)).map(([n]) => n).sort(),
      (await tarEntries(tar)).map(([n]) => n).filter((n) => n !== '' && n !== '.').sort(),
    );
    t.deepEqual(await d.changes('c', 'p'), [
      { path: '/gone', kind: 'Delete' },
      { path: '/opq', kind: 'Modify' },
      { path: '/opq/hidden', kind: 'Delete' },
      { path: '/opq/new', kind: 'Add' },
    ]);
    t.is(await d.diffSize('c', 'p'), 1);

    // a metacopy upper (made by a peer mounting with metacopy=on) has no data of its own: refused, not written empty
    native().lsetxattr(path.join(d.diffDir('c'), 'opq/new'), 'trusted.overlay.metacopy', Buffer.alloc(0));
    await t.throwsAsync(diffTo(env, 'c', 'p', 'metacopy.tar'), { message: /opq\/new is a metacopy file/ });
    native().lremovexattr(path.join(d.diffDir('c'), 'opq/new'), 'trusted.overlay.metacopy');

    // against another parent the diff is naive (mounted trees compared): the grandparent-relative view
    const naive = await tarEntries(await diffTo(env, 'c', undefined, 'c-full.tar'));
    t.deepEqual(naive.map(([n]) => n).sort(), ['kept', 'opq', 'opq/new']);
  });

  // the shared driver suite (tests/drivers/) runs this round trip on ext4; here on xfs too
  if (kind === 'xfs') test(`hardlinks, xattrs, devices and ns times survive apply -> diff -> apply (${kind})`, async (t) => {
    if (!canMount) return t.pass('needs root to mount');
    const env = setup(t, kind);
    const { d } = env;
    await d.create('a', undefined);
    await apply(d, 'a', tarOf(env, 'rich', makeRichTree));
    const out = await diffTo(env, 'a', undefined, 'a.tar');
    await d.create('b', undefined);
    await apply(d, 'b', out);
    t.deepEqual(snapshotTree(d.diffDir('b')), snapshotTree(d.diffDir('a')));
    t.deepEqual(snapshotTree(d.diffDir('a')), snapshotTree(path.join(env.base, 'rich-src')));
  });

  test(`the same tar gives the same diff/ tree as containers-storage --storage-driver overlay (${kind})`, async (t) => {
    if (!canMount) return t.pass('needs root to mount');
    const env = setup(t, kind);
    const { d } = env;
    const base = tarOf(env, 'rich', makeRichTree);
    const top = tarOf(env, 'top', (dir) => {
      fs.mkdirSync(path.join(dir, 'sub'));
      fs.writeFileSync(path.join(dir, 'sub/.wh..wh..opq'), '');
      fs.writeFileSync(path.join(dir, 'sub/fresh'), 'fresh');
      fs.writeFileSync(path.join(dir, '.wh.b511'), '');
      fs.mkdirSync(path.join(dir, 'hard'));
      fs.writeFileSync(path.join(dir, 'hard/.wh.two'), '');
    });
    const proot = path.join(env.base, 'peer');
    const cs = (...args: string[]) =>
      execFileSync('containers-storage', ['-g', path.join(proot, 'root'), '-R', path.join(proot, 'run'), '-s', 'overlay', ...args], { encoding: 'utf8' }).trim();
    t.teardown(() => void cs('shutdown'));
    const pa = cs('create-layer').split('\n').pop()!;
    cs('applydiff', '-f', base, pa);
    const pb = cs('create-layer', pa).split('\n').pop()!;
    cs('applydiff', '-f', top, pb);
    await d.create('a', undefined);
    await apply(d, 'a', base);
    await d.create('b', 'a');
    await apply(d, 'b', top);
    const peerDiff = (id: string) => path.join(proot, 'root', 'overlay', id, 'diff');
    t.deepEqual(snapshotTree(d.diffDir('a')), snapshotTree(peerDiff(pa)));
    t.deepEqual(withoutWhiteoutTimes(snapshotTree(d.diffDir('b'))), withoutWhiteoutTimes(snapshotTree(peerDiff(pb))));

    // and this driver reads the peer's store: mounts its layers and diffs them as its own
    const peer = new OverlayDriver(path.join(proot, 'root', 'overlay'));
    t.teardown(() => peer.cleanup());
    const m = await peer.mount(pb, { readOnly: true });
    t.deepEqual(fs.readdirSync(path.join(m, 'sub')), ['fresh']);
    t.false(fs.existsSync(path.join(m, 'b511')));
    t.deepEqual(fs.readdirSync(path.join(m, 'hard')), ['one']);
    await peer.unmount(pb);
    const ours = await diffTo(env, 'b', 'a', 'ours.tar');
    const out = path.join(env.base, 'theirs.tar');
    const fd = fs.openSync(out, 'w');
    await peer.diff(pb, pa, fd).finally(() => fs.closeSync(fd));
    t.deepEqual(await tarEntries(out), await tarEntries(ours));
  });

  test(`createFromTemplate is a child of the template; updateIdMappings shifts the merged view (${kind})`, async (t) => {
    if (!canMount) return t.pass('needs root to mount');
    const env = setup(t, kind);
    const { d } = env;
    await d.create('t', undefined);
    await apply(d, 't', tarOf(env, 't', makeTree));
    await d.createFromTemplate('n', 't');
    const linkT = fs.readFileSync(path.join(d.dir('t'), 'link'), 'utf8');
    t.is(fs.readFileSync(path.join(d.dir('n'), 'lower'), 'utf8'), `l/${linkT}`);
    t.deepEqual(fs.readdirSync(d.diffDir('n')), [], 'nothing is copied');
    await d.updateIdMappings('n', undefined, map(100000));
    t.false(d.isMounted('n'), 'the shift unmounts what it mounted');
    const m = await d.mount('n', { readOnly: true });
    t.is(fs.statSync(path.join(m, 'etc/hostname')).uid, 100000);
    t.is(fs.lstatSync(path.join(m, 'bin/alias')).gid, 100000);
    t.is(fs.statSync(path.join(m, 'bin/tool-link')).uid, 100000);
    t.is(fs.statSync(m).uid, 100000);
    const tool = fs.statSync(path.join(m, 'bin/tool'));
    t.is(tool.nlink, 2);
    await d.unmount('n');
    t.is(fs.statSync(path.join(d.diffDir('t'), 'etc/hostname')).uid, 0, 'the template is untouched');
    // against its notional parent (none) the diff is the whole shifted tree
    const names = (await tarEntries(await diffTo(env, 'n', undefined, 'n.tar'))).map(([n]) => n);
    t.true(names.includes('bin/tool') && names.includes('etc/hostname'));
    await d.remove('n');
    t.false(await d.exists('n'));
    t.true(await d.exists('t'));
    t.is(fs.readlinkSync(path.join(d.home, 'l', linkT)), '../t/diff');
  });
}

test('a root-level .wh..wh..opq is accepted and marks the layer root opaque, as the peer does', async (t) => {
  if (!canMount) return t.pass('needs root to mount');
  const env = setup(t, 'ext4');
  const { d } = env;
  await d.create('p', undefined);
  await apply(d, 'p', tarOf(env, 'p', (dir) => fs.writeFileSync(path.join(dir, 'old'), 'o')));
  await d.create('c', 'p');
  const tar = tarOf(env, 'c', (dir) => {
    fs.writeFileSync(path.join(dir, '.wh..wh..opq'), '');
    fs.writeFileSync(path.join(dir, 'new'), 'n');
  });
  await apply(d, 'c', tar);
  t.deepEqual(native().lgetxattr(d.diffDir('c'), 'trusted.overlay.opaque'), Buffer.from('y'));
  // overlayfs does not look up the root, so an opaque upper root hides nothing (the peer's
  // layers behave the same: it sets the same xattr); the layer mounts with its own file in it
  const merged = await d.mount('c');
  try {
    t.true(fs.readdirSync(merged).includes('new'));
  } finally {
    await d.unmount('c');
  }
});
