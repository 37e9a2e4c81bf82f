// Images and containers shared with the reference peer (containers-storage -s vfs) on one store:
// each tool reads the other's images.json and containers.json with every field, prints the same
// listings, finds the same big data, and a mapped top layer the peer made is reused by us.
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { tempStore } from '../fixtures/store.ts';
import { imageTars, owners, threeLayers, useMappedTopLayers } from './fixtures.ts';

// these tests are about mapped top layers: idmapped mounts (tests/store/idmapped.test.ts) off
useMappedTopLayers();

const MAP = ['--uidmap', '0:100000:65536', '--gidmap', '0:100000:65536'];

test('the peer reads our images, containers and big data, and prints them as we do', async (t) => {
  const s = tempStore(t);
  const store = await s.open();
  const [, , top] = await threeLayers(store, imageTars(s.dir));
  const ok = async (args: string[]) => {
    const r = await s.cli(args);
    t.is(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  await ok(['create-image', '-n', 'img', '-n', 'img:latest', '-m', 'meta', '-d', 'sha256:' + 'ab'.repeat(32), top]);
  const config = path.join(s.dir, 'config.json');
  fs.writeFileSync(config, '{"architecture":"amd64"}\n');
  await ok(['set-image-data', '-f', config, 'img', 'config']);
  await ok(['set-image-data', '-f', config, 'img', 'sha256:Weird/Key']);
  await ok(['create-container', '-n', 'c1', ...MAP, '-m', 'cm', 'img']);

  for (const cmd of [['images', '--json'], ['containers', '--json'], ['images'], ['containers'], ['layers'], ['container', 'c1'], ['list-image-data', 'img']]) {
    t.is(s.peer(cmd).stdout.trim(), (await ok(cmd)).trim(), `${cmd.join(' ')} prints the same`);
  }
  // Size counts the layer chain, the mapped top layer and the big data, as the peer counts it
  t.is(s.peer(['image', 'img']).stdout, await ok(['image', 'img']));
  t.regex(await ok(['image', 'img']), /^Size: [1-9]\d*$/m);
  for (const key of ['config', 'sha256:Weird/Key']) {
    t.is(s.peer(['get-image-data', 'img', key]).stdout, fs.readFileSync(config, 'utf8'));
    t.is(s.peer(['get-image-data-digest', 'img', key]).stdout, await ok(['get-image-data-digest', 'img', key]));
    t.is(s.peer(['get-image-data-size', 'img', key]).stdout, await ok(['get-image-data-size', 'img', key]));
  }
  t.is(s.peer(['metadata', '-q', 'c1']).stdout, 'cm\n');
  t.is(s.peer(['get-container-dir', 'c1']).stdout, await ok(['get-container-dir', 'c1']));
  t.true(fs.statSync((await ok(['get-container-run-dir', 'c1'])).trim()).isDirectory());
  // the peer deletes what we made, its mapped layer included
  t.is(s.peer(['delete-container', 'c1']).code, 0);
  t.is(s.peer(['delete-image', 'img']).code, 0);
  t.is(s.peer(['images', '--json']).stdout.trim(), 'null', 'Go prints an empty list as null');
  t.deepEqual(await store.layers(), [], 'the mapped layer, the top layer and its parents are gone');
});

test("we read the peer's images and containers and reuse the mapped top layer it made", async (t) => {
  const s = tempStore(t);
  const store = await s.open();
  const [, , top] = await threeLayers(store, imageTars(s.dir));
  t.is(s.peer(['create-image', '-n', 'img', '-m', 'meta', top]).code, 0);
  t.is(s.peer(['create-container', '-n', 'c1', ...MAP, 'img']).code, 0);
  const peerImages = JSON.parse(s.peer(['images', '--json']).stdout);
  t.deepEqual(await store.images(), peerImages);
  t.deepEqual(await store.containers(), JSON.parse(s.peer(['containers', '--json']).stdout));
  const [mapped] = peerImages[0]['mapped-layers'];

  const c2 = await store.createContainer({ image: 'img', names: ['c2'], uidmap: [{ container_id: 0, host_id: 100000, size: 65536 }], gidmap: [{ container_id: 0, host_id: 100000, size: 65536 }] });
  t.is((await store.layer(c2.layer)).parent, mapped, "our container sits on the peer's mapped layer");
  t.is(owners(await store.mount('c2')).get('bin/tool'), '100002:100003');
  await store.unmount('c2');
  t.is(s.peer(['container', 'c2']).code, 0, 'the peer reads our container');
  // the peer's mapped layer has no digest: both tools count it by its DiffSize
  t.is((await s.cli(['image', 'img'])).stdout, s.peer(['image', 'img']).stdout);

  const refused = await s.cli(['rm', 'img']);
  t.is(refused.code, 1);
  const rm = await s.cli(['rm', '--force', 'img']);
  t.is(rm.code, 0, rm.stderr);
  t.deepEqual(await store.layers(), []);
  t.is(s.peer(['layers']).stdout, '');
  t.is(s.peer(['containers']).stdout, '');
});
