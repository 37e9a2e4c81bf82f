// The layer store through the public API: records as containers/storage writes them (checked
// against the peer both ways), atomic writes, crash recovery, mount counts, and the errors.
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { writeJsonAtomic, readJsonFile } from '../../lib/atomic.ts';
import { isLayersError } from '../../lib/index.ts';
import { normalizeRecord } from '../../lib/store/records.ts';
import { tempDir } from '../fixtures/fs.ts';
import { gnuTar, makeTree, runCli, sha256File, tempStore } from '../fixtures/store.ts';

const code = (c: string) => ({ is: (e: unknown) => isLayersError(e, c as never) });

test('writeJsonAtomic replaces the file whole and leaves no temp file; the event loop runs while it syncs', async (t) => {
  const dir = tempDir(t);
  const f = path.join(dir, 'x.json');
  t.deepEqual(readJsonFile(f, []), []);
  await writeJsonAtomic(f, [{ a: 1 }]);
  const value = [{ a: 2 }];
  let turned = false;
  setImmediate(() => (turned = true));
  const writing = writeJsonAtomic(f, value);
  value[0]!.a = 3; // the text was made at the call
  await writing;
  t.true(turned, 'a macrotask ran before the write ended (a synchronous write would block it)');
  t.deepEqual(readJsonFile(f, []), [{ a: 2 }]);
  t.deepEqual(fs.readdirSync(dir), ['x.json']);
  t.is(fs.statSync(f).mode & 0o777, 0o600);
});

test('records keep the peer field order, drop empty fields and keep unknown ones', (t) => {
  const r = normalizeRecord({
    id: 'x',
    gidmap: [],
    'toc-digest': 'sha256:0',
    names: [],
    created: '2024-01-01T00:00:00Z',
    flags: { incomplete: false },
    'big-data-names': ['a'],
    compression: 0,
    parent: 'p',
  });
  t.deepEqual(Object.keys(r), ['id', 'parent', 'created', 'toc-digest', 'big-data-names']);
});

test('a store the peer made reads back with every field, and our writes keep its records', async (t) => {
  const s = tempStore(t);
  const tree = path.join(s.dir, 'tree');
  fs.mkdirSync(tree);
  makeTree(tree);
  const tar = gnuTar(tree, path.join(s.dir, 'l.tar.gz'), true);
  t.is(s.peer(['import-layer', '-n', 'base', '-f', tar]).code, 0);
  t.is(s.peer(['create-layer', '-n', 'child', '--uidmap', '0:1000:65536', '--gidmap', '0:1000:65536', 'base']).code, 0);
  const peerRecords = s.records();
  const store = await s.open();
  const ours = await store.layers();
  t.deepEqual(ours, peerRecords as never);
  t.is(ours[0].compression, 2);
  t.deepEqual(ours[1].uidmap, [{ container_id: 0, host_id: 1000, size: 65536 }]);
  await store.setMetadata('child', 'md');
  const after = s.records();
  t.deepEqual(after[0], peerRecords[0]);
  t.deepEqual(after[1], { ...peerRecords[1], metadata: 'md' });
  t.is(s.peer(['metadata', '-q', 'child']).stdout, 'md\n');
  // the peer's tar-split goes with the layer
  await store.deleteLayer('child');
  const base = ours[0].id;
  t.true(fs.existsSync(path.join(s.root, 'vfs-layers', `${base}.tar-split.gz`)));
  await store.deleteLayer('base');
  t.false(fs.existsSync(path.join(s.root, 'vfs-layers', `${base}.tar-split.gz`)));
  t.deepEqual(fs.readdirSync(path.join(s.root, 'vfs', 'dir')), []);
});

test('layers we make are listed and read by the peer with the same fields', async (t) => {
  const s = tempStore(t);
  const tree = path.join(s.dir, 'tree');
  fs.mkdirSync(tree);
  makeTree(tree);
  const tar = gnuTar(tree, path.join(s.dir, 'l.tar'));
  const store = await s.open();
  const base = await store.createLayer({ names: ['base'], metadata: 'm' }, tar);
  const child = await store.createLayer({ parent: 'base', names: ['child'], uidmap: [{ container_id: 0, host_id: 5000, size: 70000 }], gidmap: [{ container_id: 0, host_id: 5000, size: 70000 }] });
  const listed = s.peer(['layers']);
  t.is(listed.code, 0);
  t.is(listed.stdout, `${base.id}\n\tname: base\n${child.id}\n\tname: child\n`);
  const peerView = JSON.parse(s.peer(['layer', '-j', base.id, child.id]).stdout);
  t.deepEqual(peerView, [base, child]);
  t.is(base['diff-digest'], await sha256File(tar));
  t.is(base['diff-size'], fs.statSync(tar).size);
  t.is(base['compressed-diff-digest'], base['diff-digest']);
  t.deepEqual(base.uidset, [0]);
  // the peer can diff our layers, and reads the child's shifted owners back as container ids
  t.is(s.peer(['diffsize', 'child']).stdout, '0\n');
  t.is(fs.statSync(path.join(s.root, 'vfs', 'dir', child.id, 'etc', 'hostname')).uid, 5000);
});

test('gzip input is inflated and recorded as the peer records it; bad zstd data fails and leaves nothing', async (t) => {
  const s = tempStore(t);
  const tree = path.join(s.dir, 'tree');
  fs.mkdirSync(tree);
  makeTree(tree);
  const tar = gnuTar(tree, path.join(s.dir, 'l.tar'));
  const gz = gnuTar(tree, path.join(s.dir, 'l.tar.gz'), true);
  const store = await s.open();
  const l = await store.createLayer({}, gz);
  t.is(l.compression, 2);
  t.is(l['compressed-diff-digest'], await sha256File(gz));
  t.is(l['compressed-size'], fs.statSync(gz).size);
  t.is(l['diff-size'], fs.statSync(tar).size);
  const zst = path.join(s.dir, 'l.tar.zst');
  fs.writeFileSync(zst, Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0, 0]));
  const err = await t.throwsAsync(store.createLayer({ names: ['z'] }, zst));
  t.true(code('ECOMPRESSION').is(err));
  t.regex(err!.message, /l\.tar\.zst: bad zstd data: unexpected EOF/);
  t.false(await store.exists('z'));
  t.deepEqual(fs.readdirSync(path.join(s.root, 'tmp')), []);
});

test('an incomplete layer (a writer died) is removed when the store is opened, others stay', async (t) => {
  const s = tempStore(t);
  const store = await s.open();
  const keep = await store.createLayer({ names: ['keep'] });
  // what a writer killed between saving the record and finishing leaves behind
  const recs = s.records();
  recs.push({ id: 'dead', names: ['dead'], created: '2024-01-01T00:00:00Z', flags: { incomplete: true } });
  await writeJsonAtomic(path.join(s.root, 'vfs-layers', 'layers.json'), recs);
  fs.mkdirSync(path.join(s.root, 'vfs', 'dir', 'dead', 'sub'), { recursive: true });
  fs.chmodSync(path.join(s.root, 'vfs', 'dir', 'dead'), 0o555);
  const again = await s.open();
  t.deepEqual((await again.layers()).map((l) => l.id), [keep.id]);
  t.deepEqual(s.records().map((r) => r.id), [keep.id]);
  t.false(fs.existsSync(path.join(s.root, 'vfs', 'dir', 'dead')));
});

test('mount counts live in mountpoints.json across processes; the last unmount ends it', async (t) => {
  const s = tempStore(t);
  const store = await s.open();
  const l = await store.createLayer({ names: ['m'] });
  const dir = path.join(s.root, 'vfs', 'dir', l.id);
  t.is((await s.cli(['mount', 'm'])).stdout, `${dir}\n`);
  t.is((await s.cli(['mount', 'm'])).stdout, `${dir}\n`);
  const file = path.join(s.runroot, 'vfs-layers', 'mountpoints.json');
  t.deepEqual(JSON.parse(fs.readFileSync(file, 'utf8')), [{ id: l.id, path: dir, count: 2 }]);
  t.is(await store.mountCount('m'), 2);
  const err = await t.throwsAsync(store.deleteLayer('m'));
  t.true(code('ELAYERINUSE').is(err));
  t.is(await store.unmount('m'), 1);
  t.is((await s.cli(['unmount', 'm'])).stdout, 'm mountpoint unmounted\n');
  t.deepEqual(JSON.parse(fs.readFileSync(file, 'utf8')), []);
  await store.deleteLayer('m');
  t.false(await store.exists('m'));
});

test('errors carry stable codes and name the layer', async (t) => {
  const s = tempStore(t);
  const store = await s.open();
  const a = await store.createLayer({ id: 'aaa', names: ['a'] });
  await store.createLayer({ parent: 'a', names: ['b'] });
  const cases: Array<[Promise<unknown>, string, RegExp]> = [
    [store.layer('nope'), 'ELAYERUNKNOWN', /layer "nope": layer not known/],
    [store.createLayer({ parent: 'nope' }), 'ELAYERUNKNOWN', /parent layer "nope"/],
    [store.createLayer({ names: ['a'] }), 'ENAMEINUSE', /name "a" is already in use by layer aaa/],
    [store.createLayer({ id: 'aaa' }), 'EIDINUSE', /layer id aaa is already in use/],
    [store.createLayer({ id: '../x' }), 'EUSAGE', /bad layer id/],
    [store.deleteLayer('a'), 'ELAYERHASCHILDREN', /layer aaa has child layers/],
    [store.applyDiff('a', '/nonexistent.tar'), 'ELAYERHASCHILDREN', /aaa/],
    [store.createLayer({}, '/nonexistent.tar'), 'EINPUT', /\/nonexistent\.tar/],
  ];
  for (const [p, c, re] of cases) {
    const err = await t.throwsAsync(p);
    t.true(code(c).is(err), `${c}: ${err?.message}`);
    t.regex(err!.message, re);
  }
  t.is((await store.layers()).length, 2);
  t.is((await store.layer(a.id.slice(0, 2))).id, 'aaa');
});

test('a taken id or name is refused with one code each, whatever the kind, and nothing is made', async (t) => {
  const s = tempStore(t);
  const store = await s.open();
  await store.createLayer({ id: 'l1', names: ['ln'] });
  await store.createImage({ id: 'i1', layer: 'l1', names: ['in'] });
  await store.createContainer({ id: 'c1', image: 'i1', names: ['cn'] });
  const cases: Array<[Promise<unknown>, string, string]> = [
    [store.createLayer({ id: 'l1' }), 'EIDINUSE', 'layer id l1 is already in use'],
    [store.createImage({ id: 'i1', layer: 'l1' }), 'EIDINUSE', 'image id i1 is already in use'],
    [store.createContainer({ id: 'c1', image: 'i1' }), 'EIDINUSE', 'container id c1 is already in use'],
    [store.createLayer({ names: ['x', 'ln'] }), 'ENAMEINUSE', 'name "ln" is already in use by layer l1'],
    [store.createImage({ layer: 'l1', names: ['in'] }), 'ENAMEINUSE', 'name "in" is already in use by image i1'],
    [store.createContainer({ image: 'i1', names: ['cn'] }), 'ENAMEINUSE', 'name "cn" is already in use by container c1'],
    [store.createImage({ id: 'bad/id', layer: 'l1' }), 'EUSAGE', `bad image id "bad/id": use letters, digits, '.', '_' and '-'`],
  ];
  for (const [p, c, message] of cases) {
    const err = await t.throwsAsync(p);
    t.true(code(c).is(err), `${c}: ${err?.message}`);
    t.is(err!.message, message);
  }
  // a name is per kind: a layer's name is free for an image
  t.deepEqual((await store.createImage({ layer: 'l1', names: ['ln'] })).names, ['ln']);
  // the refused ones left no record and no rw layer behind
  t.deepEqual((await store.layers()).map((l) => l.id).sort(), ['l1', (await store.container('c1')).layer].sort());
  t.is((await store.containers()).length, 1);
  t.is((await store.images()).length, 2);
});

test('names: add-names moves a name from another layer, as the peer does', async (t) => {
  const s = tempStore(t);
  const store = await s.open();
  await store.createLayer({ names: ['x'] });
  const y = await store.createLayer({ names: ['y'] });
  t.deepEqual(await store.addNames('y', ['x', 'z']), ['y', 'x', 'z']);
  t.is((await store.layer('x')).id, y.id);
  t.deepEqual(await store.setNames('y', ['w']), ['w']);
  t.false(await store.exists('x'));
});

test('a child copies its parent, its diff applies onto the parent to give the same tree', async (t) => {
  const s = tempStore(t);
  const tree = path.join(s.dir, 'tree');
  fs.mkdirSync(tree);
  makeTree(tree);
  const store = await s.open();
  await store.createLayer({ names: ['base'] }, gnuTar(tree, path.join(s.dir, 'l.tar')));
  await store.createLayer({ parent: 'base', names: ['child'] });
  const dir = await store.mount('child');
  fs.writeFileSync(path.join(dir, 'etc/hostname'), 'changed\n');
  fs.rmSync(path.join(dir, 'bin/alias'));
  fs.writeFileSync(path.join(dir, 'new'), 'new');
  await store.unmount('child');
  t.deepEqual(
    (await store.changes('child')).map((c) => `${c.kind} ${c.path}`),
    ['Modify /bin', 'Delete /bin/alias', 'Modify /etc', 'Modify /etc/hostname', 'Add /new'],
  );
  t.is(await store.diffSize('child'), 'changed\n'.length + 3);
  const diffTar = path.join(s.dir, 'diff.tar');
  const fd = fs.openSync(diffTar, 'w');
  await store.diff('child', fd);
  fs.closeSync(fd);
  const copy = await store.createLayer({ parent: 'base', names: ['copy'] }, diffTar);
  t.deepEqual(await store.changes('copy', 'child'), []);
  t.is(copy['diff-digest'], await sha256File(diffTar));
  // the reference layer replaces the parent
  t.deepEqual(await store.changes('child', 'copy'), []);
});

test('status names the places and the backing filesystem', async (t) => {
  const s = tempStore(t);
  const status = await (await s.open()).status();
  t.deepEqual(status.slice(0, 4), [
    ['Root', s.root],
    ['Run Root', s.runroot],
    ['Driver Name', 'vfs'],
    ['Driver Options', '[]'],
  ]);
  t.is(status[4][0], 'Backing Filesystem');
});

test('wipe removes every layer, children first and mounted ones too', async (t) => {
  const s = tempStore(t);
  const store = await s.open();
  await store.createLayer({ names: ['a'] });
  await store.createLayer({ parent: 'a', names: ['b'] });
  await store.mount('b');
  await store.wipe();
  t.deepEqual(await store.layers(), []);
  t.deepEqual(await store.mounted(), []);
  t.deepEqual(fs.readdirSync(path.join(s.root, 'vfs', 'dir')), []);
  t.is((await runCli(['-g', s.root, '-R', s.runroot, 'layers'])).stdout, '');
});
