// Containers with new id mappings through idmapped mounts (docs/images-and-containers.md,
// "Idmapped mounts"): on each driver, a container with a contiguous and with a non-contiguous
// mapping makes no new layer but its own and changes no inode of the image's layers; its mount
// shows the mapped owners; what is written through the mount comes back in container ids in its
// Diff. With idmapped mounts turned off (the peer's switch), the same holds through a mapped top
// layer.
import test, { type ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { procMapText, toHost, type IdMappings } from '../../lib/idmap.ts';
import type { RecordStore } from '../../lib/store/store.ts';
import { walkTree } from '../../lib/tar/tree.ts';
import { canMount } from '../fixtures/fs.ts';
import { readAll } from '../tar/gnutar.ts';
import { IDMAPPED_MOUNTS_ENV } from '../../drivers/full-tree.ts';
import { diffFile, DISABLE_IDMAP_ENV, driverStore, imageTars, mapping, owners, threeLayers, type DriverName } from './fixtures.ts';

const maybe = canMount ? test.serial : test.skip;

const CONTIGUOUS = mapping(100000);
const NON_CONTIGUOUS: IdMappings = {
  uidmap: [
    { container_id: 0, host_id: 100000, size: 1000 },
    { container_id: 1000, host_id: 300000, size: 64536 },
  ],
  gidmap: [
    { container_id: 0, host_id: 200000, size: 1001 },
    { container_id: 1001, host_id: 400000, size: 64535 },
  ],
};


/** ctime (ns) of every entry of the layers' directories, keyed by layer and path */
function ctimes(store: RecordStore, layers: string[]): Map<string, bigint> {
  const out = new Map<string, bigint>();
  for (const id of layers) {
    const dir = store.driver.layerDir(id);
    out.set(`${id}:.`, fs.lstatSync(dir, { bigint: true }).ctimeNs);
    for (const node of walkTree(dir, { xattrs: false })) out.set(`${id}:${node.rel}`, fs.lstatSync(path.join(dir, node.rel), { bigint: true }).ctimeNs);
  }
  return out;
}

/**
 * Run a shell script in dir as uid 0 and gid 0 of a user namespace with the mappings, as a
 * container's process runs: unshare(1) makes the namespace and holds it (waiting on stdin) while
 * the maps are written from here (any number of ranges), then nsenter(1) enters it as its root.
 */
async function inUserns(m: IdMappings, dir: string, script: string): Promise<void> {
  const holder = spawn('unshare', ['--user', '--', 'sh', '-c', 'read go'], { stdio: ['pipe', 'ignore', 'inherit'] });
  const held = new Promise((resolve) => holder.on('close', resolve));
  try {
    const ours = fs.readlinkSync('/proc/self/ns/user');
    for (let i = 0; i < 500 && fs.readlinkSync(`/proc/${holder.pid}/ns/user`) === ours; i++) await new Promise((r) => setTimeout(r, 10));
    fs.writeFileSync(`/proc/${holder.pid}/uid_map`, procMapText(m.uidmap));
    fs.writeFileSync(`/proc/${holder.pid}/gid_map`, procMapText(m.gidmap));
    const child = spawn('nsenter', [`--user=/proc/${holder.pid}/ns/user`, '--setuid', '0', '--setgid', '0', '--', 'sh', '-ec', script], { cwd: dir, stdio: ['ignore', 'inherit', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    if (code !== 0) throw new Error(`in a user namespace: ${script}: exit ${code}: ${stderr}`);
  } finally {
    holder.stdin!.end('go\n');
    await held;
  }
}

function host(m: IdMappings, uid: number, gid: number): string {
  return `${toHost(m.uidmap, uid)}:${toHost(m.gidmap, gid)}`;
}

async function checkContainer(t: ExecutionContext, s: ReturnType<typeof driverStore>, store: RecordStore, m: IdMappings, name: string, idmapped: boolean): Promise<void> {
  const image = await store.image('img');
  const imageLayers = [image.layer!];
  for (let l = await store.layer(image.layer!); l.parent; l = await store.layer(l.parent)) imageLayers.push(l.parent);
  const before = ctimes(store, imageLayers);
  const layersBefore = (await store.layers()).length;
  const plain = await store.createContainer({ image: 'img', names: [`${name}-plain`] });
  const plainView = owners(await store.mount(plain.id));
  await store.unmount(plain.id, true);

  const c = await store.createContainer({ image: 'img', names: [name], ...m });
  const layer = await store.layer(c.layer);
  const mapped = (await store.image('img'))['mapped-layers'] ?? [];
  if (idmapped) {
    t.is((await store.layers()).length, layersBefore + 2, 'no layer but the two containers');
    t.is(layer.parent, image.layer, 'the container sits on the top layer itself');
    t.deepEqual(mapped, [], 'no mapped top layer');
  } else {
    t.is(mapped.length, 1, 'a mapped top layer');
    t.is(layer.parent, mapped[0]);
  }

  const root = await store.mount(c.id);
  const view = owners(root);
  t.deepEqual([...view.keys()], [...plainView.keys()], 'the same files');
  for (const [rel, own] of view) {
    const [u, g] = plainView.get(rel)!.split(':').map(Number);
    t.is(own, host(m, u, g), `${rel} shows its mapped owner`);
  }
  // written through the mount by the container's root: a new file and a changed owner (a copy-up on overlay)
  await inUserns(m, root, 'echo new > new; chown 5:1005 new; chown 7:1002 home/app/data');
  t.is(owners(root).get('new'), host(m, 5, 1005), 'the new file shows its mapped owner');
  t.is(fs.readFileSync(path.join(root, 'home/app/data')).length, 200_000);
  await store.unmount(c.id, true);

  const entries = readAll(await diffFile(store, c.layer, path.join(s.dir, `${name}.diff`)));
  const owner = (n: string) => entries.filter((e) => e.name === n).map((e) => `${e.uid}:${e.gid}`);
  t.deepEqual(owner('new'), ['5:1005'], 'the new file in container ids');
  t.deepEqual(owner('home/app/data'), ['7:1002'], 'the changed owner in container ids');
  if (idmapped && s.driver !== 'overlay') {
    // on vfs and btrfs the layer holds container ids: the bind is what maps them
    const st = fs.statSync(path.join(store.driver.layerDir(c.layer), 'new'));
    t.is(`${st.uid}:${st.gid}`, '5:1005', 'stored in unmapped ids');
  }
  t.deepEqual(ctimes(store, imageLayers), before, 'no inode of the image layers changed');
  await store.deleteContainer(c.id);
  await store.deleteContainer(plain.id);
}

for (const driver of ['overlay', 'vfs', 'btrfs'] as const) {
  for (const [what, m] of [
    ['contiguous', CONTIGUOUS],
    ['non-contiguous', NON_CONTIGUOUS],
  ] as const) {
    maybe(`${driver}: a container with a ${what} mapping through idmapped mounts`, async (t) => {
      // on vfs and btrfs they are opt-in (drivers/full-tree.ts: host root cannot write into them)
      if (driver !== 'overlay') process.env[IDMAPPED_MOUNTS_ENV] = 'yes';
      try {
        const s = driverStore(t, driver);
        const store = await s.open();
        await store.createImage({ layer: (await threeLayers(store, imageTars(s.dir)))[2], names: ['img'] });
        const answer = await store.driver.idmappedMounts!();
        t.true(answer.supported, answer.why);
        await checkContainer(t, s, store, m, 'c', true);
        const status = await s.cli(['status'], driver !== 'overlay' ? { [IDMAPPED_MOUNTS_ENV]: 'yes' } : {});
        t.regex(status.stdout, /Id mappings: idmapped mounts/);
      } finally {
        delete process.env[IDMAPPED_MOUNTS_ENV];
      }
    });

    maybe(`${driver}: a container with a ${what} mapping through a mapped top layer when idmapped mounts are off`, async (t) => {
      process.env[DISABLE_IDMAP_ENV[driver]] = 'yes';
      try {
        const s = driverStore(t, driver);
        const store = await s.open();
        await store.createImage({ layer: (await threeLayers(store, imageTars(s.dir)))[2], names: ['img'] });
        await checkContainer(t, s, store, m, 'c', false);
        const status = await s.cli(['status'], { [DISABLE_IDMAP_ENV[driver]]: 'yes' });
        t.regex(status.stdout, /Id mappings: mapped top layers/);
      } finally {
        delete process.env[DISABLE_IDMAP_ENV[driver]];
      }
    });
  }
}

/** the owners a mount of the layer shows */
async function mountedOwners(store: RecordStore, id: string): Promise<Map<string, string>> {
  try {
    return owners(await store.mount(id));
  } finally {
    await store.unmount(id, true);
  }
}

/** each owner of `plain` (container ids) through m */
function mapped(plain: Map<string, string>, m: IdMappings | undefined): Map<string, string> {
  if (!m) return plain;
  return new Map([...plain].map(([rel, own]) => [rel, host(m, ...(own.split(':').map(Number) as [number, number]))]));
}

maybe('overlay: layers with other mappings than their parents are shown through idmapped lowers, shifted nowhere, in a chain of mappings', async (t) => {
  const s = driverStore(t, 'overlay');
  const store = await s.open();
  const top = (await threeLayers(store, imageTars(s.dir)))[2];
  const imageLayers = [top];
  for (let l = await store.layer(top); l.parent; l = await store.layer(l.parent)) imageLayers.push(l.parent);
  // (a read-write mount of the top layer marks its upper root: taken before the count starts)
  const plain = await mountedOwners(store, top);
  const before = ctimes(store, imageLayers);

  // a mapped layer on the plain top, a plain one on it, a non-contiguous one on that, and a child with its parent's mappings
  const chain: Array<[string, IdMappings | undefined]> = [];
  let parent = top;
  for (const m of [CONTIGUOUS, undefined, NON_CONTIGUOUS, NON_CONTIGUOUS]) {
    const layer = await store.createLayer({ parent, ...(m ?? {}) });
    chain.push([layer.id, m]);
    const dir = path.dirname(store.driver.layerDir(layer.id));
    t.false(fs.existsSync(path.join(dir, 'diff1')), 'no shifted copy (no rotated upper)');
    t.deepEqual(fs.readdirSync(store.driver.layerDir(layer.id)), [], 'nothing copied up');
    t.deepEqual(await mountedOwners(store, layer.id), mapped(plain, m), `layer ${chain.length} shows the image's files in its own ids`);
    parent = layer.id;
  }
  t.deepEqual(ctimes(store, imageLayers), before, 'no inode of the image layers changed');

  // written into the non-contiguous layer by its root: Diff in container ids, its child shows it mapped
  const [third] = chain[2];
  const root = await store.mount(third);
  await inUserns(NON_CONTIGUOUS, root, 'echo new > new; chown 5:1005 new; chown 7:1002 home/app/data');
  await store.unmount(third, true);
  const entries = readAll(await diffFile(store, third, path.join(s.dir, 'third.diff')));
  const inDiff = new Map(entries.map((e) => [e.name, `${e.uid}:${e.gid}`]));
  t.is(inDiff.get('new'), '5:1005', 'the new file in container ids');
  t.is(inDiff.get('home/app/data'), '7:1002', 'the changed owner in container ids');
  const fourth = await mountedOwners(store, chain[3][0]);
  t.is(fourth.get('new'), host(NON_CONTIGUOUS, 5, 1005));
  t.is(fourth.get('home/app/data'), host(NON_CONTIGUOUS, 7, 1002));
  // and a plain child of it sees them in container ids
  const plainChild = await store.createLayer({ parent: chain[3][0] });
  const shown = await mountedOwners(store, plainChild.id);
  t.is(shown.get('new'), '5:1005');
  t.is(shown.get('home/app/data'), '7:1002');
  t.is(shown.get('.'), plain.get('.'));
});

maybe('overlay: a child of an idmapped container layer, with its mappings, shows the image and the container files mapped', async (t) => {
  const s = driverStore(t, 'overlay');
  const store = await s.open();
  await store.createImage({ layer: (await threeLayers(store, imageTars(s.dir)))[2], names: ['img'] });
  const image = await store.image('img');
  const plain = await mountedOwners(store, image.layer!);
  const c = await store.createContainer({ image: 'img', ...CONTIGUOUS });
  t.is((await store.layer(c.layer)).parent, image.layer, 'idmapped: on the top layer itself');
  const root = await store.mount(c.id);
  await inUserns(CONTIGUOUS, root, 'echo mine > mine; chown 3:4 mine');
  await store.unmount(c.id, true);
  const child = await store.createLayer({ parent: c.layer, ...CONTIGUOUS });
  const shown = await mountedOwners(store, child.id);
  t.is(shown.get('mine'), host(CONTIGUOUS, 3, 4));
  shown.delete('mine');
  t.deepEqual(shown, mapped(plain, CONTIGUOUS));
  const entries = readAll(await diffFile(store, c.layer, path.join(s.dir, 'c.diff')));
  t.deepEqual(entries.filter((e) => e.name === 'mine').map((e) => `${e.uid}:${e.gid}`), ['3:4'], 'the container layer\'s Diff in container ids');
});

maybe('overlay: with idmapped mounts off, a layer with mappings on a mounted parent is shifted and keeps its hardlinks', async (t) => {
  process.env[DISABLE_IDMAP_ENV.overlay] = 'yes';
  try {
    const s = driverStore(t, 'overlay');
    const store = await s.open();
    const parent = await store.createLayer({});
    const pm = await store.mount(parent.id);
    fs.mkdirSync(path.join(pm, 'd'));
    fs.writeFileSync(path.join(pm, 'd/origin'), 'body');
    fs.chownSync(path.join(pm, 'd/origin'), 2, 3);
    fs.linkSync(path.join(pm, 'd/origin'), path.join(pm, 'ln'));
    // the parent stays mounted read-write: the shift mount cannot take index=on
    const child = await store.createLayer({ parent: parent.id, ...CONTIGUOUS });
    const dir = path.dirname(store.driver.layerDir(child.id));
    t.true(fs.existsSync(path.join(dir, 'diff1')), 'shifted: a rotated upper');
    const cm = await store.mount(child.id);
    const [a, b] = ['d/origin', 'ln'].map((n) => fs.statSync(path.join(cm, n)));
    t.is(a.ino, b.ino, 'the two names are one inode');
    t.is(`${a.uid}:${a.gid}`, host(CONTIGUOUS, 2, 3));
    t.is(`${b.uid}:${b.gid}`, host(CONTIGUOUS, 2, 3));
    t.is(fs.readFileSync(path.join(cm, 'ln'), 'utf8'), 'body');
    await store.unmount(child.id, true);
    await store.unmount(parent.id, true);
  } finally {
    delete process.env[DISABLE_IDMAP_ENV.overlay];
  }
});
