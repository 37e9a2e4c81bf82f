// Id shifting on overlay, on ext4 and xfs loop filesystems: the metacopy probe (asked once,
// cached under the run root in the peer's file name, reported by status), the upper rotated as
// containers/storage rotates it (diff -> diff1, a fresh diff), and Diff/Changes/DiffSize of
// shifted layers and of layers on top of them; the peer, configured with metacopy=on, reads
// a layer the store shifted.
import test from 'ava';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { OverlayDriver } from '../../drivers/overlay/index.ts';
import { METACOPY_FEATURE, probeMetacopy } from '../../drivers/overlay/features.ts';
import { openStore } from '../../lib/index.ts';
import { native } from '../../lib/native.ts';
import { canMount } from '../fixtures/fs.ts';
import { makeRichTree } from '../fixtures/tree.ts';
import { apply, diffTo, KINDS, map, METACOPY_XATTR, setup, tarFacts, tarOf, type Env } from './helpers.ts';

const MiB = 1 << 20;

async function statusOf(d: OverlayDriver): Promise<Record<string, string>> {
  return Object.fromEntries(await d.status());
}

test('the metacopy probe runs once, is cached under the run root in the peer\'s file name, and status reports it', async (t) => {
  if (!canMount) return t.pass('needs root to mount');
  const env = setup(t, 'ext4', 64 << 20, { runHome: true });
  const run = env.d.runHome!;
  const s = await statusOf(env.d);
  t.regex(s['Using metacopy'], /^(true|false)$/);
  const answer = s['Using metacopy'] === 'true';
  const file = path.join(run, `${METACOPY_FEATURE}-${answer}`);
  t.true(fs.existsSync(file), 'the answer is a file under the run root');
  t.false(fs.existsSync(path.join(run, `${METACOPY_FEATURE}-${!answer}`)));
  t.deepEqual(
    fs.readdirSync(env.d.home).filter((n) => n.startsWith('metacopy-check')),
    [],
    'the probe leaves nothing in the home',
  );
  const before = fs.statSync(file, { bigint: true });

  // another driver on the same run root believes the file: it does not probe again
  await new Promise((r) => setTimeout(r, 20));
  const again = new OverlayDriver(env.d.home, run);
  t.is((await statusOf(again))['Using metacopy'], String(answer));
  const after = fs.statSync(file, { bigint: true });
  t.is(after.mtimeNs, before.mtimeNs, 'the cached file is not written again');
  t.is(after.ino, before.ino);
  fs.renameSync(file, path.join(run, `${METACOPY_FEATURE}-${!answer}`));
  t.is((await statusOf(new OverlayDriver(env.d.home, run)))['Using metacopy'], String(!answer), 'the cached answer is what counts');

  // without a run root every driver probes for itself, and writes nothing
  const loose = new OverlayDriver(path.join(env.base, 'other', 'overlay'));
  t.is((await statusOf(loose))['Using metacopy'], String(answer));
  t.is(await loose.usingMetacopy(), answer);

  // the peer, told to mount with metacopy=on, names its cached answer the same way
  const peerRun = path.join(env.base, 'peer-run');
  // (it prints its status on stderr)
  const cs = (...args: string[]) => {
    const r = spawnSync(
      'containers-storage',
      ['-g', path.join(env.base, 'peer'), '-R', peerRun, '-s', 'overlay', '--storage-opt', 'overlay.mountopt=metacopy=on', ...args],
      { encoding: 'utf8' },
    );
    return r.stdout + r.stderr;
  };
  t.teardown(() => void cs('shutdown'));
  t.regex(cs('status'), new RegExp(`^Using metacopy: ${answer}$`, 'm'));
  t.true(fs.existsSync(path.join(peerRun, 'overlay', `${METACOPY_FEATURE}-${answer}`)));
});

test('a probe killed mid-way leaves a temp dir (and maybe its mount) that the next probe removes; a live one is left', async (t) => {
  if (!canMount) return t.pass('needs root to mount');
  const env = setup(t, 'ext4', 64 << 20);
  const home = env.d.home;
  fs.mkdirSync(home, { recursive: true });
  const dead = spawnSync('true').pid!; // exited: its pid names a dead probe
  const deadDir = path.join(home, `metacopy-check-${dead}-abc123`);
  const merged = path.join(deadDir, 'merged');
  fs.mkdirSync(merged, { recursive: true });
  execFileSync('mount', ['-t', 'tmpfs', 'leftover', merged]);
  t.teardown(() => spawnSync('umount', ['-l', merged]));
  const liveDir = path.join(home, `metacopy-check-${process.pid}-def456`);
  fs.mkdirSync(liveDir);
  const peerDir = path.join(home, 'metacopy-check123456'); // the peer's own name: not ours to judge
  fs.mkdirSync(peerDir);

  await probeMetacopy(home);
  t.false(fs.existsSync(deadDir), 'the dead probe is gone');
  t.false(fs.readFileSync('/proc/self/mountinfo', 'utf8').includes(` ${merged} `), 'its mount was detached');
  t.true(fs.existsSync(liveDir), "a live process's probe is left alone");
  t.true(fs.existsSync(peerDir));
  t.deepEqual(fs.readdirSync(home).filter((n) => n.startsWith('metacopy-check-')), [path.basename(liveDir)], 'this probe removed its own dir');
});

for (const kind of KINDS) {
  test(`the shift rotates the upper as the peer does; Diff of the copy mapped back is the template's (${kind})`, async (t) => {
    if (!canMount) return t.pass('needs root to mount');
    const env = setup(t, kind);
    const { d } = env;
    const metacopy = await d.usingMetacopy();
    // the parent of the template, and the template: every kind of entry, owners inside the mapping
    await d.create('p', undefined);
    await apply(
      d,
      'p',
      tarOf(env, 'p', (dir) => {
        fs.mkdirSync(path.join(dir, 'etc'));
        fs.writeFileSync(path.join(dir, 'etc/os-release'), 'ID=test\n');
        fs.writeFileSync(path.join(dir, 'kept'), 'kept\n');
      }),
    );
    await d.create('t', 'p');
    await apply(
      d,
      't',
      tarOf(env, 't', (dir) => {
        makeRichTree(dir);
        fs.lchownSync(path.join(dir, 'owners/big'), 1234, 4321); // inside the 65536 ids of the mapping
        fs.mkdirSync(path.join(dir, 'etc'));
        fs.writeFileSync(path.join(dir, 'etc/os-release'), 'ID=changed\n');
      }),
    );
    const diffT = await tarFacts(await diffTo(env, 't', 'p', 't.tar'));
    await d.createFromTemplate('n', 't');
    await d.updateIdMappings('n', undefined, map(100000));

    // the rotation: the shift's copy-ups in diff1, a fresh empty diff with the shifted root's attributes
    const dir = d.dir('n');
    t.deepEqual(fs.readdirSync(dir).sort(), ['diff', 'diff1', 'link', 'lower', 'merged', 'work']);
    t.deepEqual(fs.readdirSync(d.diffDir('n')), [], 'diff starts empty');
    const root = fs.statSync(d.diffDir('n'));
    const root1 = fs.statSync(path.join(dir, 'diff1'));
    t.deepEqual([root.uid, root.gid, root.mode, root.mtimeMs], [100000, 100000, root1.mode, root1.mtimeMs]);
    t.deepEqual(fs.readdirSync(path.join(dir, 'work')), [], 'work is made anew (no index of the old upper)');
    t.is(fs.statSync(path.join(dir, 'diff1', 'etc/os-release')).uid, 100000);
    t.is(fs.statSync(path.join(dir, 'diff1', 'hard/one')).ino, fs.statSync(path.join(dir, 'diff1', 'hard/two')).ino, 'hardlinks stay linked');
    t.is(fs.statSync(path.join(dir, 'diff1', 'owners/big')).uid, 101234);
    if (metacopy) t.truthy(native().lgetxattr(path.join(dir, 'diff1', 'big'), METACOPY_XATTR), 'diff1 holds metadata, the data stays below');
    t.is(fs.lstatSync(path.join(dir, 'diff1', 'bin/suid')).mode & 0o7777, 0o4755, 'setuid survives the chown');
    t.truthy(native().lgetxattr(path.join(dir, 'diff1', 'bin/ping'), 'security.capability'), 'capabilities survive the chown');

    // a file written into the mounted layer lands in diff, not in the shift's diff1
    const m = await d.mount('n');
    fs.writeFileSync(path.join(m, 'later'), 'written after the shift');
    fs.chmodSync(path.join(m, 'b4096'), 0o600);
    t.is(fs.readFileSync(path.join(m, 'big')).length, (1 << 20) * 3 + 7);
    await d.unmount('n');
    t.deepEqual(fs.readdirSync(d.diffDir('n')).sort(), ['b4096', 'later']);
    t.false(fs.existsSync(path.join(dir, 'diff1', 'later')));
    fs.rmSync(path.join(d.diffDir('n'), 'later'));
    fs.rmSync(path.join(d.diffDir('n'), 'b4096'));

    // Diff, Changes and DiffSize of the copy against its notional parent, in container ids: the template's
    const identity = { uidmap: [], gidmap: [] };
    const back = { idMappings: map(100000), parentIdMappings: identity };
    const diffN = await tarFacts(await diffTo(env, 'n', 'p', 'n.tar', back));
    t.deepEqual(diffN, diffT);
    t.deepEqual(await d.changes('n', 'p', back), await d.changes('t', 'p'));
    t.is(await d.diffSize('n', 'p', back), await d.diffSize('t', 'p'));
    // against its nearest lower (the template) the copy differs by owner only: in container ids, nothing
    t.deepEqual(await d.changes('n', 't', back), []);
    const hostIds = await d.changes('n', 't');
    t.true(hostIds.length > 30 && hostIds.every((c) => c.kind === 'Modify'), 'in host ids every entry changed owner');

    // a second shift rotates again: diff1 -> diff2
    fs.writeFileSync(path.join(d.diffDir('n'), 'own'), 'own');
    fs.chownSync(path.join(d.diffDir('n'), 'own'), 100000, 100000);
    await d.updateIdMappings('n', map(100000), map(200000));
    t.deepEqual(fs.readdirSync(dir).filter((n) => n.startsWith('diff')).sort(), ['diff', 'diff1', 'diff2']);
    // diff1 is the upper of the second shift: the layer's own file and every copy-up of that shift
    t.is(fs.statSync(path.join(dir, 'diff1', 'own')).uid, 200000);
    t.is(fs.statSync(path.join(dir, 'diff1', 'big')).uid, 200000);
    t.false(fs.existsSync(path.join(dir, 'diff2', 'own')));
    t.is(fs.statSync(path.join(dir, 'diff2', 'big')).uid, 100000);
    const ro = await d.mount('n', { readOnly: true });
    t.is(fs.statSync(path.join(ro, 'own')).uid, 200000);
    t.is(fs.statSync(path.join(ro, 'big')).uid, 200000);
    t.is(fs.readFileSync(path.join(ro, 'etc/os-release'), 'utf8'), 'ID=changed\n');
    await d.unmount('n');

    const link = fs.readFileSync(path.join(dir, 'link'), 'utf8');
    await d.remove('n');
    t.false(fs.existsSync(dir));
    t.false(fs.existsSync(path.join(d.home, 'l', link)));
    t.true(await d.exists('t'));
  });

  test(`layers on a shifted layer mount with metacopy where needed, and their Diff falls back to naive for metacopy and redirects (${kind})`, async (t) => {
    if (!canMount) return t.pass('needs root to mount');
    const env: Env = setup(t, kind);
    const { d } = env;
    await d.create('t', undefined);
    await apply(d, 't', tarOf(env, 't', makeRichTree));
    await d.createFromTemplate('n', 't');
    await d.updateIdMappings('n', undefined, map(100000));
    await d.create('c', 'n');
    const m = await d.mount('c');
    t.is(fs.readFileSync(path.join(m, 'sub/dir/nested.txt'), 'utf8'), 'nested\n', 'metacopy files of the shifted layer read below a child');
    fs.writeFileSync(path.join(m, 'new'), 'new');
    await d.unmount('c');
    // only a new file: the direct Diff reads c's diff
    t.deepEqual((await tarFacts(await diffTo(env, 'c', 'n', 'c1.tar'))).map((e) => e.name), ['new']);

    // a chmod (metadata-only copy-up) and a directory rename (a redirect) in the child; without
    // metacopy (and so without redirect_dir) the kernel refuses to rename a lower directory
    const m2 = await d.mount('c');
    fs.chmodSync(path.join(m2, 'b4096'), 0o600);
    let renamed = true;
    try {
      fs.renameSync(path.join(m2, 'sub'), path.join(m2, 'moved'));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EXDEV' || (await d.usingMetacopy())) throw err;
      renamed = false;
    }
    await d.unmount('c');
    if (await d.usingMetacopy()) t.truthy(native().lgetxattr(path.join(d.diffDir('c'), 'b4096'), METACOPY_XATTR), 'the chmod copied up metadata only');
    const entries = await tarFacts(await diffTo(env, 'c', 'n', 'c2.tar'));
    const byName = new Map(entries.map((e) => [e.name, e]));
    t.is(byName.get('b4096')?.size, 4096, 'the chmodded file carries its body');
    t.is(byName.get('b4096')?.mode, 0o600);
    t.is(byName.get('b4096')?.sha256, (await tarFacts(path.join(env.base, 't.tar'))).find((e) => e.name === 'b4096')?.sha256);
    const expected = [{ path: '/b4096', kind: 'Modify' }];
    if (renamed) {
      t.truthy(byName.get('moved/dir/nested.txt'), 'the renamed directory carries its contents');
      t.truthy(byName.get('.wh.sub'));
      expected.push({ path: '/moved/dir', kind: 'Add' }, { path: '/moved/dir/nested.txt', kind: 'Add' }, { path: '/sub', kind: 'Delete' });
    }
    t.deepEqual(
      (await d.changes('c', 'n')).filter((c) => c.path.startsWith('/moved/dir') || c.path === '/sub' || c.path === '/b4096'),
      expected,
    );
  });
}

test('a layer the store shifted is read by containers-storage configured with metacopy=on, diff1 included', async (t) => {
  if (!canMount) return t.pass('needs root to mount');
  const env = setup(t, 'ext4', 256 * MiB);
  const root = path.join(env.base, 'store');
  const run = path.join(env.base, 'store-run');
  const tar = tarOf(env, 'base', (dir) => {
    fs.mkdirSync(path.join(dir, 'etc'));
    fs.writeFileSync(path.join(dir, 'etc/hostname'), 'layers\n');
  });
  const s = await openStore({ root, runroot: run, driver: 'overlay' });
  const base = await s.createLayer({ names: ['base'] }, tar);
  // shifted, not idmapped (docs/images-and-containers.md, "Idmapped mounts")
  process.env._CONTAINERS_OVERLAY_DISABLE_IDMAP = 'yes';
  const shifted = await s.createLayer({ parent: base.id, ...map(100000) }).finally(() => delete process.env._CONTAINERS_OVERLAY_DISABLE_IDMAP);
  const dir = path.join(root, 'overlay', shifted.id);
  t.true(fs.existsSync(path.join(dir, 'diff1', 'etc/hostname')));
  const metacopy = fs.existsSync(path.join(run, 'overlay', `${METACOPY_FEATURE}-true`));
  const cs = (...args: string[]) =>
    execFileSync('containers-storage', ['-g', root, '-R', run, '-s', 'overlay', '--storage-opt', 'overlay.mountopt=metacopy=on', ...args], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    }).trim();
  t.teardown(() => void cs('shutdown'));
  const m = cs('mount', shifted.id);
  t.teardown(() => void cs('unmount', shifted.id));
  t.is(fs.readFileSync(path.join(m, 'etc/hostname'), 'utf8'), 'layers\n');
  t.is(fs.statSync(path.join(m, 'etc/hostname')).uid, 100000);
  t.is(fs.statSync(path.join(m, 'etc')).gid, 100000);
  if (metacopy) t.truthy(native().lgetxattr(path.join(dir, 'diff1', 'etc/hostname'), METACOPY_XATTR));
  cs('unmount', shifted.id);
});
