// One store shared with the peer at the same time (docs/sharing.md): both tools take the same lock
// files in the same order and reload what the other wrote, so writers of either tool at once lose
// no record, and a `layers` writer killed while holding the locks does not hold up the peer; with
// no flags both read one storage.conf and open one store.
import test from 'ava';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { dirOn } from '../fixtures/fs.ts';
import { bash, BIN, gnuTar, runCli, tempStore } from '../fixtures/store.ts';

const ID = /^[0-9a-f]{64}$/;
const ids = (out: string) => out.split('\n').filter((l) => ID.test(l));

test('4 containers-storage and 4 layers processes at once: both list exactly the records that should exist', async (t) => {
  const s = tempStore(t);
  await s.cli(['create-layer', '-n', 'seed']);
  const ROUNDS = 3;
  // Each worker, each round: a layer with an image on it, a scratch layer deleted at once, and
  // the image of the round before deleted with its layer. Left: the last round's layer and image.
  const worker = (tool: string, w: string) => `
    set -e
    st() { ${tool} -g "$ROOT" -R "$RUN" -s vfs "$@"; }
    for r in $(seq 1 ${ROUNDS}); do
      st create-layer -n ${w}-l$r seed >/dev/null
      st create-image -n ${w}-i$r ${w}-l$r >/dev/null
      st create-layer -n ${w}-x$r >/dev/null
      st delete-layer ${w}-x$r >/dev/null
      if [ $r -gt 1 ]; then st delete-image ${w}-i$((r-1)) >/dev/null; fi
    done`;
  const env = { ROOT: s.root, RUN: s.runroot };
  const workers = [
    ...['p0', 'p1', 'p2', 'p3'].map((w) => bash(worker('containers-storage', w), env)),
    ...['o0', 'o1', 'o2', 'o3'].map((w) => bash(worker(`node ${BIN}`, w), env)),
  ];
  const results = await Promise.all(workers);
  for (const r of results) t.is(r.code, 0, r.out);

  const all = ['p0', 'p1', 'p2', 'p3', 'o0', 'o1', 'o2', 'o3'];
  const wantLayers = ['seed', ...all.map((w) => `${w}-l${ROUNDS}`)].sort();
  const wantImages = all.map((w) => `${w}-i${ROUNDS}`).sort();
  for (const [tool, run] of [
    ['layers', (a: string[]) => s.cli(a)],
    ['containers-storage', async (a: string[]) => s.peer(a)],
  ] as const) {
    const layers = await run(['layers']);
    t.is(layers.code, 0, layers.stderr);
    const layerNames = [...layers.stdout.matchAll(/^\tname: (.*)$/gm)].map((m) => m[1]).sort();
    t.deepEqual(layerNames, wantLayers, `${tool} layers`);
    t.is(new Set(ids(layers.stdout)).size, wantLayers.length, `${tool}: one record per layer`);
    const images = await run(['images']);
    t.is(images.code, 0, images.stderr);
    const imageNames = [...images.stdout.matchAll(/^\tname: (.*)$/gm)].map((m) => m[1]).sort();
    t.deepEqual(imageNames, wantImages, `${tool} images`);
    t.is(ids(images.stdout).length, wantImages.length, `${tool}: one record per image`);
  }
  // and the files agree with the records: one vfs directory per layer left
  t.deepEqual(fs.readdirSync(path.join(s.root, 'vfs', 'dir')).sort(), s.records().map((r) => r.id as string).sort());
});

test('a layers writer killed with SIGKILL while holding the locks: the peer goes on at once', async (t) => {
  const s = tempStore(t);
  const tree = path.join(s.dir, 'big');
  fs.mkdirSync(tree);
  // ~150 MB in 600 files: the import is caught holding the locks, its record incomplete
  const chunk = Buffer.alloc(256 << 10, 7);
  for (let i = 0; i < 600; i++) fs.writeFileSync(path.join(tree, `f${i}`), chunk);
  const tar = gnuTar(tree, path.join(s.dir, 'big.tar'));
  fs.rmSync(tree, { recursive: true });
  const keep = (await s.cli(['create-layer', '-n', 'keep'])).stdout.slice(0, 64);
  const layersJson = path.join(s.root, 'vfs-layers', 'layers.json');
  const child = spawn(process.execPath, [BIN, '-g', s.root, '-R', s.runroot, '-s', 'vfs', 'import-layer', '-n', 'big', '-f', tar], { stdio: 'ignore' });
  const exited = new Promise((r) => child.on('exit', r));
  let caught = false;
  for (let i = 0; i < 20000 && !caught; i++) {
    const recs = JSON.parse(fs.readFileSync(layersJson, 'utf8')) as Array<{ flags?: { incomplete?: boolean } }>;
    if (recs.some((r) => r.flags?.incomplete)) caught = true;
    else await new Promise((r) => setTimeout(r, 2));
  }
  t.true(caught, 'the import was seen with its record incomplete');
  // while it lives, the peer waits for it: a non-blocking look at the lock says so
  const held = await bash(`python3 -c 'import fcntl,sys; f=open(sys.argv[1],"r+"); fcntl.lockf(f, fcntl.LOCK_SH|fcntl.LOCK_NB)' ${path.join(s.root, 'vfs-layers', 'layers.lock')}`, {});
  t.not(held.code, 0, 'layers.lock is held by the import');
  child.kill('SIGKILL');
  await exited;
  const t0 = Date.now();
  const r = s.peer(['create-layer', '-n', 'after']);
  const took = Date.now() - t0;
  t.is(r.code, 0, r.stderr);
  t.true(took < 3000, `the peer took ${took} ms`);
  // the peer removed the incomplete layer (its load under the write lock does); both tools agree
  const names = (out: string) => [...out.matchAll(/^\tname: (.*)$/gm)].map((m) => m[1]).sort();
  t.deepEqual(names(s.peer(['layers']).stdout), ['after', 'keep']);
  const ours = await s.cli(['layers']);
  t.deepEqual(names(ours.stdout), ['after', 'keep']);
  t.true(ours.stdout.includes(keep));
  t.deepEqual(fs.readdirSync(path.join(s.root, 'vfs', 'dir')).length, 2);
});

test('no flags: layers and containers-storage read one storage.conf (driver overlay) and share its store', async (t) => {
  const dir = dirOn(t, 'ext4');
  const file = path.join(dir, 'storage.conf');
  const root = path.join(dir, 'graph');
  const run = path.join(dir, 'run');
  fs.writeFileSync(file, `[storage]\ndriver = "overlay"\ngraphroot = "${root}"\nrunroot = "${run}"\n[storage.options.overlay]\nmountopt = "nodev"\n`);
  const env = { CONTAINERS_STORAGE_CONF: file };
  const peer = (args: string[]) => execFileSync('containers-storage', args, { encoding: 'utf8', env: { ...process.env, ...env } });
  const ours = await runCli(['create-layer', '-n', 'from-layers'], { env });
  t.is(ours.code, 0, ours.stderr);
  peer(['create-layer', '-n', 'from-peer']);
  const names = (out: string) => [...out.matchAll(/^\tname: (.*)$/gm)].map((m) => m[1]).sort();
  t.deepEqual(names(peer(['layers'])), ['from-layers', 'from-peer']);
  const listed = await runCli(['layers'], { env });
  t.deepEqual(names(listed.stdout), ['from-layers', 'from-peer']);
  t.true(fs.existsSync(path.join(root, 'overlay-layers', 'layers.json')), 'the overlay store in the configured graph root');
  const st = await runCli(['status'], { env });
  t.regex(st.stdout, new RegExp(`^Root: ${root}\nRun Root: ${run}\nDriver Name: overlay\nDriver Options: \\[overlay.mountopt=nodev\\]\n`));
  t.regex(st.stdout, new RegExp(`^Storage Conf: ${file}$`, 'm'));
  execFileSync('containers-storage', ['shutdown'], { env: { ...process.env, ...env } });
});
