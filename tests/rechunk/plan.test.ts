// The rechunk heuristic and plan checks (lib/rechunk/plan.ts), on inventories made here: big
// files get layers of their own up to half the budget, packages and directories group the rest,
// --like keeps indexes, hardlinked names stay together, and a plan must name every leaf once.
import test from 'ava';
import { BIG_FILE_BYTES, checkPlan, planLayers, type Leaf } from '../../lib/rechunk/plan.ts';

const MB = 1 << 20;

/** 4 big files, 3 packages' files in usr/lib, a few dirs of small files, a hardlink pair */
function leaves(): Leaf[] {
  const out: Leaf[] = [];
  for (let i = 0; i < 4; i++) out.push({ path: `opt/big${i}`, size: BIG_FILE_BYTES + i * MB });
  for (const pkg of ['a', 'b', 'c']) for (let i = 0; i < 10; i++) out.push({ path: `usr/lib/${pkg}/f${i}`, size: 100_000 });
  for (const dir of ['etc', 'usr/share/doc', 'usr/share/man', 'var']) for (let i = 0; i < 20; i++) out.push({ path: `${dir}/x${i}`, size: 20_000 });
  out.push({ path: 'usr/bin/tool', size: 50_000, inode: '1:7' }, { path: 'usr/sbin/tool', size: 50_000, inode: '1:7' });
  out.push({ path: 'empty-dir', size: 0 });
  return out;
}

const layerOf = (plan: { layers: Array<{ paths: string[] }> }, p: string) => plan.layers.findIndex((l) => l.paths.includes(p));

test('big files get their own layers, at most half the budget, biggest first', (t) => {
  const plan = planLayers({ leaves: leaves(), maxLayers: 6 });
  t.true(plan.layers.length <= 6);
  t.deepEqual(plan.layers.slice(0, 3).map((l) => l.paths), [['opt/big3'], ['opt/big2'], ['opt/big1']]);
  t.is(plan.layers.filter((l) => l.paths.includes('opt/big0')).length, 1);
  t.true(layerOf(plan, 'opt/big0') >= 3);
});

test('every leaf in exactly one layer, hardlinked names together, paths sorted', (t) => {
  for (const maxLayers of [1, 2, 3, 8, 32]) {
    const plan = planLayers({ leaves: leaves(), maxLayers });
    const all = plan.layers.flatMap((l) => l.paths);
    t.is(all.length, leaves().length);
    t.is(new Set(all).size, all.length);
    t.is(layerOf(plan, 'usr/bin/tool'), layerOf(plan, 'usr/sbin/tool'));
    for (const l of plan.layers) t.deepEqual(l.paths, [...l.paths].sort());
    t.true(plan.layers.length <= maxLayers);
  }
});

test('the same input gives the same plan; input order does not matter', (t) => {
  const a = planLayers({ leaves: leaves(), maxLayers: 8 });
  const b = planLayers({ leaves: leaves().reverse(), maxLayers: 8 });
  t.deepEqual(a.layers.map((l) => l.paths), b.layers.map((l) => l.paths));
});

test('package owners group files across directories; a heavy directory is split by subdirectory', (t) => {
  const owners = new Map([...Array(10).keys()].flatMap((i) => [[`usr/lib/a/f${i}`, 'pkg-a'], [`usr/share/doc/x${i}`, 'pkg-a']] as Array<[string, string]>));
  const plan = planLayers({ leaves: leaves(), maxLayers: 8, owners });
  const home = layerOf(plan, 'usr/lib/a/f0');
  t.is(layerOf(plan, 'usr/share/doc/x3'), home);
  t.true(plan.layers[home].groups!.includes('pkg:pkg-a'));
  const groups = plan.layers.flatMap((l) => l.groups ?? []);
  // usr/lib weighs more than a layer's share: split into its packages' directories; usr/share does not
  t.true(groups.includes('usr/lib/b') && groups.includes('usr/share'), groups.join(' '));
});

test('--like: files keep their previous index; a new file joins its directory', (t) => {
  const first = planLayers({ leaves: leaves(), maxLayers: 8 });
  const like = new Map(first.layers.flatMap((l, i) => l.paths.map((p) => [p, i] as [string, number])));
  const grown = [...leaves(), { path: 'usr/lib/b/f99', size: 10 }];
  const next = planLayers({ leaves: grown, maxLayers: 8, like });
  t.is(next.layers.length, first.layers.length);
  first.layers.forEach((l, i) => {
    const added = next.layers[i].paths.filter((p) => !l.paths.includes(p));
    t.deepEqual(added, i === layerOf(first, 'usr/lib/b/f0') ? ['usr/lib/b/f99'] : []);
  });
});

test('a plan must name every leaf once and only paths of the image', (t) => {
  const ls = leaves();
  const isDir = (p: string) => (ls.some((l) => l.path === p) ? false : ls.some((l) => l.path.startsWith(`${p}/`)) ? true : undefined);
  const paths = ls.map((l) => l.path);
  const ok = checkPlan({ version: 1, layers: [{ paths: paths.map((p) => `/${p}`) }] }, ls, isDir, 3, 'p.json');
  t.deepEqual(ok.layers[0].paths, paths);
  t.throws(() => checkPlan({ version: 1, layers: [{ paths: paths.slice(1) }] }, ls, isDir, 3, 'p.json'), { message: /p\.json: 1 path\(s\) of the image are in no layer: opt\/big0/ });
  t.throws(() => checkPlan({ version: 1, layers: [{ paths }, { paths: ['etc/x1'] }] }, ls, isDir, 3, 'p.json'), { message: /layer 1: etc\/x1 is in the plan twice/ });
  t.throws(() => checkPlan({ version: 1, layers: [{ paths: [...paths, 'nope'] }] }, ls, isDir, 3, 'p.json'), { message: /nope is not in the image/ });
  t.throws(() => checkPlan({ version: 1, layers: [{ paths }, { paths: ['usr'] }] }, ls, isDir, 1, 'p.json'), { message: /2 layers, more than the 1 allowed/ });
  t.throws(() => checkPlan({ layers: [] }, ls, isDir, 1, 'p.json'), { message: /not a rechunk plan/ });
});
