// Every `layers` command against a real store, with the peer's output formats, the error paths
// and exit codes (0 ok, 1 failed, 2 usage).
import test from 'ava';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { gnuTar, makeTree, runCli, sha256File, tarNames, tempStore, type TempStore } from '../fixtures/store.ts';
import { readAll } from '../tar/gnutar.ts';

async function withBase(t: Parameters<typeof tempStore>[0]): Promise<{ s: TempStore; tar: string; base: string }> {
  const s = tempStore(t);
  const tree = path.join(s.dir, 'tree');
  fs.mkdirSync(tree);
  makeTree(tree);
  const tar = gnuTar(tree, path.join(s.dir, 'l.tar'));
  const r = await s.cli(['import-layer', '-n', 'base', '-f', tar]);
  t.is(r.code, 0, r.stderr);
  return { s, tar, base: r.stdout.split('\n')[0] };
}

test('create-layer prints the id and names; --json the record; flags as the peer spells them', async (t) => {
  const s = tempStore(t);
  const r = await s.cli(['create-layer', '-n', 'a', '--name', 'b']);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /^[0-9a-f]{64}\n\ta\n\tb\n$/);
  const j = await s.cli(['create-layer', '--json', '-i', 'myid', '--uidmap', '0:1000:10', '--gidmap=0:1000:10', '-l', 'lbl', 'a']);
  t.is(j.code, 0, j.stderr);
  const rec = JSON.parse(j.stdout);
  t.like(rec, { id: 'myid', parent: r.stdout.slice(0, 64), mountlabel: 'lbl', uidmap: [{ container_id: 0, host_id: 1000, size: 10 }] });
  // global flags after the command, and the peer's spellings before it
  const l = await runCli(['layers', '--graph', s.root, '--run', s.runroot, '--storage-driver', 'vfs', '-q']);
  t.is(l.stdout, `${r.stdout.slice(0, 64)}\nmyid\n`);
});

test('create-layer error paths: unknown parent, duplicate name, bad map, unknown driver', async (t) => {
  const s = tempStore(t);
  await s.cli(['create-layer', '-n', 'a']);
  const cases: Array<[string[], number, RegExp]> = [
    [['create-layer', 'nope'], 1, /^layers: create-layer: parent layer "nope": layer not known\n$/],
    [['create-layer', '-n', 'a'], 1, /^layers: create-layer: name "a" is already in use by layer [0-9a-f]{64}\n$/],
    [['create-layer', '--uidmap', '0:1'], 2, /^layers: create-layer: --uidmap: bad id mapping "0:1"/],
    [['create-layer', 'a', 'b'], 2, /too many arguments \(b\)/],
    [['-s', 'zfs', 'create-layer'], 1, /unknown storage driver "zfs"/],
  ];
  for (const [args, code, re] of cases) {
    const r = await s.cli(args);
    t.is(r.code, code, args.join(' '));
    t.regex(r.stderr, re);
  }
  t.is(s.records().length, 1);
});

test('import-layer from a file and from stdin; a bad tar fails and leaves no layer', async (t) => {
  const { s, tar } = await withBase(t);
  const piped = await s.cli(['import-layer', '-n', 'piped'], { stdinFile: tar });
  t.is(piped.code, 0, piped.stderr);
  const [a, b] = s.records();
  t.is(a['diff-digest'], b['diff-digest']);
  const bad = path.join(s.dir, 'bad.tar');
  fs.writeFileSync(bad, Buffer.alloc(1024, 'x'));
  const r = await s.cli(['import-layer', '-n', 'bad', '-f', bad]);
  t.is(r.code, 1);
  t.regex(r.stderr, /^layers: import-layer: applying .*bad\.tar to layer [0-9a-f]{64}: /);
  t.is(r.stderr.split('\n').length, 2);
  t.is(s.records().length, 2);
  const missing = await s.cli(['import-layer', '-f', '/nonexistent.tar']);
  t.is(missing.code, 1);
  t.regex(missing.stderr, /cannot open \/nonexistent\.tar: ENOENT/);
  const noInput = await s.cli(['import-layer', '-f']);
  t.is(noInput.code, 2);
});

test('applydiff adds to a layer; input refused at its start leaves it as it was; a failure half-way leaves it incomplete and the next command removes it', async (t) => {
  const { s, tar } = await withBase(t);
  const c = await s.cli(['create-layer', '-n', 'empty']);
  const r = await s.cli(['applydiff', '-f', tar, 'empty']);
  t.is(r.code, 0, r.stderr);
  t.is(s.records()[1]['diff-digest'], s.records()[0]['diff-digest']);
  const before = s.records()[1];
  // not a tar at all: nothing reaches the layer, which stays as it was (as the peer's does)
  const bad = path.join(s.dir, 'bad.tar');
  fs.writeFileSync(bad, Buffer.alloc(700, 'y'));
  const f = await s.cli(['apply-diff', 'empty', '-f', bad]);
  t.is(f.code, 1);
  t.regex(f.stderr, /invalid tar header/);
  t.notRegex(f.stderr, /left incomplete/);
  t.deepEqual(s.records()[1], before);
  t.is((await s.cli(['exists', 'empty'])).code, 0);
  // refused half-way, after entries were written: incomplete, removed by the next command
  const src = path.join(s.dir, 'escape');
  fs.mkdirSync(src);
  fs.symlinkSync('/etc', path.join(src, 'l'));
  const escape = path.join(s.dir, 'escape.tar');
  execFileSync('tar', ['-cf', escape, '-C', src, 'l']);
  fs.mkdirSync(path.join(s.dir, 'p'));
  fs.writeFileSync(path.join(s.dir, 'p', 'x'), 'x');
  execFileSync('tar', ['-rf', escape, '-C', path.join(s.dir, 'p'), '--transform', 's,^x,l/escaped,', 'x']);
  const h = await s.cli(['apply-diff', 'empty', '-f', escape]);
  t.is(h.code, 1);
  t.regex(h.stderr, /left incomplete and will be removed/);
  t.is((await s.cli(['exists', 'empty'])).code, 1);
  t.false(fs.existsSync(path.join(s.root, 'vfs', 'dir', c.stdout.slice(0, 64))));
  t.false(fs.existsSync('/etc/escaped'));
  const u = await s.cli(['applydiff', '-f', tar, 'nope']);
  t.is(u.code, 1);
  t.regex(u.stderr, /layer "nope": layer not known/);
  t.is((await s.cli(['applydiff'])).code, 2);
});

test('diff: a file mostly holes is a sparse entry by default, --no-sparse writes every byte, a recorded tar comes back as it was; diffsize is the peer\'s', async (t) => {
  const { s } = await withBase(t);
  await s.cli(['create-layer', '-n', 'vm', 'base']);
  const dir = (await s.cli(['mount', 'vm'])).stdout.trim();
  const holey = (name: string, size: number, data: number) => {
    const fd = fs.openSync(path.join(dir, name), 'w');
    fs.writeSync(fd, Buffer.alloc(data, 7), 0, data, 0);
    fs.ftruncateSync(fd, size);
    fs.closeSync(fd);
  };
  holey('disk.img', 256 << 20, 64 << 10); // 64 KiB of data in 256 MiB: mostly holes
  holey('half', 128 << 10, 96 << 10); // 96 KiB of data in 128 KiB: mostly data
  fs.symlinkSync('disk.img', path.join(dir, 'link'));
  await s.cli(['unmount', 'vm']);
  const sparseOf = (tar: string) => Object.fromEntries(readAll(tar).filter((e) => e.type === 'file').map((e) => [e.name, e.sparse !== undefined]));

  const out = path.join(s.dir, 'vm.tar');
  t.is((await s.cli(['diff', '-f', out, 'vm'])).code, 0);
  t.deepEqual(sparseOf(out), { 'disk.img': true, half: false });
  t.true(fs.statSync(out).size < 1 << 20, `${fs.statSync(out).size} bytes`);
  // the peer's ChangesSize: every name but directories at its apparent size, a symlink its target's length
  const want = `${(256 << 20) + (128 << 10) + 'disk.img'.length}\n`;
  t.is((await s.cli(['diffsize', 'vm'])).stdout, want);
  t.is(s.peer(['diffsize', 'vm']).stdout, want);

  const plain = path.join(s.dir, 'plain.tar');
  t.is((await s.cli(['diff', '--no-sparse', '-f', plain, 'vm'])).code, 0);
  t.deepEqual(sparseOf(plain), { 'disk.img': false, half: false });
  t.true(fs.statSync(plain).size > 256 << 20);
  t.is((await s.cli(['diff', '-S', '--no-sparse', 'vm'])).code, 2);
  // applied from that tar, the layer has a tar-split record: its diff is that tar, byte for byte
  const again = await s.cli(['import-layer', '-n', 'again', '-f', plain, 'base']);
  t.is(again.code, 0, again.stderr);
  const back = path.join(s.dir, 'back.tar');
  t.is((await s.cli(['diff', '-f', back, 'again'])).code, 0);
  t.is(await sha256File(back), await sha256File(plain));
  t.is((await s.cli(['diffsize', 'again'])).stdout, want);
  t.is(s.peer(['diffsize', 'again']).stdout, want);
});

test('diff --sparse leaves the holes of a VM disk image out of the tar; applying it makes them again', async (t) => {
  const { s } = await withBase(t);
  await s.cli(['create-layer', '-n', 'vm', 'base']);
  const dir = (await s.cli(['mount', 'vm'])).stdout.trim();
  const disk = path.join(dir, 'disk.qcow');
  const fd = fs.openSync(disk, 'w');
  fs.writeSync(fd, Buffer.alloc(65536, 7), 0, 65536, 256 << 20);
  fs.ftruncateSync(fd, 2 ** 31);
  fs.closeSync(fd);
  await s.cli(['unmount', 'vm']);
  for (const gzip of [[], ['--gzip']]) {
    const out = path.join(s.dir, `vm${gzip.length ? '.tgz' : '.tar'}`);
    const r = await s.cli(['diff', '--sparse', ...gzip, '-f', out, 'vm']);
    t.is(r.code, 0, r.stderr);
    t.true(fs.statSync(out).size < 1 << 20, `${path.basename(out)}: ${fs.statSync(out).size} bytes for a 2 GiB file with 64 KiB of data`);
    const imported = await s.cli(['import-layer', '-n', `again${gzip.length}`, '-f', out, 'base']);
    t.is(imported.code, 0, imported.stderr);
    const copy = path.join((await s.cli(['mount', `again${gzip.length}`])).stdout.trim(), 'disk.qcow');
    t.is(fs.statSync(copy).size, 2 ** 31);
    t.true(fs.statSync(copy).blocks * 512 <= 1 << 20, 'the holes are holes again');
    const back = Buffer.alloc(65536);
    const cfd = fs.openSync(copy, 'r');
    fs.readSync(cfd, back, 0, 65536, 256 << 20);
    fs.closeSync(cfd);
    t.true(back.equals(Buffer.alloc(65536, 7)));
    await s.cli(['unmount', `again${gzip.length}`]);
  }
});

test('diff to stdout, to a file and gzipped; changes; diffsize', async (t) => {
  const { s } = await withBase(t);
  await s.cli(['create-layer', '-n', 'child', 'base']);
  const dir = (await s.cli(['mount', 'child'])).stdout.trim();
  fs.writeFileSync(path.join(dir, 'etc/hostname'), 'other\n');
  fs.rmSync(path.join(dir, 'etc/conf.d/a.conf'));
  fs.writeFileSync(path.join(dir, 'added'), '12345');
  await s.cli(['unmount', 'child']);
  const out = path.join(s.dir, 'd.tar');
  t.is((await s.cli(['diff', '-f', out, 'child'])).code, 0);
  t.deepEqual(tarNames(out), ['added', 'etc/', 'etc/conf.d/', 'etc/conf.d/.wh.a.conf', 'etc/hostname']);
  const piped = execFileSync(process.execPath, [path.join(import.meta.dirname, '../../bin/layers.js'), '-g', s.root, '-R', s.runroot, 'diff', 'child']);
  t.deepEqual(piped, fs.readFileSync(out));
  const gz = path.join(s.dir, 'd.tar.gz');
  t.is((await s.cli(['diff', '-c', '-f', gz, 'child'])).code, 0);
  t.deepEqual(execFileSync('gzip', ['-dc', gz]), fs.readFileSync(out));
  t.is((await s.cli(['diff', '--xz', 'child'])).code, 2);
  const ch = await s.cli(['changes', 'child']);
  t.is(ch.stdout, 'Add "/added"\nModify "/etc"\nModify "/etc/conf.d"\nDelete "/etc/conf.d/a.conf"\nModify "/etc/hostname"\n');
  const cj = JSON.parse((await s.cli(['changes', '-j', 'child'])).stdout);
  t.deepEqual(cj[0], { Path: '/added', Kind: 1 });
  t.is((await s.cli(['diffsize', 'child'])).stdout, '11\n');
  t.is((await s.cli(['diffsize', 'child', 'child'])).stdout, '0\n');
  // the peer lists the same changes in an order of its own (it walks a Go map, so the order
  // varies from run to run); ours are sorted by path
  const peerChanges = s.peer(['changes', 'child', 'base']);
  const lines = (out: string) => out.trim().split('\n').sort();
  t.deepEqual(lines(peerChanges.stdout), lines(ch.stdout));
  for (const cmd of ['diff', 'changes', 'diffsize']) {
    const r = await s.cli([cmd, 'nope']);
    t.is(r.code, 1);
    t.is(r.stderr, `layers: ${cmd}: layer "nope": layer not known\n`);
  }
});

test('mount, unmount, delete-layer of a mounted layer, and their JSON', async (t) => {
  const s = tempStore(t);
  const id = (await s.cli(['create-layer', '-n', 'm'])).stdout.slice(0, 64);
  const dir = path.join(s.root, 'vfs', 'dir', id);
  t.deepEqual(JSON.parse((await s.cli(['mount', '-j', 'm'])).stdout), [{ id: 'm', mountpoint: dir, error: '' }]);
  t.is((await s.cli(['mount', 'm'])).stdout, `${dir}\n`);
  const del = await s.cli(['delete-layer', 'm']);
  t.is(del.code, 1);
  t.regex(del.stderr, /^layers: delete-layer: m: layer [0-9a-f]{64} is mounted \(2 users\); unmount it first\n$/);
  t.deepEqual(JSON.parse((await s.cli(['delete-layer', '-j', 'm'])).stdout), { m: `layer ${id} is mounted (2 users); unmount it first` });
  t.is((await s.cli(['unmount', 'm'])).stdout, '');
  t.deepEqual(JSON.parse((await s.cli(['unmount', '-j', 'm'])).stdout), [{ id: 'm', error: '' }]);
  t.is((await s.cli(['mount', 'nope'])).code, 1);
  t.deepEqual(JSON.parse((await s.cli(['unmount', '-j', 'nope'])).stdout), [{ id: 'nope', error: 'layer or container "nope" not known' }]);
  await s.cli(['mount', 'm']);
  await s.cli(['mount', 'm']);
  t.is((await s.cli(['unmount', '--force', 'm'])).stdout, 'm mountpoint unmounted\n');
  t.is((await s.cli(['delete-layer', 'm'])).code, 0);
  t.is((await s.cli(['mount'])).code, 2);
});

test('layers, layer, exists, metadata and names in the peer formats', async (t) => {
  const s = tempStore(t);
  const a = (await s.cli(['create-layer', '-n', 'a', '--uidmap', '0:100:5', '--gidmap', '0:200:5'])).stdout.slice(0, 64);
  const b = (await s.cli(['create-layer', '-n', 'b', 'a'])).stdout.slice(0, 64);
  await s.cli(['mount', 'b']);
  t.is((await s.cli(['layers'])).stdout, `${a}\n\tname: a\n${b}\n\tname: b\n`);
  const tree = (await s.cli(['layers', '-t'])).stdout;
  t.is(tree, `(base)\n└─${a}\n  name: a\n  └─${b}\n    name: b\n    mount: ${path.join(s.root, 'vfs', 'dir', b)}\n`);
  t.deepEqual(JSON.parse((await s.cli(['--json', 'layers'])).stdout), s.records());
  t.is(
    (await s.cli(['layer', 'b', 'a'])).stdout,
    `ID: ${b}\nParent: ${a}\nName: b\nID: ${a}\nUID mapping: (container=0, host=100, size=5)\nGID mapping: (container=0, host=200, size=5)\nName: a\n`,
  );
  const missing = await s.cli(['layer', 'a', 'nope']);
  t.is(missing.code, 1);
  t.is(missing.stderr, 'layers: layer: nope: layer "nope": layer not known\n');
  t.is((await s.cli(['exists', 'a', b])).stdout, `a: true\n${b}: true\n`);
  const ex = await s.cli(['exists', '-j', 'a', 'nope']);
  t.is(ex.code, 1);
  t.deepEqual(JSON.parse(ex.stdout), { a: true, nope: false });
  t.is((await s.cli(['exists', '-q', '-i', 'a'])).code, 1);
  t.is((await s.cli(['set-metadata', '-m', 'hello', 'a'])).code, 0);
  t.is((await s.cli(['metadata', 'a'])).stdout, 'a: hello\n');
  t.is((await s.cli(['metadata', '-q', 'a'])).stdout, 'hello\n');
  t.is((await s.cli(['set-metadata', 'a'])).code, 2);
  t.is((await s.cli(['add-names', '-n', 'a2', 'a'])).code, 0);
  t.is((await s.cli(['get-names', 'a'])).stdout, 'a\na2\n');
  t.deepEqual(JSON.parse((await s.cli(['set-names', '-j', '-n', 'z', 'a'])).stdout), ['z']);
  // 'a' is no name any more (asked in the records: as a reference, 'a' may still match a layer
  // whose random id starts with it, an id prefix)
  t.false(s.records().some((r: { names?: string[] }) => r.names?.includes('a')));
  t.is(s.peer(['get-names', 'z']).stdout, 'z\n');
});

test('status, version, shutdown, wipe', async (t) => {
  const s = tempStore(t);
  const st = await s.cli(['status']);
  t.regex(st.stdout, new RegExp(`^Root: ${s.root}\nRun Root: ${s.runroot}\nDriver Name: vfs\nDriver Options: \\[\\]\nBacking Filesystem: \\w+\nId mappings: mapped top layers \\(off by default on vfs .*LAYERS_IDMAPPED_MOUNTS=yes turns them on\\)\n$`));
  // --storage-opt (before and after the command) and else $STORAGE_OPTS reach the store
  const opt = 'vfs.ignore_chown_errors';
  t.is(JSON.parse((await s.cli(['--storage-opt', `${opt}=true`, 'status', '--storage-opt', `${opt}=false`, '-j'])).stdout)[3][1], `[${opt}=true ${opt}=false]`);
  const fromEnv = await runCli(['-g', s.root, '-R', s.runroot, 'status'], { env: { STORAGE_DRIVER: 'vfs', STORAGE_OPTS: `${opt}=true` } });
  t.regex(fromEnv.stdout, new RegExp(`^Driver Name: vfs\nDriver Options: \\[${opt}=true\\]$`, 'm'));
  const bad = await s.cli(['--storage-opt', 'novalue', 'status']);
  t.not(bad.code, 0);
  t.regex(bad.stderr, /^layers: status: .*"novalue".*\n$/);
  t.regex((await s.cli(['version'])).stdout, /^Version: \d+\.\d+\.\d+\nNode Version: v\d+/);
  await s.cli(['create-layer', '-n', 'a']);
  await s.cli(['mount', 'a']);
  const sd = await s.cli(['shutdown']);
  t.is(sd.code, 1);
  t.regex(sd.stderr, /layers are mounted/);
  t.is((await s.cli(['shutdown', '-f'])).code, 0);
  t.is((await s.cli(['wipe'])).code, 0);
  t.deepEqual(s.records(), []);
});

test('usage errors exit 2 with one line; --help exits 0', async (t) => {
  const s = tempStore(t);
  for (const args of [['frob'], ['layers', '--frob'], ['layer'], ['diff'], ['create-layer', '-n'], []]) {
    const r = await s.cli(args);
    t.is(r.code, 2, args.join(' '));
  }
  t.is((await s.cli(['frob'])).stderr, 'layers: frob: unknown command "frob"; see layers --help\n');
  const h = await runCli(['--help']);
  t.is(h.code, 0);
  t.regex(h.stdout, /create-layer/);
  t.regex((await runCli(['diff', '--help'])).stdout, /--gzip, -c/);
});

test('8 CLI processes at once create and delete layers with no record lost or duplicated', async (t) => {
  const s = tempStore(t);
  await s.cli(['create-layer', '-n', 'seed']);
  const N = 8;
  const first = await Promise.all(Array.from({ length: N }, (_, i) => s.cli(['create-layer', '-n', `p${i}`, ...(i % 2 ? ['seed'] : [])])));
  for (const r of first) t.is(r.code, 0, r.stderr);
  const second = await Promise.all(
    Array.from({ length: N }, (_, i) => (i % 2 ? s.cli(['delete-layer', `p${i}`]) : s.cli(['create-layer', '-n', `q${i}`, `p${i}`]))),
  );
  for (const r of second) t.is(r.code, 0, r.stderr);
  const recs = s.records() as Array<{ id: string; names: string[] }>;
  const names = recs.flatMap((r) => r.names).sort();
  t.deepEqual(names, ['p0', 'p2', 'p4', 'p6', 'q0', 'q2', 'q4', 'q6', 'seed']);
  t.is(new Set(recs.map((r) => r.id)).size, recs.length);
  t.deepEqual(fs.readdirSync(path.join(s.root, 'vfs', 'dir')).sort(), recs.map((r) => r.id).sort());
  t.is(s.peer(['layers']).stdout.split('\n').filter((l) => /^[0-9a-f]{64}$/.test(l)).length, 9);
});

test('SIGKILL during a big import: the next command removes the incomplete layer, others stay', async (t) => {
  const s = tempStore(t);
  const tree = path.join(s.dir, 'big');
  fs.mkdirSync(tree);
  // ~300 MB in 1200 files, so extraction takes long enough to be caught in the middle
  const chunk = Buffer.alloc(256 << 10);
  for (let i = 0; i < chunk.length; i++) chunk[i] = (i * 131) & 0xff;
  for (let i = 0; i < 1200; i++) fs.writeFileSync(path.join(tree, `f${i}`), chunk);
  const tar = gnuTar(tree, path.join(s.dir, 'big.tar'));
  fs.rmSync(tree, { recursive: true });
  const keep = await s.cli(['create-layer', '-n', 'keep']);
  const layersJson = path.join(s.root, 'vfs-layers', 'layers.json');
  const { spawn } = await import('node:child_process');
  const child = spawn(process.execPath, [path.join(import.meta.dirname, '../../bin/layers.js'), '-g', s.root, '-R', s.runroot, 'import-layer', '-n', 'big', '-f', tar], { stdio: 'ignore' });
  const exited = new Promise((r) => child.on('exit', r));
  let killedId = '';
  for (let i = 0; i < 20000 && !killedId; i++) {
    const recs = JSON.parse(fs.readFileSync(layersJson, 'utf8')) as Array<{ id: string; flags?: { incomplete?: boolean } }>;
    const inc = recs.find((r) => r.flags?.incomplete);
    if (inc) {
      child.kill('SIGKILL');
      killedId = inc.id;
    } else await new Promise((r) => setTimeout(r, 2));
  }
  await exited;
  t.truthy(killedId, 'the import was seen with its record incomplete');
  t.true(s.records().some((r) => r.id === killedId && (r.flags as { incomplete?: boolean })?.incomplete));
  const next = await s.cli(['layers']);
  t.is(next.code, 0, next.stderr);
  t.is(next.stdout, `${keep.stdout.slice(0, 64)}\n\tname: keep\n`);
  t.deepEqual(fs.readdirSync(path.join(s.root, 'vfs', 'dir')), [keep.stdout.slice(0, 64)]);
  t.deepEqual(fs.readdirSync(path.join(s.root, 'tmp')), []);
  t.is((await s.cli(['import-layer', '-n', 'big', '-f', tar])).code, 0);
});
