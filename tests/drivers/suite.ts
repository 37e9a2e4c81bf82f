// The behaviour every graph driver promises (drivers/driver.ts), as containers/storage's
// drivers/graphtest checks it: one list of tests, run by <driver>.test.ts for each driver in
// drivers/index.ts's driverNames, each test on a driver of its own (harness.ts) so a new driver
// gets them all. Trees are compared with snapshotTree (contents, modes, owners, ns times,
// xattrs, link counts, device numbers), made with plain fs calls and GNU tar, not the code under test.
import test, { type ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { DriverName } from '../../drivers/index.ts';
import type { IdMappings } from '../../lib/idmap.ts';
import { paxTar, sha256File, tarNames } from '../fixtures/store.ts';
import { makeRichTree, snapshotTree, type NodeFacts } from '../fixtures/tree.ts';
import { driverHarness, type Harness } from './harness.ts';

/** no mappings, said explicitly (an absent parentIdMappings means "the same as the layer's") */
const IDENTITY: IdMappings = { uidmap: [], gidmap: [] };

type Snapshot = Record<string, NodeFacts>;

const mapTo = (host: number): IdMappings => ({
  uidmap: [{ container_id: 0, host_id: host, size: 65536 }],
  gidmap: [{ container_id: 0, host_id: host, size: 65536 }],
});

/** A source tree made by fill in the scratch dir, and its PAX tar. */
function source(h: Harness, name: string, fill: (dir: string) => void): { src: string; tar: string } {
  const src = path.join(h.scratch, `${name}-src`);
  fs.mkdirSync(src);
  fill(src);
  return { src, tar: paxTar(src, path.join(h.scratch, `${name}.tar`)) };
}

/** The layer's full view as its mount shows it (the mount released again), and its root's [mode, uid, gid]. */
async function view(h: Harness, id: string): Promise<{ tree: Snapshot; root: number[] }> {
  const dir = await h.mount(id);
  try {
    const st = fs.lstatSync(dir);
    return { tree: snapshotTree(dir), root: [st.mode & 0o7777, st.uid, st.gid] };
  } finally {
    await h.unmount(id);
  }
}

/** Run fn on the layer's mounted view, then unmount. */
async function inMount(h: Harness, id: string, fn: (dir: string) => void): Promise<void> {
  const dir = await h.mount(id);
  try {
    fn(dir);
  } finally {
    await h.unmount(id);
  }
}

/** A base layer holding makeRichTree, applied from a tar; its source tree for comparisons. */
async function richBase(h: Harness, id: string): Promise<{ src: string; tar: string }> {
  const s = source(h, `${id}-rich`, makeRichTree);
  await h.create(id, undefined);
  await h.applyFrom(id, undefined, s.tar);
  return s;
}

/** The tar extracted by GNU tar (not our engine) into a new dir, owners, modes and xattrs kept. */
function gnuExtract(tarPath: string, dir: string): string {
  fs.mkdirSync(dir);
  execFileSync('tar', ['--xattrs', '--xattrs-include=*', '--numeric-owner', '-p', '-xf', tarPath, '-C', dir]);
  return dir;
}

/** Mount points at or below dir, from this process's mount table. */
function mountsBelow(dir: string): string[] {
  return fs
    .readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((line) => line.split(' ')[4])
    .filter((m): m is string => !!m && (m === dir || m.startsWith(dir + '/')));
}

/** Bytes of the regular files among the paths, each inode once, as read from dir. */
function fileBytes(dir: string, rels: string[], nonDirs = false): number {
  const seen = new Set<string>();
  let total = 0;
  for (const rel of rels) {
    const st = fs.lstatSync(path.join(dir, rel), { throwIfNoEntry: false });
    if (!st || (nonDirs ? st.isDirectory() : !st.isFile()) || seen.has(`${st.dev}:${st.ino}`)) continue;
    seen.add(`${st.dev}:${st.ino}`);
    total += st.size;
  }
  return total;
}

/** The snapshot with each owner as fn gives it. */
function withOwners(snap: Snapshot, fn: (id: number) => number): Snapshot {
  const out: Snapshot = {};
  for (const [rel, f] of Object.entries(snap)) out[rel] = { ...f, uid: fn(f.uid), gid: fn(f.gid) };
  return out;
}

/** Every kind of change a container makes, done through the layer's mount. */
function changeEverything(dir: string): void {
  const p = (rel: string) => path.join(dir, rel);
  fs.writeFileSync(p('b512'), 'modified');
  fs.writeFileSync(p('sub/dir/added.txt'), 'added');
  fs.rmSync(p('b513'));
  fs.rmSync(p('ünïcödé'), { recursive: true });
  fs.chmodSync(p('one'), 0o600);
  fs.mkdirSync(p('newdir/deep'), { recursive: true });
  fs.writeFileSync(p('newdir/deep/f'), 'deep');
  fs.lchownSync(p('owners/plain'), 2000, 200);
  execFileSync('setfattr', ['-n', 'user.added', '-v', 'yes', p('xattrs')]);
  fs.mkdirSync(p('linked'));
  fs.writeFileSync(p('linked/a'), 'two names');
  fs.linkSync(p('linked/a'), p('linked/b'));
  execFileSync('mknod', ['-m', '640', p('dev/newdev'), 'c', '5', '1']);
  fs.rmSync(p('rel-link'));
  fs.symlinkSync('b511', p('rel-link'));
}

/** What changeEverything changed, as Changes lists it: parents of changes are Modify, a deleted dir is one Delete. */
const EVERYTHING_CHANGED = [
  { path: '/b512', kind: 'Modify' },
  { path: '/b513', kind: 'Delete' },
  { path: '/dev', kind: 'Modify' },
  { path: '/dev/newdev', kind: 'Add' },
  { path: '/linked', kind: 'Add' },
  { path: '/linked/a', kind: 'Add' },
  { path: '/linked/b', kind: 'Add' },
  { path: '/newdir', kind: 'Add' },
  { path: '/newdir/deep', kind: 'Add' },
  { path: '/newdir/deep/f', kind: 'Add' },
  { path: '/one', kind: 'Modify' },
  { path: '/owners', kind: 'Modify' },
  { path: '/owners/plain', kind: 'Modify' },
  { path: '/rel-link', kind: 'Modify' },
  { path: '/sub', kind: 'Modify' },
  { path: '/sub/dir', kind: 'Modify' },
  { path: '/sub/dir/added.txt', kind: 'Add' },
  { path: '/xattrs', kind: 'Modify' },
  { path: '/ünïcödé', kind: 'Delete' },
];

type Behaviour = (t: ExecutionContext, h: Harness) => Promise<void>;

export const behaviours: Record<string, Behaviour> = {
  async 'a base layer is an empty 0555 dir owned by the root of its id mappings; exists says which layers are there'(t, h) {
    await h.create('plain', undefined);
    await h.create('mapped', undefined, { idMappings: mapTo(3000) });
    t.deepEqual(await view(h, 'plain'), { tree: {}, root: [0o555, 0, 0] });
    t.deepEqual(await view(h, 'mapped'), { tree: {}, root: [0o555, 3000, 3000] });
    t.true(await h.exists('plain'));
    t.false(await h.exists('never-made'));
    await t.throwsAsync(h.mount('never-made'));
    // a mapping without container root gives the root no owner: refused
    const noRoot = { uidmap: [{ container_id: 1, host_id: 5000, size: 10 }], gidmap: [{ container_id: 1, host_id: 5000, size: 10 }] };
    await t.throwsAsync(h.create('rootless', undefined, { idMappings: noRoot }), { message: /no root/ });
  },

  async 'applyDiff gives the tar tree with every entry kind, and returns its size, sha256 and owners'(t, h) {
    const { src, tar } = source(h, 'rich', makeRichTree);
    await h.create('base', undefined);
    const res = await h.applyFrom('base', undefined, tar);
    t.is(res.tarSize, fs.statSync(tar).size);
    t.is(res.digest, await sha256File(tar));
    const want = snapshotTree(src);
    const files = Object.keys(want).filter((rel) => want[rel].type === 'file');
    t.is(res.size, fileBytes(src, files), 'file bodies, each hardlinked inode once');
    const ids = (k: 'uid' | 'gid') => [...new Set([fs.lstatSync(src)[k], ...Object.values(want).map((f) => f[k])])].sort((a, b) => a - b);
    t.deepEqual([res.uids, res.gids], [ids('uid'), ids('gid')]);
    t.deepEqual((await view(h, 'base')).tree, want);
  },

  async 'a child sees its parent\'s files; what it changes, the parent does not see'(t, h) {
    const { src } = await richBase(h, 'p');
    await h.create('c', 'p');
    const want = snapshotTree(src);
    t.deepEqual((await view(h, 'c')).tree, want);
    t.deepEqual(await h.changes('c', 'p'), []);
    t.is(await h.diffSize('c', 'p'), 0);
    await inMount(h, 'c', changeEverything);
    t.deepEqual((await view(h, 'p')).tree, want, 'the parent is as it was');
    // a grandchild sees the child's view, changes included
    await h.create('g', 'c');
    t.deepEqual((await view(h, 'g')).tree, (await view(h, 'c')).tree);
  },

  async 'changes lists exactly what was added, modified and deleted; diffSize is the bytes of the changed names but directories'(t, h) {
    await richBase(h, 'p');
    await h.create('c', 'p');
    await inMount(h, 'c', changeEverything);
    const changes = await h.changes('c', 'p');
    t.deepEqual(changes, EVERYTHING_CHANGED);
    const dir = await h.mount('c');
    try {
      const written = changes.filter((c) => c.kind !== 'Delete').map((c) => c.path.slice(1));
      // every name but directories, a symlink as its target's length: the peer's ChangesSize
      t.is(await h.diffSize('c', 'p'), fileBytes(dir, written, true));
    } finally {
      await h.unmount('c');
    }
  },

  async 'the diff of a child, applied onto its parent in a new layer, gives the child\'s tree, the same bytes each time'(t, h) {
    await richBase(h, 'p');
    await h.create('c', 'p');
    await inMount(h, 'c', changeEverything);
    const out = path.join(h.scratch, 'c.tar');
    await h.diffTo('c', 'p', out);
    await h.create('again', 'p');
    const res = await h.applyFrom('again', 'p', out);
    t.is(res.tarSize, fs.statSync(out).size);
    t.is(res.digest, await sha256File(out));
    t.deepEqual((await view(h, 'again')).tree, (await view(h, 'c')).tree);
    // GNU tar reads the same entries: the changed paths, a whiteout for each deletion
    const isDir = new Set(Object.entries((await view(h, 'c')).tree).filter(([, f]) => f.type === 'dir').map(([rel]) => rel));
    const entry = ({ path: p, kind }: { path: string; kind: string }) => {
      const rel = p.slice(1);
      if (kind === 'Delete') return path.posix.join(path.posix.dirname(rel), `.wh.${path.posix.basename(rel)}`);
      return isDir.has(rel) ? `${rel}/` : rel;
    };
    t.deepEqual(tarNames(out).map((n) => n.replace(/^\.\//, '')), EVERYTHING_CHANGED.map(entry).sort());
    const twice = path.join(h.scratch, 'c2.tar');
    await h.diffTo('c', 'p', twice);
    t.true(fs.readFileSync(twice).equals(fs.readFileSync(out)), 'the same two layers give the same tar');
    // the whole tree of a base layer, diffed and applied onto a fresh base, is the same tree
    const full = path.join(h.scratch, 'p.tar');
    await h.diffTo('p', undefined, full);
    await h.create('copy', undefined);
    await h.applyFrom('copy', undefined, full);
    const whole = await view(h, 'p');
    // the root is left out: p's took the mode of its tar's '.' entry (K2), and a diff carries no
    // '.' entry, as the peer's does not (so the copy's root is the driver's)
    t.deepEqual((await view(h, 'copy')).tree, whole.tree);
    t.deepEqual(snapshotTree(gnuExtract(full, path.join(h.scratch, 'p-by-gnu-tar'))), whole.tree, 'GNU tar reads the same tree from it');
  },

  async 'whiteouts in a tar delete the parent\'s file; an opaque dir hides the parent\'s contents'(t, h) {
    const parent = source(h, 'p', (dir) => {
      fs.mkdirSync(path.join(dir, 'opq'));
      fs.writeFileSync(path.join(dir, 'opq/hidden'), 'h');
      fs.writeFileSync(path.join(dir, 'gone'), 'g');
      fs.writeFileSync(path.join(dir, 'kept'), 'k');
    });
    const child = source(h, 'c', (dir) => {
      fs.writeFileSync(path.join(dir, '.wh.gone'), '');
      fs.mkdirSync(path.join(dir, 'opq'));
      fs.writeFileSync(path.join(dir, 'opq/.wh..wh..opq'), '');
      fs.writeFileSync(path.join(dir, 'opq/new'), 'n');
    });
    await h.create('p', undefined);
    await h.applyFrom('p', undefined, parent.tar);
    await h.create('c', 'p');
    await h.applyFrom('c', 'p', child.tar);
    const seen = (await view(h, 'c')).tree;
    t.deepEqual(Object.keys(seen).sort(), ['kept', 'opq', 'opq/new']);
    t.is(seen['opq/new'].sha256, snapshotTree(child.src)['opq/new'].sha256);
    t.deepEqual((await view(h, 'p')).tree, snapshotTree(parent.src), 'the parent keeps what the child hides');
    t.deepEqual(await h.changes('c', 'p'), [
      { path: '/gone', kind: 'Delete' },
      { path: '/opq', kind: 'Modify' },
      { path: '/opq/hidden', kind: 'Delete' },
      { path: '/opq/new', kind: 'Add' },
    ]);
    t.is(await h.diffSize('c', 'p'), 1);
    // the child's diff carries the deletions as whiteouts: applied onto the parent again, the same view
    const out = path.join(h.scratch, 'c-diff.tar');
    await h.diffTo('c', 'p', out);
    await h.create('again', 'p');
    await h.applyFrom('again', 'p', out);
    t.deepEqual((await view(h, 'again')).tree, seen);
    // and a grandchild sees the child's view
    await h.create('g', 'c');
    t.deepEqual((await view(h, 'g')).tree, seen);
  },

  async 'createFromTemplate gives the template\'s tree and leaves the template as it was'(t, h) {
    const { src } = await richBase(h, 't');
    await h.createFromTemplate('n', 't');
    const want = await view(h, 't');
    t.deepEqual((await view(h, 'n')).tree, snapshotTree(src));
    t.deepEqual((await view(h, 'n')).root, want.root);
    await inMount(h, 'n', (dir) => {
      fs.writeFileSync(path.join(dir, 'b512'), 'changed in the copy');
      fs.rmSync(path.join(dir, 'sub'), { recursive: true });
    });
    t.deepEqual(await view(h, 't'), want, 'the template is untouched');
    if ((await h.dependents('t')).includes('n')) {
      // the copy stands on the template: it goes first, the template after it
      await h.remove('n');
      t.deepEqual(await view(h, 't'), want);
      await h.remove('t');
    } else {
      // nothing stands on the template: it can go, and the copy keeps its own tree
      await h.remove('t');
      const copy = (await view(h, 'n')).tree;
      t.is(copy['b512'].size, 'changed in the copy'.length);
      t.false('sub' in copy);
      t.deepEqual(copy['big'], snapshotTree(src)['big']);
    }
    t.false(await h.exists('t'));
  },

  async 'remove takes the layer away, mounted or not, leaves its parent intact, and may be repeated'(t, h) {
    const { src } = await richBase(h, 'p');
    await h.create('c', 'p');
    await inMount(h, 'c', changeEverything);
    await h.create('m', 'p');
    await h.mount('m');
    await h.remove('m');
    t.false(await h.exists('m'));
    await h.remove('c');
    t.false(await h.exists('c'));
    await h.remove('c');
    t.deepEqual(mountsBelow(h.home), []);
    t.deepEqual((await view(h, 'p')).tree, snapshotTree(src));
    t.true(await h.exists('p'));
    await t.throwsAsync(h.mount('c'));
  },

  async 'mount twice gives the same dir; what is written there stays after unmount, which may be repeated'(t, h) {
    await richBase(h, 'p');
    await h.create('c', 'p');
    const first = await h.mount('c');
    const second = await h.mount('c');
    t.is(second, first);
    fs.writeFileSync(path.join(first, 'written'), 'through the mount');
    t.is(fs.readFileSync(path.join(second, 'big')).length, (1 << 20) * 3 + 7, 'the parent\'s files are in the view');
    await h.unmount('c');
    t.deepEqual(mountsBelow(h.home), [], 'one unmount releases the mount: the store keeps the count');
    await h.unmount('c');
    await h.unmount('p');
    const again = await h.mount('c');
    try {
      t.is(fs.readFileSync(path.join(again, 'written'), 'utf8'), 'through the mount');
    } finally {
      await h.unmount('c');
    }
    t.deepEqual(await h.changes('c', 'p'), [{ path: '/written', kind: 'Add' }]);
  },

  async 'updateIdMappings moves every owner into the new mappings and back; ids outside go to 65534'(t, h) {
    const { src } = await richBase(h, 'p');
    await h.create('c', 'p');
    const m = mapTo(100000);
    await h.updateIdMappings('c', undefined, m);
    const want = snapshotTree(src);
    const shifted = await view(h, 'c');
    // the root took the mode of the tar's '.' entry, as in the peer (docs/tar-engine.md, "One
    // tree", K2), and is owned by the new mappings' root
    t.deepEqual(shifted.root, [fs.statSync(src).mode & 0o7777, 100000, 100000]);
    t.deepEqual(shifted.tree, withOwners(want, (id) => (id < 65536 ? id + 100000 : 65534)));
    t.deepEqual((await view(h, 'p')).tree, want, 'the parent keeps its owners');
    // in container ids the shifted child differs from its parent only where an owner had no place
    t.deepEqual(await h.changes('c', 'p', { idMappings: m, parentIdMappings: IDENTITY }), [
      { path: '/owners', kind: 'Modify' },
      { path: '/owners/big', kind: 'Modify' },
    ]);
    await h.updateIdMappings('c', m, undefined);
    t.deepEqual((await view(h, 'c')).tree, withOwners(want, (id) => (id >= 65536 ? 65534 : id)));
  },

  async 'id mappings: applyDiff writes host ids, diff writes container ids back; an id outside is refused'(t, h) {
    const { src, tar } = source(h, 'owned', (dir) => {
      fs.mkdirSync(path.join(dir, 'home'));
      fs.writeFileSync(path.join(dir, 'home/user-file'), 'user');
      fs.lchownSync(path.join(dir, 'home/user-file'), 1000, 100);
      fs.symlinkSync('user-file', path.join(dir, 'home/link'));
      fs.lchownSync(path.join(dir, 'home/link'), 2, 3);
      fs.writeFileSync(path.join(dir, 'root-file'), 'root');
    });
    const m = mapTo(100000);
    await h.create('mapped', undefined, { idMappings: m });
    const res = await h.applyFrom('mapped', undefined, tar, { idMappings: m });
    t.deepEqual([res.uids, res.gids], [[100000, 100002, 101000], [100000, 100003, 100100]]);
    const want = snapshotTree(src);
    // the root takes the tar's '.' entry (K2 in docs/tar-engine.md), its owner mapped
    t.deepEqual(await view(h, 'mapped'), { tree: withOwners(want, (id) => id + 100000), root: [fs.statSync(src).mode & 0o7777, 100000, 100000] });
    const out = path.join(h.scratch, 'back.tar');
    await h.diffTo('mapped', undefined, out, { idMappings: m });
    await h.create('plain', undefined);
    await h.applyFrom('plain', undefined, out);
    t.deepEqual((await view(h, 'plain')).tree, want);

    const outside = source(h, 'outside', (dir) => {
      fs.writeFileSync(path.join(dir, 'far'), 'far');
      fs.lchownSync(path.join(dir, 'far'), 70000, 0);
    });
    await h.create('refused', undefined, { idMappings: m });
    await t.throwsAsync(h.applyFrom('refused', undefined, outside.tar, { idMappings: m }), { message: /far: uid 70000 is outside the id mappings/ });
  },

  async 'status gives string pairs naming the backing filesystem'(t, h) {
    const status = await h.status();
    t.true(status.length > 0);
    for (const pair of status) t.true(pair.length === 2 && typeof pair[0] === 'string' && typeof pair[1] === 'string', JSON.stringify(pair));
    t.is(new Map(status).get('Backing Filesystem'), h.backingFs);
  },

  async 'cleanup leaves nothing mounted and every layer as it was'(t, h) {
    const { src } = await richBase(h, 'p');
    await h.create('c', 'p');
    await h.create('g', 'c');
    const dirs = [await h.mount('p'), await h.mount('c'), await h.mount('g')];
    fs.writeFileSync(path.join(dirs[2], 'in-g'), 'g');
    await h.cleanup();
    t.deepEqual(mountsBelow(h.home), []);
    for (const id of ['p', 'c', 'g']) t.true(await h.exists(id));
    const g = await h.mount('g');
    try {
      t.is(fs.readFileSync(path.join(g, 'in-g'), 'utf8'), 'g', 'what was written before cleanup is kept');
      fs.rmSync(path.join(g, 'in-g'));
      t.deepEqual(snapshotTree(g), snapshotTree(src));
    } finally {
      await h.unmount('g');
    }
  },
};

/** Register every behaviour as a test of the driver `name` (the test file's one call). */
export function driverSuite(name: DriverName): void {
  const open = driverHarness(name);
  for (const [title, run] of Object.entries(behaviours)) test(`${name}: ${title}`, (t) => run(t, open(t)));
}
