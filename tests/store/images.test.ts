// Images, containers and mapped top layers on every driver: containers with other id mappings
// get id-shifted copies of the image's top layer (made once per mapping, then reused), and
// removing an image takes its mapped top layers first, then the top layer and the parents no one
// else needs, leaving nothing behind.
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { isLayersError } from '../../lib/index.ts';
import { canMount } from '../fixtures/fs.ts';
import { assertConsistent, diffFile, DRIVERS, driverStore, imageTars, mapping, owners, tarSummary, threeLayers, useMappedTopLayers } from './fixtures.ts';

// these tests are about mapped top layers: idmapped mounts (tests/store/idmapped.test.ts) off
useMappedTopLayers();

const maybe = canMount ? test.serial : test.skip;

for (const driver of DRIVERS) {
  maybe(`${driver}: containers get mapped top layers (two mappings, one reused); rm takes mapped layers first and leaves nothing`, async (t) => {
    const s = driverStore(t, driver);
    const store = await s.open();
    const [base, mid, top] = await threeLayers(store, imageTars(s.dir));
    const image = await store.createImage({ layer: top, names: ['img'] });
    // a second image shares the middle layer
    const other = await store.createImage({ layer: mid, names: ['other'] });

    const c1 = await store.createContainer({ image: 'img', names: ['c1'], ...mapping(100000) });
    const c2 = await store.createContainer({ image: 'img', names: ['c2'], ...mapping(200000) });
    const c3 = await store.createContainer({ image: 'img', names: ['c3'], ...mapping(100000) });
    const plain = await store.createContainer({ image: 'img', names: ['plain'] });

    const mapped = (await store.image('img'))['mapped-layers']!;
    t.is(mapped.length, 2, 'one mapped top layer per distinct mapping');
    const layerOf = async (c: { layer: string }) => (await store.layer(c.layer)).parent;
    t.is(await layerOf(c1), mapped[0]);
    t.is(await layerOf(c2), mapped[1]);
    t.is(await layerOf(c3), mapped[0], 'the third container reuses the first mapped layer');
    t.is(await layerOf(plain), top, 'a container with the image mappings sits on the top layer');
    const templ = await store.layer(top);
    for (const [m, host] of [
      [mapped[0], 100000],
      [mapped[1], 200000],
    ] as const) {
      const rec = await store.layer(m);
      t.is(rec.parent, mid, 'the notional parent is the template parent');
      t.deepEqual(rec.uidmap, mapping(host).uidmap);
      t.is(rec['diff-digest'], templ['diff-digest'], 'the mapped layer carries the template digests');
      t.is(rec['diff-size'], templ['diff-size']);
      t.is(rec['compressed-diff-digest'], templ['compressed-diff-digest']);
      // its diff, mapped back to container ids, is the template's
      const want = tarSummary(await diffFile(store, top, path.join(s.dir, 'top.diff')));
      t.deepEqual(tarSummary(await diffFile(store, m, path.join(s.dir, `${m}.diff`))), want);
      t.deepEqual(
        (await store.changes(m)).map((c) => `${c.kind} ${c.path}`).sort(),
        (await store.changes(top)).map((c) => `${c.kind} ${c.path}`).sort(),
      );
      t.is(await store.diffSize(m), await store.diffSize(top));
    }

    // every file of each container's mount is owned by its mapped ids
    const plainView = owners(await store.mount('plain'));
    for (const [c, host] of [
      [c1, 100000],
      [c2, 200000],
      [c3, 100000],
    ] as const) {
      const view = owners(await store.mount(c.id));
      t.deepEqual([...view.keys()], [...plainView.keys()], 'the same files');
      for (const [rel, own] of view) {
        const [u, g] = plainView.get(rel)!.split(':').map(Number);
        t.is(own, `${u + host}:${g + host}`, `${rel} in ${c.names![0]}`);
      }
      t.is(fs.readFileSync(path.join(await store.mount(c.id), 'home/app/data')).length, 200_000);
      await store.unmount(c.id, true);
    }
    t.is(plainView.get('home/app/data'), '1000:1001');
    t.is(plainView.get('bin/tool'), '2:3');
    t.false(plainView.has('etc/old'), 'the deletion in the middle layer holds');

    // refused while containers use it, naming them
    const refused = await s.cli(['rm', 'img']);
    t.is(refused.code, 1);
    for (const c of [c1, c2, c3, plain]) t.true(refused.stderr.includes(c.id), `names container ${c.id}`);
    t.true(fs.existsSync(path.join(s.root, `${driver}-images`, 'images.json')));
    t.is((await store.images()).length, 2);

    // with --force: containers, then the mapped layers, then the top layer; the shared middle layer stays
    const removed: string[] = [];
    const remove = store.driver.remove.bind(store.driver);
    store.driver.remove = async (id) => {
      removed.push(id);
      return remove(id);
    };
    const result = await store.removeImage('img', { force: true });
    t.deepEqual(result.containers.sort(), [c1.id, c2.id, c3.id, plain.id].sort());
    t.deepEqual(result.layers, [mapped[1], mapped[0], top]);
    const containerLayers = [c1, c2, c3, plain].map((c) => c.layer);
    t.deepEqual(removed.slice(0, 4).sort(), containerLayers.sort(), 'container layers first');
    t.deepEqual(removed.slice(4), [mapped[1], mapped[0], top], 'then the mapped layers, then the top layer');
    t.deepEqual(
      (await store.layers()).map((l) => l.id),
      [base, mid],
    );
    t.deepEqual(
      (await store.images()).map((i) => i.id),
      [other.id],
    );
    t.deepEqual(await store.containers(), []);
    t.false(fs.existsSync(path.join(s.root, `${driver}-images`, image.id)));
    assertConsistent(t, s, 'after rm img');

    // the CLI removes the other image and its two layers
    const rm = await s.cli(['rm', 'other']);
    t.is(rm.code, 0, rm.stderr);
    t.is(rm.stdout, `other: ${mid}\nother: ${base}\n`);
    t.deepEqual(await store.layers(), []);
    assertConsistent(t, s, 'after rm other');
  });

  maybe(`${driver}: a mapped top layer depends on its template; neither delete-layer nor rm breaks it`, async (t) => {
    const s = driverStore(t, driver);
    const store = await s.open();
    const [, , top] = await threeLayers(store, imageTars(s.dir));
    await store.createImage({ layer: top, names: ['img'] });
    const c = await store.createContainer({ image: 'img', ...mapping(100000) });
    const [mapped] = (await store.image('img'))['mapped-layers']!;
    await store.deleteContainer(c.id);
    // the store refuses to take the top layer from under its image and mapped layer
    const err = await t.throwsAsync(store.deleteLayer(top));
    t.true(isLayersError(err, 'ELAYERINUSE'), err?.message);
    // the copy and its template together: the driver alone shows what removing the top layer first does
    if (driver === 'overlay') {
      t.deepEqual(await store.driver.dependents!(top), [mapped], 'overlay keeps the template under its copy');
    }
    // a standalone copy made by create-from-template: its template cannot go first either (on overlay)
    const cli = await s.cli(['create-from-template', '--uidmap', '0:300000:65536', '--gidmap', '0:300000:65536', '-n', 'copy', top]);
    t.is(cli.code, 0, cli.stderr);
    const copy = cli.stdout.split('\n')[0];
    t.is((await store.layer('copy')).id, copy);
    t.is((await store.layer('copy')).parent, (await store.layer(top)).parent);
    t.true(owners(await store.mount('copy')).get('bin/tool') === '300002:300003');
    await store.unmount('copy');
    const removed: string[] = [];
    const remove = store.driver.remove.bind(store.driver);
    store.driver.remove = async (id) => {
      // each layer can still be mounted when it goes: nothing it stands on went before it
      const where = await store.driver.mount(id);
      t.true(fs.existsSync(path.join(where, 'bin/tool')), `layer ${id} whole when removed`);
      await store.driver.unmount(id);
      removed.push(id);
      return remove(id);
    };
    if (driver === 'overlay') {
      // rm keeps the top layer while the standalone copy stands on it
      const kept = await store.removeImage('img');
      t.deepEqual(kept.layers, [mapped], 'only the mapped layer goes; the copy still needs the top layer');
      t.true(await store.exists(top));
      // the wrong order, forced through the driver alone: without its template the copy has no files
      store.driver.remove = remove;
      await remove(top);
      const broken = await t.throwsAsync(store.driver.mount(copy));
      t.regex(broken!.message, /lower layers that no longer exist/);
      await store.deleteLayer('copy');
      await store.deleteLayer(top);
    } else {
      const gone = await store.removeImage('img');
      t.deepEqual(gone.layers.slice(0, 2), [mapped, top]);
      t.true(await store.exists('copy'), 'a vfs/btrfs copy is independent of its template');
      t.true(owners(await store.mount('copy')).get('bin/tool') === '300002:300003');
      await store.unmount('copy');
    }
    assertConsistent(t, s, 'after removal');
  });
}

maybe('prune removes mapped top layers no container uses; create-from-template --image registers one', async (t) => {
  const s = driverStore(t, 'overlay');
  const store = await s.open();
  const [, , top] = await threeLayers(store, imageTars(s.dir));
  await store.createImage({ layer: top, names: ['img'] });
  const c1 = await store.createContainer({ image: 'img', ...mapping(100000) });
  const c2 = await store.createContainer({ image: 'img', ...mapping(200000) });
  const [m1, m2] = (await store.image('img'))['mapped-layers']!;
  await store.deleteContainer(c2.id);
  const pruned = await s.cli(['prune']);
  t.is(pruned.code, 0, pruned.stderr);
  t.is(pruned.stdout, `${m2}\n`);
  t.deepEqual((await store.image('img'))['mapped-layers'], [m1]);
  t.false(await store.exists(m2));
  t.true(await store.exists(c1.layer));

  const made = await s.cli(['create-from-template', '--image', 'img', '--uidmap', '0:400000:65536', '--gidmap', '0:400000:65536', top]);
  t.is(made.code, 0, made.stderr);
  const m3 = made.stdout.split('\n')[0];
  t.deepEqual((await store.image('img'))['mapped-layers'], [m1, m3]);
  const c3 = await store.createContainer({ image: 'img', ...mapping(400000) });
  t.is((await store.layer(c3.layer)).parent, m3, 'a container with those mappings uses it');
  const wrong = await s.cli(['create-from-template', '--image', 'img', '--uidmap', '0:1:2', '--gidmap', '0:1:2', (await store.layer(top)).parent!]);
  t.is(wrong.code, 2);
  t.regex(wrong.stderr, /not the top layer of image/);
  const bare = await s.cli(['create-from-template', top]);
  t.is(bare.code, 2);
  t.regex(bare.stderr, /needs the id mappings/);
  assertConsistent(t, s, 'after prune');
});
