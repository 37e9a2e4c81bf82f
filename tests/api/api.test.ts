// The embedding API (docs/api.md): lookups by digest and the peer's Store lookups, expected
// digests on import, stream inputs, progress and abort, the diff as a stream, close(), records
// as camelCase views. The store is opened as a consumer opens it (openStore).
import test from 'ava';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { openStore, type Store } from '../../lib/index.ts';
import { tempDir } from '../fixtures/fs.ts';
import { gnuTar, makeTree, sha256File, tempStore, type TempStore } from '../fixtures/store.ts';

/** The store in the temp dir as the API opens it: camelCase views (the fixture's open() gives the CLI's records). */
const apiStore = (s: TempStore): Promise<Store> => openStore({ root: s.root, runroot: s.runroot, driver: 'vfs' });

const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

function tars(t: Parameters<typeof tempDir>[0]) {
  const dir = tempDir(t);
  const tree = path.join(dir, 'tree');
  fs.mkdirSync(tree);
  makeTree(tree);
  return { dir, tar: gnuTar(tree, path.join(dir, 'l.tar')), tgz: gnuTar(tree, path.join(dir, 'l.tgz'), true) };
}

/** A tar of many files, big enough that reading it takes many chunks. */
function bigTar(dir: string): string {
  const tree = path.join(dir, 'big');
  fs.mkdirSync(tree);
  for (let i = 0; i < 2000; i++) fs.writeFileSync(path.join(tree, `f${i}`), Buffer.alloc(4096, i % 251));
  return gnuTar(tree, path.join(dir, 'big.tar'));
}

async function collect(r: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of r) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

test('layers by compressed and uncompressed digest; a wrong expected digest leaves no layer', async (t) => {
  const s = tempStore(t);
  const { tar, tgz } = tars(t);
  const store = await apiStore(s);
  const tgzDigest = await sha256File(tgz);
  const tarDigest = await sha256File(tar);
  const l = await store.createLayer({ compressedDigest: tgzDigest, uncompressedDigest: tarDigest }, tgz);
  t.deepEqual((await store.layersByCompressedDigest(tgzDigest)).map((x) => x.id), [l.id]);
  t.deepEqual((await store.layersByUncompressedDigest(tarDigest)).map((x) => x.id), [l.id]);
  t.deepEqual(await store.layersByCompressedDigest(tarDigest), []);

  const wrong = 'sha256:' + '0'.repeat(64);
  for (const opts of [{ compressedDigest: wrong }, { uncompressedDigest: wrong }]) {
    for (const input of [tgz, tar]) {
      const err = await t.throwsAsync(store.createLayer(opts, input), { code: 'EDIGEST' });
      t.true(err!.message.includes(wrong), err!.message);
      t.regex(err!.message, /is sha256:[0-9a-f]{64}, expected/);
    }
  }
  t.deepEqual((await store.layers()).map((x) => x.id), [l.id]);
  t.deepEqual(fs.readdirSync(path.join(s.root, 'vfs', 'dir')), [l.id]);

  // applydiff: the layer stays as it was
  const empty = await store.createLayer({});
  for (const opts of [{ uncompressedDigest: wrong }, { compressedDigest: wrong }])
    for (const input of [tgz, tar]) await t.throwsAsync(store.applyDiff(empty.id, input, opts), { code: 'EDIGEST' });
  t.deepEqual(fs.readdirSync(path.join(s.root, 'vfs', 'dir', empty.id)), []);
  t.deepEqual(s.records().map((r) => r.flags), [undefined, undefined], 'both layers complete');
  t.is((await store.layers()).length, 2);

  // the CLI: the same checks, and the lookups as filters of `layers`
  const bad = await s.cli(['import-layer', '-f', tgz, '--compressed-digest', wrong]);
  t.not(bad.code, 0);
  t.regex(bad.stderr, /expected sha256:0{64}/);
  const listed = await s.cli(['layers', '--compressed-digest', tgzDigest, '-q']);
  t.is(listed.stdout, `${l.id}\n`);
  const byTar = await s.cli(['layers', '--uncompressed-digest', tarDigest, '--json']);
  t.deepEqual(JSON.parse(byTar.stdout).map((x: { id: string }) => x.id), [l.id]);
  t.is((await s.cli(['applydiff', '-f', tar, '--uncompressed-digest', wrong, empty.id])).code !== 0, true);
  t.deepEqual(fs.readdirSync(path.join(s.root, 'vfs', 'dir', empty.id)), []);
});

test('inputs as a Readable or an async iterable; progress grows to the input size', async (t) => {
  const s = tempStore(t);
  const { tar, tgz } = tars(t);
  const store = await apiStore(s);
  for (const file of [tar, tgz]) {
    const seen: number[] = [];
    const size = fs.statSync(file).size;
    const l = await store.createLayer({ size, onProgress: (p) => seen.push(p.bytes) }, fs.createReadStream(file, { highWaterMark: 4096 }));
    t.is(l.compressedDigest, await sha256File(file));
    t.true(seen.length > 2);
    t.deepEqual(seen, [...seen].sort((a, b) => a - b));
    t.is(seen.at(-1), size);
  }
  async function* chunks() {
    const b = fs.readFileSync(tar);
    for (let i = 0; i < b.length; i += 1000) yield new Uint8Array(b.subarray(i, i + 1000));
  }
  const l = await store.createLayer({}, chunks());
  t.is(l.uncompressedDigest, await sha256File(tar));
  // a file: progress from the tar engine, ending at the file's size, with the entry count
  const last: Array<{ bytes: number; entries?: number; totalBytes?: number }> = [];
  const big = bigTar(tempDir(t));
  await store.createLayer({ onProgress: (p) => last.push(p) }, big);
  t.is(last.at(-1)!.bytes, fs.statSync(big).size);
  t.is(last.at(-1)!.totalBytes, fs.statSync(big).size);
  t.is(last.at(-1)!.entries, 2001);
  t.true(last.length > 3);
  t.deepEqual(last.map((p) => p.bytes), last.map((p) => p.bytes).sort((a, b) => a - b));
});

test('an abort mid-import leaves no layer', async (t) => {
  const s = tempStore(t);
  const big = bigTar(tempDir(t));
  const store = await apiStore(s);
  const before = fs.existsSync(path.join(s.root, 'vfs', 'dir')) ? fs.readdirSync(path.join(s.root, 'vfs', 'dir')) : [];
  for (const input of [() => fs.createReadStream(big, { highWaterMark: 64 << 10 }), () => big]) {
    const ac = new AbortController();
    let calls = 0;
    const err = await t.throwsAsync(
      store.createLayer({ signal: ac.signal, onProgress: () => (calls++ === 0 ? ac.abort() : undefined) }, input()),
      { code: 'EABORTED' },
    );
    t.regex(err!.message, /aborted/);
    t.deepEqual(await store.layers(), []);
    t.deepEqual(fs.existsSync(path.join(s.root, 'vfs', 'dir')) ? fs.readdirSync(path.join(s.root, 'vfs', 'dir')) : [], before);
    t.deepEqual(s.records(), []);
  }
});

test('diffStream gives the applied tar back; sizes and the peer lookups', async (t) => {
  const s = tempStore(t);
  const { tar } = tars(t);
  const store = await apiStore(s);
  const l = await store.createLayer({ names: ['base'] }, tar);
  const out = await collect(store.diffStream(l.id));
  t.is(sha(out), await sha256File(tar));
  t.deepEqual(fs.readdirSync(store.tmpDir).filter((n) => n.startsWith('diff-')), []);

  t.is(await store.layerSize(l.id), fs.statSync(tar).size);
  const img = await store.createImage({ layer: l.id, names: ['img'] });
  await store.setBigData('image', img.id, 'manifest', Buffer.from('12345'));
  t.is(await store.imageSize('img'), fs.statSync(tar).size + 5);
  t.deepEqual((await store.imagesByTopLayer('base')).map((i) => i.id), [img.id]);
  const c = await store.createContainer({ image: img.id, names: ['ctr'] });
  t.is((await store.containerByLayer(c.layerId)).id, c.id);
  await t.throwsAsync(store.containerByLayer(l.id), { code: 'ECONTAINERUNKNOWN' });
  await store.setBigData('container', c.id, 'config', Buffer.alloc(100));
  t.is(await store.containerSize('ctr'), 100);
  t.is(await store.lookup('ctr'), c.id);
  t.is(await store.lookup('img'), img.id);
  t.is(await store.lookup('base'), l.id);
  await t.throwsAsync(store.lookup('nothing'), { code: 'ELAYERUNKNOWN' });
  await store.addNames('img', ['two', 'three']);
  t.deepEqual(await store.removeNames('img', ['img', 'three']), ['two']);
  t.deepEqual((await store.image(img.id)).names, ['two']);
  await store.deleteContainer(c.id);
});

test('close waits for calls in flight, then refuses new ones', async (t) => {
  const s = tempStore(t);
  const { tar } = tars(t);
  const store = await apiStore(s);
  const importing = store.createLayer({}, tar);
  await store.close();
  t.truthy((await importing).id);
  await t.throwsAsync(store.layers(), { code: 'EUSAGE' });
  {
    await using again = await apiStore(s);
    t.is((await again.layers()).length, 1);
  }
});

test('records as camelCase views from every getter, lister and creator; the records and --json keep the peer names', async (t) => {
  const s = tempStore(t);
  const { tgz, tar } = tars(t);
  const store = await apiStore(s);
  const tgzDigest = await sha256File(tgz);
  const tarDigest = await sha256File(tar);
  const l = await store.createLayer({ names: ['base'] }, tgz);
  const layerView = {
    id: l.id,
    names: ['base'],
    created: l.created,
    compressedDigest: tgzDigest,
    compressedSize: fs.statSync(tgz).size,
    uncompressedDigest: tarDigest,
    uncompressedSize: fs.statSync(tar).size,
    compression: 2,
    uids: [0],
    gids: [0],
    uidMap: [],
    gidMap: [],
    bigDataNames: [],
  };
  t.deepEqual(l, layerView);
  t.regex(l.created!, /^\d{4}-\d\d-\d\dT/);
  t.false('parent' in l, 'no key set to undefined');
  for (const got of [await store.layer('base'), (await store.layers())[0], (await store.layersByCompressedDigest(tgzDigest))[0], (await store.layersByUncompressedDigest(tarDigest))[0]])
    t.deepEqual(got, layerView);
  const child = await store.createLayer({ parent: l.id });
  t.is(child.parent, l.id);
  t.is(child.compression, 0);

  const digest = 'sha256:' + 'a'.repeat(64);
  const img = await store.createImage({ layer: l.id, digest, names: ['img'] });
  t.is(img.topLayer, l.id);
  t.deepEqual(img.digests, [digest]);
  t.deepEqual(img.mappedTopLayers, []);
  for (const got of [await store.image('img'), (await store.images())[0], (await store.imagesByDigest(digest))[0], (await store.imagesByTopLayer(l.id))[0]]) t.deepEqual(got, img);

  const map = [{ container_id: 0, host_id: 5000, size: 1000 }];
  const c = await store.createContainer({ image: img.id, names: ['ctr'], uidmap: map, gidmap: map });
  t.is(c.imageId, img.id);
  t.deepEqual(c.uidMap, map);
  t.deepEqual(c.gidMap, map);
  t.false('layer' in c || 'image' in c, 'no peer field names');
  for (const got of [await store.container('ctr'), (await store.containers())[0], await store.containerByLayer(c.layerId)]) t.deepEqual(got, c);
  const mapped = (await store.image(img.id)).mappedTopLayers;
  t.is(mapped.length, 1);
  t.is((await store.layer(c.layerId)).parent, mapped[0]);
  t.deepEqual((await store.layer(mapped[0]!)).uidMap, map);

  const found = await store.resolve('ctr');
  t.is(found?.kind, 'container');
  t.deepEqual(found?.record, c);
  const fromTemplate = await store.createFromTemplate({ template: l.id, uidmap: map, gidmap: map });
  t.deepEqual(fromTemplate.uidMap, map);
  t.is(fromTemplate.uncompressedDigest, tarDigest, 'a copy of the template keeps its digest');

  // the same records, in the peer's names, on disk and from --json
  const json = JSON.parse((await s.cli(['layer', '--json', l.id])).stdout)[0];
  t.is(json['compressed-diff-digest'], tgzDigest);
  t.is(json['diff-digest'], tarDigest);
  t.false('compressedDigest' in json);
  t.is(s.records().find((r) => r.id === l.id)!['diff-size'], fs.statSync(tar).size);
  const ctrJson = JSON.parse((await s.cli(['container', '--json', 'ctr'])).stdout)[0];
  t.is(ctrJson.layer, c.layerId);
  await store.deleteContainer(c.id);
});

test('createContainer, createFromTemplate and copy: progress in steps or bytes, and an abort leaves nothing half-made', async (t) => {
  const s = tempStore(t);
  const { tar } = tars(t);
  const store = await apiStore(s);
  const base = await store.createLayer({ names: ['base'] }, tar);
  const map = (host: number) => [{ container_id: 0, host_id: host, size: 65536 }];
  const layerDirs = () => fs.readdirSync(path.join(s.root, 'vfs', 'dir')).sort();
  const noIncomplete = () => t.deepEqual(s.records().filter((r) => (r.flags as { incomplete?: boolean } | undefined)?.incomplete), []);

  // a container needing a mapped top layer: its copy, its shift, the container's layer
  const img = await store.createImage({ layer: base.id });
  const seen: Array<[number | undefined, number | undefined]> = [];
  const c = await store.createContainer({ image: img.id, uidmap: map(100000), gidmap: map(100000), onProgress: (p) => seen.push([p.steps, p.totalSteps]) });
  t.deepEqual(seen, [[1, 3], [2, 3], [3, 3]]);
  seen.length = 0;
  await store.createContainer({ image: img.id, uidmap: map(100000), gidmap: map(100000), onProgress: (p) => seen.push([p.steps, p.totalSteps]) });
  t.deepEqual(seen, [[1, 1]], 'the mapped top layer is there: one step');

  // aborted at each step of a new mapping: no container, and no mapped top layer unless it was finished
  for (const abortAt of [0, 1, 2, 3]) {
    const image = await store.createImage({ layer: base.id });
    const [layersBefore, containersBefore, dirsBefore] = [await store.layers(), await store.containers(), layerDirs()];
    const ac = new AbortController();
    if (abortAt === 0) ac.abort(new Error('stop'));
    const err = await t.throwsAsync(
      store.createContainer({ image: image.id, uidmap: map(200000), gidmap: map(200000), signal: ac.signal, onProgress: (p) => (p.steps === abortAt ? ac.abort() : undefined) }),
      { code: 'EABORTED' },
      `abort at step ${abortAt}`,
    );
    t.regex(err!.message, /creating a container of image .*: aborted/);
    t.deepEqual(await store.containers(), containersBefore);
    const mapped = (await store.image(image.id)).mappedTopLayers;
    // after the shift (step 2) the mapped top layer is complete: it stays, listed, for the next container
    t.is(mapped.length, abortAt === 3 ? 1 : 0, `abort at step ${abortAt}`);
    t.deepEqual((await store.layers()).map((l) => l.id), [...layersBefore.map((l) => l.id), ...mapped]);
    t.deepEqual(layerDirs(), [...dirsBefore, ...mapped].sort());
    noIncomplete();
  }

  // createFromTemplate: the copy and its shift
  seen.length = 0;
  await store.createFromTemplate({ template: base.id, uidmap: map(300000), gidmap: map(300000), onProgress: (p) => seen.push([p.steps, p.totalSteps]) });
  t.deepEqual(seen, [[1, 2], [2, 2]]);
  for (const abortAt of [1, 2]) {
    const before = layerDirs();
    const ac = new AbortController();
    await t.throwsAsync(store.createFromTemplate({ template: base.id, uidmap: map(400000), gidmap: map(400000), signal: ac.signal, onProgress: (p) => (p.steps === abortAt ? ac.abort() : undefined) }), { code: 'EABORTED' });
    t.deepEqual(layerDirs(), before);
    noIncomplete();
  }

  // copy: the tar's bytes and entries, ending at its size and count; an abort before extraction copies nothing
  const src = path.join(tempDir(t), 'src');
  fs.mkdirSync(src);
  for (let i = 0; i < 600; i++) fs.writeFileSync(path.join(src, `f${i}`), Buffer.alloc(1000, i % 251));
  const progress: Array<{ bytes: number; totalBytes?: number; entries?: number; totalEntries?: number }> = [];
  await store.copy([{ path: src }], { layer: c.layerId, path: '/copied' }, { onProgress: (p) => progress.push(p) });
  const last = progress.at(-1)!;
  t.true(progress.length > 2);
  t.deepEqual(progress.map((p) => p.bytes), progress.map((p) => p.bytes).sort((a, b) => a - b));
  t.is(last.totalBytes, last.bytes);
  t.true(last.bytes >= 600 * 1024);
  t.is(last.entries, 601);
  t.is(last.totalEntries, 601);
  const rootfs = await store.mount(c.id);
  t.is(fs.readdirSync(path.join(rootfs, 'copied')).length, 600);
  t.deepEqual(fs.readFileSync(path.join(rootfs, 'copied', 'f7')), Buffer.alloc(1000, 7));
  const pre = new AbortController();
  pre.abort();
  await t.throwsAsync(store.copy([{ path: src }], { layer: c.layerId, path: '/never' }, { signal: pre.signal }), { code: 'EABORTED' });
  t.false(fs.existsSync(path.join(rootfs, 'never')));
  const mid = new AbortController();
  const err = await t.throwsAsync(store.copy([{ path: src }], { layer: c.layerId, path: '/partly' }, { signal: mid.signal, onProgress: () => mid.abort() }), { code: 'EABORTED' });
  t.regex(err!.message, /copying .* to .*: .*aborted/);
  await store.unmount(c.id);
  t.is(await store.mountCount(c.layerId), 0, 'the copy let its mount go');
  await store.close();
});
