// The peer's remaining commands, on one store shared with the reference containers-storage -s
// vfs: data items of layers and containers (each tool reads what the other wrote, from the same
// files), `mounted`, `layer-parent-owners` and `container-parent-owners` (the same output for
// the same mounts), and `delete` (a container, an image or a layer without the use checks, but
// never a layer that other layers' files stand on: overlay keeps a template under its copy).
import test from 'ava';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { isLayersError } from '../../lib/errors.ts';
import { runCli, tempStore } from '../fixtures/store.ts';
import { makeRichTree, snapshotTree, type NodeFacts } from '../fixtures/tree.ts';
import { driverStore, imageTars, mapping, mountsBelow, threeLayers, useMappedTopLayers } from '../store/fixtures.ts';

// these tests are about mapped top layers: idmapped mounts (tests/store/idmapped.test.ts) off
useMappedTopLayers();

const MAP = ['--uidmap', '0:100000:65536', '--gidmap', '0:100000:65536'];
const BIG_MAP = ['--uidmap', '0:10000000:4000000', '--gidmap', '0:10000000:4000000'];
type NodeFactsByPath = Record<string, NodeFacts>;
const sha256 = (b: Buffer | string) => 'sha256:' + createHash('sha256').update(b).digest('hex');

test('data items of layers and containers: each tool reads what the other wrote, from the same files', async (t) => {
  const s = tempStore(t);
  const ok = async (args: string[], stdinFile?: string) => {
    const r = await s.cli(args, { stdinFile });
    t.is(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  const layer = (await ok(['create-layer', '-n', 'base'])).split('\n')[0];
  await ok(['create-image', '-n', 'img', 'base']);
  await ok(['create-container', '-n', 'c1', 'img']);
  const blob = path.join(s.dir, 'blob');
  const bytes = Buffer.from([0x00, 0xff, 0x80, 0x0a, 0x41]);
  fs.writeFileSync(blob, bytes);

  // ours -> the peer: a plain key, and one the peer stores base64-named (not [a-z0-9.])
  await ok(['set-layer-data', '-f', blob, 'base', 'note']);
  await ok(['set-layer-data', 'base', 'Odd/Key'], blob);
  await ok(['set-container-data', '-f', blob, 'c1', 'config']);
  t.is(s.peer(['list-layer-data', 'base']).stdout, 'note\nOdd/Key\n');
  t.is(s.peer(['list-layer-data', '--json', 'base']).stdout.trim(), (await ok(['list-layer-data', '--json', 'base'])).trim());
  const got = path.join(s.dir, 'got');
  for (const key of ['note', 'Odd/Key']) {
    t.is(s.peer(['get-layer-data', '-f', got, layer, key]).code, 0);
    t.deepEqual(fs.readFileSync(got), bytes, `the peer reads ${key}`);
  }
  t.true(fs.existsSync(path.join(s.root, 'vfs-layers', layer, '=' + Buffer.from('Odd/Key').toString('base64'))));
  t.is(s.peer(['list-container-data', 'c1']).stdout, 'config\n');
  t.is(s.peer(['get-container-data-size', 'c1', 'config']).stdout, '5\n');
  t.is(s.peer(['get-container-data-digest', 'c1', 'config']).stdout, `${sha256(bytes)}\n`);
  t.is(await ok(['get-container-data-digest', 'c1', 'config']), `${sha256(bytes)}\n`);
  t.is(await ok(['get-container-data-size', 'c1', 'config']), '5\n');

  // the peer -> ours
  fs.writeFileSync(blob, 'from the peer\n');
  t.is(s.peer(['set-layer-data', '-f', blob, layer, 'peer.note']).code, 0);
  t.is(s.peer(['set-container-data', '-f', blob, 'c1', 'peer.config']).code, 0);
  t.is(await ok(['list-layer-data', 'base']), 'note\nOdd/Key\npeer.note\n');
  t.is(await ok(['get-layer-data', 'base', 'peer.note']), 'from the peer\n');
  const out = path.join(s.dir, 'out');
  await ok(['get-container-data', '-f', out, 'c1', 'peer.config']);
  t.is(fs.readFileSync(out, 'utf8'), 'from the peer\n');
  t.is(await ok(['get-container-data-digest', 'c1', 'peer.config']), `${sha256('from the peer\n')}\n`);
  const store = await s.open();
  t.deepEqual((await store.layer('base'))['big-data-names'], ['note', 'Odd/Key', 'peer.note']);

  // errors name the item; a layer has no size or digest commands, as the peer has none
  const missing = await s.cli(['get-layer-data', 'base', 'nope']);
  t.is(missing.code, 1);
  t.regex(missing.stderr, /data item "nope" of layer [0-9a-f]{64} does not exist/);
  t.is((await s.cli(['get-layer-data-size', 'base', 'note'])).code, 2);

  // the data goes with the layer and the container
  await ok(['delete-container', 'c1']);
  await ok(['delete-image', 'img']);
  t.false(fs.existsSync(path.join(s.root, 'vfs-layers', layer)), 'the layer and its data are gone');
  const containersDir = path.join(s.root, 'vfs-containers');
  t.deepEqual(fs.readdirSync(containersDir).filter((n) => fs.statSync(path.join(containersDir, n)).isDirectory()), [], 'no container directory is left');
});

test('mounted and the parent-owners commands print what the peer prints for the same mounts', async (t) => {
  const s = tempStore(t);
  const ok = async (args: string[]) => {
    const r = await s.cli(args);
    t.is(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  const plain = (await ok(['create-layer', '-n', 'plain'])).split('\n')[0];
  const mapped = (await ok(['create-layer', '-n', 'mapped', ...MAP])).split('\n')[0];
  await ok(['create-image', '-n', 'img', 'mapped']);
  const c1 = (await ok(['create-container', '-n', 'c1', ...MAP, 'img'])).split('\n')[0];
  // the layers' mount points are below <dir>/root/vfs/dir: give directories above them ids the
  // mappings hold and ids they do not (not root/vfs: the peer chowns its driver home when it opens)
  fs.chownSync(s.dir, 4242, 100007);
  fs.chownSync(path.join(s.root, 'vfs', 'dir'), 100001, 4343);

  t.is(await ok(['mounted', 'plain', mapped, 'c1']), '', 'nothing is mounted');
  await ok(['mount', mapped]);
  await ok(['mount', 'c1']);
  const m = await ok(['mounted', 'plain', mapped, 'c1']);
  t.is(m, `${mapped} mounted\nc1 mounted\n`);
  t.is(s.peer(['mounted', 'plain', mapped, 'c1']).stdout, m, 'the peer sees our mounts the same way');
  t.is(await ok(['mounted', '--json', mapped]), JSON.stringify([{ id: mapped, error: '' }]) + '\n');
  const unknown = await s.cli(['mounted', 'nope', 'plain']);
  t.is(unknown.code, 1);
  t.regex(unknown.stderr, /mounted: nope: layer or container "nope" not known/);

  // ids 0 (/tmp and the dirs above the store) and 4242/4343 are outside 0:100000:65536
  const layerOwners = await ok(['layer-parent-owners', mapped]);
  t.is(layerOwners, `ID: ${mapped}\nUIDs: [0 4242]\nGIDs: [0 4343]\n`);
  t.is(s.peer(['layer-parent-owners', mapped]).stdout, layerOwners);
  t.is(await ok(['layer-parent-owners', '--json', mapped]), s.peer(['layer-parent-owners', '--json', mapped]).stdout);
  const containerOwners = await ok(['container-parent-owners', 'c1']);
  t.is(containerOwners, `ID: ${c1}\nUIDs: [0 4242]\nGIDs: [0 4343]\n`);
  t.is(s.peer(['container-parent-owners', 'c1']).stdout, containerOwners);
  t.is(await ok(['container-parent-owners', '--json', 'c1']), s.peer(['container-parent-owners', '--json', 'c1']).stdout);
  // a layer without mappings has nothing unmapped above it, mounted or not
  t.is(await ok(['layer-parent-owners', 'plain']), `ID: ${plain}\n`);
  // a mapped layer that is not mounted has no mount point to look above
  await ok(['unmount', mapped]);
  const notMounted = await s.cli(['layer-parent-owners', mapped]);
  t.is(notMounted.code, 1);
  t.regex(notMounted.stderr, /is not mounted/);
  t.is(s.peer(['layer-parent-owners', mapped]).code, 1, 'the peer refuses too');
  await ok(['unmount', 'c1']);
});

test('delete: a container with its layer, an image without its layers, a mounted or used layer with what needed it', async (t) => {
  const s = tempStore(t);
  const store = await s.open();
  const [base, mid, top] = await threeLayers(store, imageTars(s.dir));
  await store.createImage({ layer: top, names: ['img'] });
  await store.createImage({ layer: top, names: ['img2'] });
  const c = await store.createContainer({ image: 'img', names: ['c1'] });
  await store.mount('c1');
  await store.mount('c1');

  // a container goes with its read-write layer, mounted twice or not
  let r = await s.cli(['delete', '--json', 'c1']);
  t.is(r.code, 0, r.stderr);
  t.deepEqual(JSON.parse(r.stdout), { c1: '' });
  t.deepEqual(await store.containers(), []);
  t.false(await store.exists(c.layer));
  t.deepEqual(mountsBelow(s.dir), []);

  // an image's record goes; its layers stay, as the peer leaves them
  r = await s.cli(['delete', 'img2']);
  t.is(r.code, 0, r.stderr);
  t.deepEqual((await store.images()).map((i) => i.names), [['img']]);
  t.deepEqual((await store.layers()).map((l) => l.id), [base, mid, top]);

  // a layer with a child is refused: the child's files would be lost with it
  r = await s.cli(['delete', mid]);
  t.is(r.code, 1);
  t.regex(r.stderr, new RegExp(`layer ${mid} holds files of layers ${top}`));
  t.true(await store.exists(mid));

  // the top layer, mounted and used by an image: unmounted and removed, and the image with it
  await store.mount(top);
  r = await s.cli(['delete', top]);
  t.is(r.code, 0, r.stderr);
  t.false(await store.exists(top));
  t.deepEqual(await store.images(), [], 'an image without its top layer goes with it');
  t.deepEqual(await store.mounted(), []);
  t.deepEqual(mountsBelow(s.dir), []);
  t.deepEqual((await store.layers()).map((l) => l.id), [base, mid]);

  r = await s.cli(['delete', 'nope', mid]);
  t.is(r.code, 1);
  t.regex(r.stderr, /delete: nope: container, image or layer "nope" not known/);
  t.false(await store.exists(mid), 'the other argument still went');
});

test('overlay: delete refuses the top layer while a mapped copy stands on it, and takes the copy', async (t) => {
  const s = driverStore(t, 'overlay');
  const store = await s.open();
  const [, , top] = await threeLayers(store, imageTars(s.dir));
  await store.createImage({ layer: top, names: ['img'] });
  await store.createContainer({ image: 'img', names: ['c1'], ...mapping(100000) });
  const [mapped] = (await store.image('img'))['mapped-layers']!;
  await store.deleteContainer('c1');
  const err = await t.throwsAsync(store.delete(top));
  t.true(isLayersError(err, 'ELAYERHASCHILDREN'), err?.message);
  t.regex(err!.message, new RegExp(`holds files of layers ${mapped}`));
  t.is(await store.delete(mapped), 'layer');
  t.deepEqual((await store.image('img'))['mapped-layers'] ?? [], [], 'the image forgets its mapped layer');
  t.is(await store.delete(top), 'layer');
  t.deepEqual(await store.images(), []);
  t.deepEqual(fs.readdirSync(path.join(s.root, 'overlay', 'l')).length, 2, 'only the l/ links of base and mid are left');
});

test('copy: a rich tree into a mapped layer and on into another layer gives the trees the peer gives; --chown maps', async (t) => {
  const s = tempStore(t);
  const src = path.join(s.dir, 'src');
  fs.mkdirSync(src);
  makeRichTree(src); // every entry type, hardlinks, xattrs, ns times, and ids up to 3000000
  const one = path.join(s.dir, 'one');
  fs.writeFileSync(one, 'one\n');
  fs.chownSync(one, 3, 4);
  const layerOf = (stdout: string) => stdout.split('\n')[0];
  const ours = async (args: string[]) => {
    const r = await s.cli(args);
    t.is(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  const peer = (args: string[]) => {
    const r = s.peer(args);
    t.is(r.code, 0, `peer ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  const trees: Record<string, NodeFactsByPath> = {};
  for (const [who, run] of [['ours', ours], ['peer', async (a: string[]) => peer(a)]] as const) {
    const mapped = layerOf(await run(['create-layer', ...BIG_MAP]));
    const plain = layerOf(await run(['create-layer']));
    await run(['copy', src, `${mapped}:/dst/inner`]);
    await run(['copy', '--chown', '5:6', one, `${mapped}:/renamed`]);
    await run(['copy', `${mapped}:/dst/inner`, `${plain}:/back`]);
    trees[`${who} mapped`] = snapshotTree(path.join(s.root, 'vfs/dir', mapped), { dirTimes: false });
    trees[`${who} plain`] = snapshotTree(path.join(s.root, 'vfs/dir', plain), { dirTimes: false });
    t.is(await ours(['mounted', mapped, plain]), '', `${who}: the copy let its mounts go`);
  }
  // the made directory dst/inner is stamped with the time of the copy by both tools
  for (const tree of Object.values(trees)) for (const d of ['dst', 'dst/inner']) if (tree[d]) tree[d].mtimeNs = 'made';
  t.deepEqual(trees['ours mapped'], trees['peer mapped']);
  t.deepEqual(trees['ours plain'], trees['peer plain']);
  const inner = trees['ours mapped'];
  t.is(inner['renamed'].uid, 10000005, '--chown 5:6 is mapped into the layer');
  t.is(inner['renamed'].gid, 10000006);
  t.is(inner['dst/inner'].uid, 10000000, 'a made directory belongs to the layer root');
  const srcTree = snapshotTree(src, { dirTimes: false });
  // mapped there and back: the plain layer holds the source tree as it was
  t.deepEqual(Object.keys(trees['ours plain']).filter((k) => k.startsWith('back/')).map((k) => k.slice(5)).sort(), Object.keys(srcTree).sort());
  for (const [k, v] of Object.entries(srcTree)) t.deepEqual(trees['ours plain'][`back/${k}`], v, k);
});

test('copy stays inside the layers: a source symlink resolves in its layer, a target symlink or .. cannot lead out', async (t) => {
  const s = tempStore(t);
  const store = await s.open();
  const layer = await store.createLayer({ names: ['l'] });
  const dir = await store.mount('l');
  fs.mkdirSync(path.join(dir, 'etc'));
  fs.writeFileSync(path.join(dir, 'etc/hostname'), 'the layer\n');
  fs.symlinkSync('/etc', path.join(dir, 'abs-etc')); // absolute: means the layer's /etc, not the host's
  const outside = path.join(s.dir, 'outside');
  fs.mkdirSync(outside);
  fs.symlinkSync(outside, path.join(dir, 'out'));
  await store.unmount('l');

  let r = await s.cli(['copy', 'l:/abs-etc/hostname', 'l:/copied']);
  t.is(r.code, 0, r.stderr);
  t.is(fs.readFileSync(path.join(dir, 'copied'), 'utf8'), 'the layer\n', 'read from the layer, not the host');
  r = await s.cli(['copy', path.join(s.dir, 'outside'), 'l:/../../../escaped']);
  t.is(r.code, 0, r.stderr);
  t.true(fs.statSync(path.join(dir, 'escaped')).isDirectory(), '.. stops at the layer root');
  const file = path.join(s.dir, 'f');
  fs.writeFileSync(file, 'x');
  r = await s.cli(['copy', file, 'l:/out/f']);
  t.is(r.code, 1);
  t.regex(r.stderr, new RegExp(`copy: copying ${file} to l:/out/f: .*out/f`));
  t.deepEqual(fs.readdirSync(outside), [], 'nothing was written through the symlink');
  t.deepEqual(await store.mounted(), [], 'the failed copy let its mount go');
  r = await s.cli(['copy', '--chown', 'x:1', file, 'l:/g']);
  t.is(r.code, 2);
  t.regex(r.stderr, /--chown x:1/);
  r = await s.cli(['copy', file, 'nope:/g']);
  t.is(r.code, 1);
  t.regex(r.stderr, /layer "nope": layer not known/);
  t.is((await store.layer(layer.id)).id, layer.id);
  // a host path is relative to the working directory, not to /
  r = await runCli(['-g', s.root, '-R', s.runroot, '-s', 'vfs', 'copy', 'f', 'l:/relative'], { cwd: s.dir });
  t.is(r.code, 0, r.stderr);
  t.is(fs.readFileSync(path.join(dir, 'relative'), 'utf8'), 'x');
});
