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
