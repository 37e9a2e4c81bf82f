// Rechunk on each driver (docs/rechunk.md): an image of six layers with deletions, an opaque
// directory and overrides, rechunked to 3, 8 and 32 layers, has the same flattened tree (every
// fact of every file), each new layer's recorded digest is that of the bytes `diff` gives, a
// second run gives the same digests, and a rebuilt image with one changed file rechunked
// --like the first differs in one layer digest. overlay runs on xfs (reflinks), btrfs on btrfs,
// vfs in a temp dir.
import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import type { RecordStore } from '../../lib/store/store.ts';
import { canMount, tempDir } from '../fixtures/fs.ts';
import { sha256File } from '../fixtures/store.ts';
import { makeRichTree, snapshotTree, writeFileAt } from '../fixtures/tree.ts';
import { driverStore, type DriverStore } from '../store/fixtures.ts';

const DRIVERS = ['vfs', 'overlay', 'btrfs'] as const;
type DriverName = (typeof DRIVERS)[number];

/** mtimes later than this are clamped; every file the tests make now is later */
const EPOCH = 1_700_000_000;

interface RechunkStore extends DriverStore {
  /** inputs (tars, plans), outside the store's filesystem */
  work: string;
}

/** overlay on xfs, where files can be cloned (rechunk reflinks their data) */
function rechunkStore(t: ExecutionContext, driver: DriverName): RechunkStore {
  return { ...driverStore(t, driver, 'xfs'), work: tempDir(t) };
}

const write = writeFileAt;

/** Bytes that are not all the same (so a reflink and a copy are told apart by nothing but space). */
const pattern = (n: number, seed: number) => {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (i * 13 + seed + (i >> 12)) & 0xff;
  return b;
};

/**
 * Six layer tars: a rich base, a /usr of packages and big files, deletions and an opaque
 * directory, overrides (content, mode, a symlink made a file), dpkg lists, and a top layer
 * whose etc/motd says `motd`.
 */
function sixTars(work: string, motd: string, tag: string): string[] {
  const trees: Array<(d: string) => void> = [
    (d) => makeRichTree(d),
    (d) => {
      for (const pkg of ['alpha', 'beta', 'gamma'])
        for (let i = 0; i < 6; i++) write(d, `usr/lib/${pkg}/f${i}`, pattern(3000 + i * 5000, i));
      write(d, 'usr/share/big1', pattern(5 << 20, 1));
      write(d, 'usr/share/big2', pattern(6 << 20, 2));
      write(d, 'usr/bin/a', pattern(80_000, 3), 0o755);
      fs.linkSync(path.join(d, 'usr/bin/a'), path.join(d, 'usr/bin/a-link'));
      fs.mkdirSync(path.join(d, 'opq/old'), { recursive: true });
      write(d, 'opq/keep-not', 'hidden later\n');
    },
    (d) => {
      write(d, '.wh.one', '');
      write(d, 'sub/.wh..wh..opq', '');
      write(d, 'sub/fresh', 'fresh\n');
      write(d, 'opq/.wh..wh..opq', '');
      write(d, 'opq/new', 'new\n');
      write(d, 'usr/lib/beta/.wh.f2', '');
    },
    (d) => {
      write(d, 'b512', 'overridden\n');
      write(d, 'rel-link', 'a file now\n', 0o600);
      write(d, 'usr/lib/alpha/f1', pattern(9000, 9), 0o700);
    },
    (d) => {
      for (const pkg of ['alpha', 'beta']) write(d, `var/lib/dpkg/info/${pkg}.list`, `/.\n/usr\n/usr/lib\n/usr/lib/${pkg}\n${[0, 1, 2, 3, 4, 5].map((i) => `/usr/lib/${pkg}/f${i}`).join('\n')}\n`);
      write(d, 'etc/passwd', 'root:x:0:0::/root:/bin/sh\n');
    },
    (d) => write(d, 'etc/motd', motd),
  ];
  return trees.map((fill, i) => {
    const d = path.join(work, `${tag}-tree${i}`);
    fs.mkdirSync(d, { recursive: true });
    fill(d);
    const tar = path.join(work, `${tag}-${i}.tar`);
    execFileSync('tar', ['--format=pax', '--xattrs', '--xattrs-include=*', '--numeric-owner', '-C', d, '-cf', tar, '.']);
    return tar;
  });
}

async function importImage(store: RecordStore, tars: string[], name: string): Promise<string> {
  let parent: string | undefined;
  for (const tar of tars) parent = (await store.createLayer({ parent }, tar)).id;
  return (await store.createImage({ layer: parent, names: [name] })).id;
}

/** The image's flattened tree, every fact of every node, through a read-only mount. */
async function flattened(store: RecordStore, image: string): Promise<Record<string, unknown>> {
  const top = (await store.image(image)).layer!;
  const root = await store.mount(top, { readOnly: true });
  try {
    const st = fs.statSync(root);
    return { '.': { mode: (st.mode & 0o7777).toString(8), uid: st.uid, gid: st.gid }, ...snapshotTree(root) };
  } finally {
    await store.unmount(top);
  }
}

/** The image's layers, bottom first. */
async function chain(store: RecordStore, image: string): Promise<string[]> {
  const out: string[] = [];
  for (let id = (await store.image(image)).layer; id !== undefined; id = (await store.layer(id)).parent) out.unshift(id);
  return out;
}

for (const driver of DRIVERS) {
  test.serial(`${driver}: rechunked to 3, 8 and 32 layers: same tree, true digests, same digests again`, async (t) => {
    if (!canMount) return t.pass('needs root');
    const s = rechunkStore(t, driver);
    const store = await s.open();
    t.teardown(() => store.close());
    await importImage(store, sixTars(s.work, 'hello\n', 'v1'), 'img');
    const want = await flattened(store, 'img');
    for (const n of [3, 8, 32]) {
      const r = await store.rechunk('img', { maxLayers: n, names: [`r${n}`], sourceDateEpoch: EPOCH });
      t.true(r.layers.length >= 2 && r.layers.length <= n, `${r.layers.length} layers for ${n}`);
      t.deepEqual(await chain(store, `r${n}`), r.layers.map((l) => l.id));
      const got = await flattened(store, `r${n}`);
      // mtimes later than the epoch are clamped in the new layers: compare the rest as it is
      const clamp = (tree: Record<string, unknown>) =>
        Object.fromEntries(Object.entries(tree).map(([k, v]) => {
          const f = v as { mtimeNs?: string };
          return [k, f.mtimeNs !== undefined && BigInt(f.mtimeNs) >= BigInt(EPOCH) * 1_000_000_000n ? { ...f, mtimeNs: `${EPOCH}000000000` } : f];
        }));
      t.deepEqual(got, clamp(want), `${n} layers`);
      for (const layer of r.layers) {
        const file = path.join(s.work, 'diff.tar');
        const fd = fs.openSync(file, 'w');
        await store.diff(layer.id, fd).finally(() => fs.closeSync(fd));
        t.is(await sha256File(file), layer['diff-digest']!, `layer ${layer.id} of ${n}`);
        t.is(fs.statSync(file).size, layer['diff-size']!);
      }
      const again = await store.rechunk('img', { maxLayers: n, names: [`again${n}`], sourceDateEpoch: EPOCH });
      t.deepEqual(again.layers.map((l) => l['diff-digest']), r.layers.map((l) => l['diff-digest']), `${n} layers again`);
    }
    // with 3 layers the two big files may take one layer: the rest packs into what is left
    const dry = await store.rechunk('img', { maxLayers: 3, dryRun: true });
    t.true(dry.plan.layers.some((l) => l.groups?.[0] === 'big:usr/share/big2'));
    t.true(dry.plan.layers.some((l) => l.groups?.includes('pkg:alpha')));
  });

  test.serial(`${driver}: a rebuilt image with one file changed, rechunked --like the first, differs in one layer`, async (t) => {
    if (!canMount) return t.pass('needs root');
    const s = rechunkStore(t, driver);
    const store = await s.open();
    t.teardown(() => store.close());
    const v1 = sixTars(s.work, 'hello\n', 'v1');
    await importImage(store, v1, 'v1');
    // the rebuild: every tree made again (new mtimes, clamped), the top one with another motd
    await importImage(store, [...sixTars(s.work, 'hello\n', 'v2').slice(0, 5), sixTars(s.work, 'changed\n', 'v3')[5]], 'v2');
    const r1 = await store.rechunk('v1', { maxLayers: 8, names: ['r1'], sourceDateEpoch: EPOCH });
    const r2 = await store.rechunk('v2', { maxLayers: 8, names: ['r2'], like: 'r1', sourceDateEpoch: EPOCH });
    const d1 = r1.layers.map((l) => l['diff-digest']);
    const d2 = r2.layers.map((l) => l['diff-digest']);
    t.is(d2.length, d1.length);
    t.is(d1.filter((d, i) => d !== d2[i]).length, 1);
    t.is(((await flattened(store, 'r2'))['etc/motd'] as { sha256: string }).sha256, ((await flattened(store, 'v2'))['etc/motd'] as { sha256: string }).sha256);
  });
}

test.serial('vfs: CLI: --dry-run plan, --plan gives the same layers, a bad plan leaves nothing', async (t) => {
  if (!canMount) return t.pass('needs root');
  const s = rechunkStore(t, 'vfs');
  const store = await s.open();
  t.teardown(() => store.close());
  await importImage(store, sixTars(s.work, 'hello\n', 'v1'), 'img');
  await store.close();
  const dry = await s.cli(['rechunk', 'img', '--max-layers', '5', '--dry-run', '--source-date-epoch', String(EPOCH)]);
  t.is(dry.code, 0, dry.stderr);
  const plan = JSON.parse(dry.stdout);
  t.is(plan.version, 1);
  t.is(plan.sourceDateEpoch, EPOCH);
  t.true(plan.layers.length <= 5);
  const planFile = path.join(s.work, 'plan.json');
  fs.writeFileSync(planFile, JSON.stringify(plan));
  const byHeuristic = await s.cli(['rechunk', 'img', '-m', '5', '-n', 'h', '--source-date-epoch', String(EPOCH)]);
  t.is(byHeuristic.code, 0, byHeuristic.stderr);
  const byPlan = await s.cli(['rechunk', 'img', '--plan', planFile, '-n', 'p']);
  t.is(byPlan.code, 0, byPlan.stderr);
  t.regex(byPlan.stdout, /^[0-9a-f]{64}\n\tp\n$/);
  const digests = async (name: string) => {
    const reopened = await s.open();
    try {
      return await Promise.all((await chain(reopened, name)).map(async (id) => (await reopened.layer(id))['diff-digest']));
    } finally {
      await reopened.close();
    }
  };
  t.deepEqual(await digests('p'), await digests('h'));
  // a plan that leaves a file out: refused before anything is made, naming the file
  const layersBefore = (await s.cli(['layers', '-q'])).stdout;
  plan.layers[0].paths = plan.layers[0].paths.slice(1);
  if (plan.layers[0].paths.length === 0) plan.layers.shift();
  fs.writeFileSync(planFile, JSON.stringify(plan));
  const bad = await s.cli(['rechunk', 'img', '--plan', planFile, '-n', 'bad']);
  t.is(bad.code, 1);
  t.regex(bad.stderr, /plan\.json: 1 path\(s\) of the image are in no layer: /);
  t.is((await s.cli(['layers', '-q'])).stdout, layersBefore);
  t.is((await s.cli(['image', 'bad'])).code, 1);
  // usage: no budget, no name
  t.is((await s.cli(['rechunk', 'img', '-n', 'x'])).code, 2);
  t.is((await s.cli(['rechunk', 'img', '-m', '3'])).code, 2);
  t.is((await s.cli(['rechunk', 'img', '-m', '0', '-n', 'x'])).code, 2);
});

test.serial('vfs: a mapped image: new layers keep its mappings, their tars hold container ids', async (t) => {
  if (!canMount) return t.pass('needs root');
  const s = rechunkStore(t, 'vfs');
  const store = await s.open();
  t.teardown(() => store.close());
  const m = [{ container_id: 0, host_id: 100_000, size: 65536 }];
  const tars = sixTars(s.work, 'hello\n', 'v1').slice(1, 3);
  let parent: string | undefined;
  for (const tar of tars) parent = (await store.createLayer({ parent, uidmap: m, gidmap: m }, tar)).id;
  await store.createImage({ layer: parent, names: ['mapped'] });
  const r = await store.rechunk('mapped', { maxLayers: 4, names: ['r'] });
  for (const l of r.layers) {
    t.deepEqual(l.uidmap, m);
    t.true(l.uidset!.every((u) => u < 65536), `uidset ${l.uidset}`);
  }
  const want = await flattened(store, 'mapped');
  t.is((want['usr/bin/a'] as { uid: number }).uid, 100_000);
  const clamp = (tree: Record<string, unknown>) => Object.fromEntries(Object.entries(tree).map(([k, v]) => [k, { ...(v as object), mtimeNs: '-' }]));
  t.deepEqual(clamp(await flattened(store, 'r')), clamp(want));
});

for (const driver of ['overlay', 'btrfs'] as const) {
  test.serial(`${driver}: the new layers' data is cloned, small files too: 48 MiB rechunked costs under 4 MiB of new space`, async (t) => {
    if (!canMount) return t.pass('needs root');
    const s = rechunkStore(t, driver);
    const store = await s.open();
    t.teardown(() => store.close());
    const d = path.join(s.work, 'data');
    // big files (layers of their own) and tails not block-aligned
    for (let i = 0; i < 8; i++) write(d, `data/f${i}`, pattern((5 << 20) + i * 777, i));
    // and 8 MiB of files under 64 KiB, above btrfs's max_inline (which btrfs copied, not cloned,
    // before whole files were cloned with FICLONE: docs/performance.md, "Rechunk")
    for (let i = 0; i < 400; i++) write(d, `data/small/s${i}`, pattern(20_000 + i, 100 + i));
    const tar = path.join(s.work, 'data.tar');
    execFileSync('tar', ['--numeric-owner', '-C', d, '-cf', tar, '.']);
    await importImage(store, [tar], 'data');
    const used = () => {
      execFileSync('sync', ['-f', s.root]);
      const st = fs.statfsSync(s.root);
      return (st.blocks - st.bfree) * st.bsize;
    };
    const before = used();
    const r = await store.rechunk('data', { maxLayers: 4, names: ['r'] });
    const grew = used() - before;
    t.is(r.layers.length, 4);
    t.true(grew < 4 << 20, `${grew} bytes new`);
  });
}
