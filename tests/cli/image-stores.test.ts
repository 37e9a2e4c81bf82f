// Additional (read-only) image stores, `vfs.imagestore=PATH` and `overlay.imagestore=PATH`
// (docs/sharing.md, "Additional image stores"): their layers and images are listed, used as
// parents and as images of containers in the writable store, and never written; the peer, given
// the same option, sees the same.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { loopFs, tempDir } from '../fixtures/fs.ts';
import { gnuTar, runCli, tarNames } from '../fixtures/store.ts';
import { snapshotTree } from '../fixtures/tree.ts';

const names = (out: string) => [...out.matchAll(/^\tname: (.*)$/gm)].map((m) => m[1]).sort();

test('layers and images of an additional store: listed, used as parents and images, never written', async (t) => {
  const dir = tempDir(t);
  const ro = ['-g', path.join(dir, 'ro'), '-R', path.join(dir, 'ro-run'), '-s', 'vfs'];
  const rw = ['-g', path.join(dir, 'rw'), '-R', path.join(dir, 'rw-run'), '-s', 'vfs', '--storage-opt', `vfs.imagestore=${path.join(dir, 'ro')}`];
  const tree = path.join(dir, 'tree');
  fs.mkdirSync(tree);
  fs.writeFileSync(path.join(tree, 'hello'), 'from the shared store\n');
  const tar = gnuTar(tree, path.join(dir, 'l.tar'));
  const ok = async (args: string[]) => {
    const r = await runCli(args);
    t.is(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  const base = (await ok([...ro, 'import-layer', '-n', 'base', '-f', tar])).split('\n')[0]!;
  const image = (await ok([...ro, 'create-image', '-n', 'shared', base])).split('\n')[0]!;
  const roFiles = () => ['vfs-layers/layers.json', 'vfs-images/images.json'].map((f) => fs.readFileSync(path.join(dir, 'ro', f), 'utf8'));
  const before = roFiles();

  // listed, marked read-only
  await ok([...rw, 'create-layer', '-n', 'mine']);
  t.deepEqual(names(await ok([...rw, 'layers'])), ['base', 'mine']);
  t.deepEqual(names(await ok([...rw, 'images'])), ['shared']);
  t.regex(await ok([...rw, 'layer', 'base']), /^Read Only: true$/m);
  t.notRegex(await ok([...rw, 'layer', 'mine']), /Read Only/);
  t.regex(await ok([...rw, 'image', 'shared']), /^Read Only: true$/m);
  // the peer, with the same option, lists the same
  const peer = (args: string[]) => execFileSync('containers-storage', [...rw, ...args], { encoding: 'utf8' });
  t.deepEqual(names(peer(['layers'])), ['base', 'mine']);

  // a parent and an image for this store's layers and containers
  const child = (await ok([...rw, 'create-layer', '-n', 'child', 'base'])).split('\n')[0]!;
  const m = (await ok([...rw, 'mount', child])).trim();
  t.is(fs.readFileSync(path.join(m, 'hello'), 'utf8'), 'from the shared store\n');
  await ok([...rw, 'unmount', child]);
  const c = (await ok([...rw, 'create-container', '-n', 'ctr', 'shared'])).split('\n')[0]!;
  const cm = (await ok([...rw, 'mount', c])).trim();
  t.is(fs.readFileSync(path.join(cm, 'hello'), 'utf8'), 'from the shared store\n');
  await ok([...rw, 'unmount', c]);

  // never written: removal, data and metadata refused; names go to a record of this store
  for (const args of [['delete-layer', 'base'], ['delete-image', 'shared'], ['set-image-data', '-f', tar, 'shared', 'x'], ['set-metadata', '-m', 'x', 'base'], ['mount', 'base']]) {
    const r = await runCli([...rw, ...args]);
    t.is(r.code, 1, args.join(' '));
    t.regex(r.stderr, /additional \(read-only\) image store/, args.join(' '));
  }
  await ok([...rw, 'delete-container', c]);
  await ok([...rw, 'add-names', '-n', 'renamed', image]);
  t.regex(await ok([...rw, 'image', 'renamed']), new RegExp(`^ID: ${image}$`, 'm'));
  await ok([...rw, 'delete-image', 'renamed']);
  t.deepEqual(names(await ok([...rw, 'images'])), ['shared'], 'deleting the copy leaves the shared image');
  t.deepEqual(roFiles(), before, "the additional store's records are as they were");
  t.true(fs.existsSync(path.join(dir, 'ro', 'vfs', 'dir', base, 'hello')));
});

test('overlay: layers of a read-only mounted additional store are parents, lowers and images; the peer mounts our child of them', async (t) => {
  const base = loopFs(t, 'ext4', 256 << 20);
  const roRoot = path.join(base, 'ro');
  const ro = ['-g', roRoot, '-R', path.join(base, 'ro-run'), '-s', 'overlay'];
  const rw = ['-g', path.join(base, 'rw'), '-R', path.join(base, 'rw-run'), '-s', 'overlay', '--storage-opt', `overlay.imagestore=${roRoot}`];
  const ok = async (args: string[]) => {
    const r = await runCli(args);
    t.is(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  const peer = (args: string[]) => execFileSync('containers-storage', [...rw, ...args], { encoding: 'utf8' });
  const tarOf = (name: string, fill: (dir: string) => void) => {
    const dir = path.join(base, name);
    fs.mkdirSync(dir);
    fill(dir);
    return gnuTar(dir, path.join(base, `${name}.tar`));
  };
  // the shared store: a base layer by us, a child by the peer (a whiteout and a new file), an image
  const baseTar = tarOf('base', (d) => {
    fs.writeFileSync(path.join(d, 'hello'), 'from the shared store\n');
    fs.writeFileSync(path.join(d, 'gone'), 'deleted above\n');
  });
  const midTar = tarOf('mid', (d) => {
    fs.writeFileSync(path.join(d, '.wh.gone'), '');
    fs.writeFileSync(path.join(d, 'mid'), 'the peer made this layer\n');
    fs.chownSync(path.join(d, 'mid'), 7, 7);
  });
  const lower = (await ok([...ro, 'import-layer', '-n', 'base', '-f', baseTar])).split('\n')[0]!;
  const mid = execFileSync('containers-storage', [...ro, 'import-layer', '-n', 'mid', '-f', midTar, lower], { encoding: 'utf8' }).split('\n')[0]!;
  const image = (await ok([...ro, 'create-image', '-n', 'shared', mid])).split('\n')[0]!;
  await ok([...ro, 'shutdown']);

  // read only from here on: a write into it fails with EROFS instead of passing unseen
  const before = snapshotTree(roRoot);
  execFileSync('mount', ['--bind', roRoot, roRoot]);
  try {
    execFileSync('mount', ['-o', 'remount,bind,ro', roRoot]);
    const expectTree = (dir: string) => {
      t.is(fs.readFileSync(path.join(dir, 'hello'), 'utf8'), 'from the shared store\n');
      t.is(fs.readFileSync(path.join(dir, 'mid'), 'utf8'), 'the peer made this layer\n');
      t.false(fs.existsSync(path.join(dir, 'gone')), 'the whiteout of the shared child hides the file');
    };

    // a child of the shared layer: its lowers are the other store's l/ links
    const child = (await ok([...rw, 'create-layer', '-n', 'child', 'mid'])).split('\n')[0]!;
    const lowerFile = fs.readFileSync(path.join(base, 'rw', 'overlay', child, 'lower'), 'utf8');
    const roLink = (id: string) => fs.readFileSync(path.join(roRoot, 'overlay', id, 'link'), 'utf8').trim();
    t.is(lowerFile, `l/${roLink(mid)}:l/${roLink(lower)}`, "the lower file names the shared layers by the other home's links, as the peer writes it");
    const m = (await ok([...rw, 'mount', child])).trim();
    expectTree(m);
    fs.writeFileSync(path.join(m, 'own'), 'written in our store\n');
    await ok([...rw, 'unmount', child]);
    // its diff holds only what it added; the peer mounts it from our records and sees the same
    const diff = path.join(base, 'child-diff.tar');
    await ok([...rw, 'diff', '-f', diff, child]);
    t.deepEqual(tarNames(diff), ['own']);
    const pm = peer(['mount', child]).trim();
    expectTree(pm);
    t.is(fs.readFileSync(path.join(pm, 'own'), 'utf8'), 'written in our store\n');
    peer(['unmount', child]);

    // containers on the shared image, one with other id mappings (a shifted copy of the top layer)
    const c = (await ok([...rw, 'create-container', 'shared'])).split('\n')[0]!;
    expectTree((await ok([...rw, 'mount', c])).trim());
    await ok([...rw, 'unmount', c]);
    const mapped = (await ok([...rw, 'create-container', '--uidmap', '0:100000:65536', '--gidmap', '0:100000:65536', 'shared'])).split('\n')[0]!;
    const mm = (await ok([...rw, 'mount', mapped])).trim();
    expectTree(mm);
    t.is(fs.statSync(path.join(mm, 'mid')).uid, 100007, "the copy's owners are shifted");
    t.is(fs.statSync(path.join(mm, 'hello')).uid, 100000);
    await ok([...rw, 'unmount', mapped]);
    // the read-only image gets no mapped top layer: the container's own layer, in our store, is the shifted one
    t.deepEqual((await ok([...rw, 'image', image])).match(/^Top Layer: .*$/gm), [`Top Layer: ${mid}`]);
    const mappedLayer = /^Layer: (.*)$/m.exec(await ok([...rw, 'container', mapped]))![1];
    t.regex(await ok([...rw, 'layer', mappedLayer]), new RegExp(`^Parent: ${mid}$`, 'm'));
    t.true(fs.existsSync(path.join(base, 'rw', 'overlay', mappedLayer, 'diff1')), 'shifted in the writable store');

    // a shared layer is not mounted (its merged and work dirs are the other store's)
    const r = await runCli([...rw, 'mount', lower]);
    t.is(r.code, 1);
    t.regex(r.stderr, /additional \(read-only\) image store/);
    for (const id of [c, mapped]) await ok([...rw, 'delete-container', id]);
    await ok([...rw, 'delete-layer', child]);
    t.deepEqual(names(await ok([...rw, 'images'])), ['shared']);
    t.regex(await ok([...rw, 'image', image]), /^Read Only: true$/m);
  } finally {
    execFileSync('umount', [roRoot]);
  }
  t.deepEqual(snapshotTree(roRoot), before, 'nothing in the additional store changed');
});
