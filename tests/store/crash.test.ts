// kill -9 at every point between the steps of container creation and image removal (the
// failpoints of lib/failpoint.ts): the next command repairs the store (incomplete layers gone,
// no image or container pointing at a missing layer, the driver's home matching the records),
// and the operation then runs to the end. The next writer takes the dead holder's lock at once
// (tests/store/lock.test.ts).
import test from 'ava';
import { FAILPOINTS } from '../../lib/failpoint.ts';
import { canMount } from '../fixtures/fs.ts';
import { assertConsistent, driverStore, imageTars, mapping, owners, threeLayers, type DriverName, useMappedTopLayers } from './fixtures.ts';

// these tests are about mapped top layers: idmapped mounts (tests/store/idmapped.test.ts) off
useMappedTopLayers();

const maybe = canMount ? test : test.skip;
const KILLED = 128 + 9;
const maps = (host: number) => ['--uidmap', `0:${host}:65536`, '--gidmap', `0:${host}:65536`];

for (const driver of ['overlay', 'vfs'] as DriverName[]) {
  maybe(`${driver}: kill -9 at each step of create-container; the next command repairs and the retry works`, async (t) => {
    const s = driverStore(t, driver);
    const store = await s.open();
    const [, , top] = await threeLayers(store, imageTars(s.dir));
    await store.createImage({ layer: top, names: ['img'] });
    for (const [i, point] of FAILPOINTS.createContainer.entries()) {
      // a mapping of its own each time, so that a mapped top layer has to be made
      const host = 100000 + i * 65536;
      const args = ['create-container', '-n', `c${i}`, ...maps(host), 'img'];
      const killed = await s.cli(args, { LAYERS_FAILPOINT: point });
      t.is(killed.code, KILLED, `${point}: killed (${killed.stderr})`);
      const listed = await s.cli(['containers']);
      t.is(listed.code, 0, listed.stderr);
      t.false(listed.stdout.includes(`\tname: c${i}\n`), `${point}: the half-made container is gone`);
      assertConsistent(t, s, `killed at ${point}`);
      const mapped = (await store.image('img'))['mapped-layers'] ?? [];
      const mappedLayers = await Promise.all(mapped.map((m) => store.layer(m)));
      const kept = mappedLayers.some((l) => l.uidmap?.[0].host_id === host);
      t.is(kept, FAILPOINTS.createContainer.indexOf(point) >= FAILPOINTS.createContainer.indexOf('mapped-layer-complete'), `${point}: a complete mapped layer stays, an incomplete one goes`);

      const again = await s.cli(args);
      t.is(again.code, 0, `${point}: retry: ${again.stderr}`);
      const where = await store.mount(`c${i}`);
      t.is(owners(where).get('bin/tool'), `${host + 2}:${host + 3}`, `${point}: the retried container is shifted`);
      await store.unmount(`c${i}`);
    }
    t.is((await store.image('img'))['mapped-layers']!.length, FAILPOINTS.createContainer.length);
    assertConsistent(t, s, 'at the end');
  });

  maybe(`${driver}: kill -9 at each step of rm; the next command finishes the removal`, async (t) => {
    const s = driverStore(t, driver);
    const store = await s.open();
    const tars = imageTars(s.dir);
    // a layer of another image under each, which must survive
    const [keepBase] = await threeLayers(store, tars, 'keep-');
    await store.createImage({ layer: keepBase, names: ['keep'] });
    const points = [...FAILPOINTS.removeImage.filter((p) => p !== 'image-layer-removed'), 'image-layer-removed:1', 'image-layer-removed:3'];
    for (const [i, point] of points.entries()) {
      const [, , top] = await threeLayers(store, tars, `${i}-`);
      const image = await store.createImage({ layer: top, names: [`img${i}`] });
      await store.createContainer({ image: image.id, ...mapping(100000) });
      await store.createContainer({ image: image.id, ...mapping(200000) });
      const before = (await store.layers()).length;
      const killed = await s.cli(['rm', '--force', `img${i}`], { LAYERS_FAILPOINT: point });
      t.is(killed.code, KILLED, `${point}: killed (${killed.stderr})`);
      const listed = await s.cli(['images']);
      t.is(listed.code, 0, listed.stderr);
      assertConsistent(t, s, `killed at ${point}`);
      const left = await store.images();
      if (point === 'containers-removed') {
        // killed before the removal was written down: the image is whole, without its containers
        t.true(left.some((im) => im.id === image.id), `${point}: the image stays`);
        t.deepEqual(await store.containers(), []);
        t.is((await store.layers()).length, before - 2);
        const rm = await s.cli(['rm', `img${i}`]);
        t.is(rm.code, 0, rm.stderr);
      } else {
        t.false(left.some((im) => im.id === image.id), `${point}: the removal was finished`);
      }
      t.deepEqual(
        (await store.images()).map((im) => im.names),
        [['keep']],
      );
      t.deepEqual(
        (await store.layers()).map((l) => l.names),
        [['keep-base'], ['keep-mid'], ['keep-top']],
        `${point}: only the other image's layers are left`,
      );
    }
  });
}
