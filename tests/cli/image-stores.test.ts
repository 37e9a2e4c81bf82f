// Additional (read-only) image stores, `vfs.imagestore=PATH` (docs/sharing.md, "Additional image
// stores"): their layers and images are listed, used as parents and as images of containers in
// the writable store, and never written; the peer, given the same option, sees the same.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { tempDir } from '../fixtures/fs.ts';
import { gnuTar, runCli } from '../fixtures/store.ts';

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
