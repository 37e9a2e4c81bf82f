// The tar engine end to end: our writer and extractor against GNU tar in both directions on
// ext4, btrfs and xfs; the copy path the addon reports; pipes; id mapping; hostile tars.
import test, { type ExecutionContext } from 'ava';
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { extractTar } from '../../lib/tar/extract.ts';
import { treeItems, writeTar } from '../../lib/tar/write.ts';
import { encodeHeader, END_OF_ARCHIVE, padding, readEntry } from '../../lib/tar/header.ts';
import { FileSource } from '../../lib/tar/source.ts';
import type { TarEntry } from '../../lib/tar/types.ts';
import { dirOn, loopFs, tempDir, type FsKind } from '../fixtures/fs.ts';
import { makeRichTree, snapshotTree, CAPABILITY, LONG_NAME } from '../fixtures/tree.ts';
import { readAll } from './gnutar.ts';

const GNU_X = ['--xattrs', '--xattrs-include=*', '--numeric-owner', '-p'];
const GNU_C = ['--format=pax', '--xattrs', '--xattrs-include=*', '--numeric-owner'];

function sha256File(p: string): string {
  return 'sha256:' + createHash('sha256').update(fs.readFileSync(p)).digest('hex');
}

/** An fd reading `file` through a pipe (a child writes it into a fifo); closed and the child
 *  ended when the test ends. */
function pipeOf(t: ExecutionContext, file: string): number {
  const fifo = path.join(path.dirname(file), `fifo-${path.basename(file)}`);
  execFileSync('mkfifo', [fifo]);
  const cat = spawn('sh', ['-c', `cat "${file}" > "${fifo}"`]);
  const fd = fs.openSync(fifo, 'r'); // blocks until the child opens the other end
  t.teardown(() => {
    fs.closeSync(fd);
    cat.kill();
  });
  return fd;
}

/** A temp dir with a rich tree in src and an empty out. */
function richSrc(t: ExecutionContext): { dir: string; src: string; out: string } {
  const dir = tempDir(t);
  const src = path.join(dir, 'src');
  const out = path.join(dir, 'out');
  fs.mkdirSync(src);
  fs.mkdirSync(out);
  makeRichTree(src);
  return { dir, src, out };
}

async function ourTar(src: string, out: string, opts: Parameters<typeof writeTar>[3] = {}) {
  const fd = fs.openSync(out, 'w');
  try {
    return await writeTar(src, treeItems(src), fd, { outOffset: 0, ...opts });
  } finally {
    fs.closeSync(fd);
  }
}

async function ourExtract(tarPath: string, dst: string, opts: Partial<Parameters<typeof extractTar>[2]> = {}) {
  const fd = fs.openSync(tarPath, 'r');
  try {
    return await extractTar(fd, dst, { whiteouts: 'keep', ...opts });
  } finally {
    fs.closeSync(fd);
  }
}

for (const kind of ['ext4', 'btrfs', 'xfs'] as const satisfies readonly FsKind[]) {
  test(`${kind}: GNU tar extracts what we write into the same tree`, async (t) => {
    const mnt = loopFs(t, kind, 400 << 20);
    const src = path.join(mnt, 'src');
    const out = path.join(mnt, 'out');
    fs.mkdirSync(src);
    fs.mkdirSync(out);
    makeRichTree(src);
    const res = await ourTar(src, path.join(mnt, 'ours.tar'));
    t.true(res.written > 3 << 20);
    execFileSync('tar', [...GNU_X, '-xf', path.join(mnt, 'ours.tar'), '-C', out]);
    t.deepEqual(snapshotTree(out), snapshotTree(src));
  });

  test(`${kind}: we extract what GNU tar writes into the same tree`, async (t) => {
    const mnt = loopFs(t, kind, 400 << 20);
    const src = path.join(mnt, 'src');
    const out = path.join(mnt, 'out');
    fs.mkdirSync(src);
    fs.mkdirSync(out);
    makeRichTree(src);
    const tarPath = path.join(mnt, 'gnu.tar');
    execFileSync('tar', [...GNU_C, '-cf', tarPath, '-C', src, '.']);
    const res = await ourExtract(tarPath, out);
    t.deepEqual(snapshotTree(out), snapshotTree(src));
    t.is(res.digest, sha256File(tarPath));
    t.is(res.tarSize, fs.statSync(tarPath).size);
    t.deepEqual(res.uids, [0, 1000, 4242, 300000]);
    t.deepEqual(res.gids, [0, 100, 4343, 3000000]);
    // the capability came through byte for byte
    t.deepEqual(execFileSync('getfattr', ['-n', 'security.capability', '-e', 'hex', '--only-values', path.join(out, 'bin/ping')]), CAPABILITY);
  });
}

test('btrfs and xfs: an aligned tar reflinks bodies both ways and reports copy_file_range', async (t) => {
  for (const kind of ['btrfs', 'xfs'] as const) {
    const mnt = loopFs(t, kind, 600 << 20);
    const src = path.join(mnt, 'src');
    fs.mkdirSync(src);
    // 64 files of 1 MiB + a tail: the aligned bulk of each reflinks, the tail is buffered
    const body = Buffer.alloc((1 << 20) + 100, 7);
    for (let i = 0; i < 64; i++) fs.writeFileSync(path.join(src, `f${i}`), body.fill(i, 0, 1));
    // a small body is not worth a clone: its header is not padded
    fs.writeFileSync(path.join(src, 'small'), Buffer.alloc(1000, 3));
    const tarPath = path.join(mnt, 'aligned.tar');
    const w = await ourTar(src, tarPath, { align: 4096 });
    t.true((w.bytes.copy_file_range ?? 0) >= 64 << 20, `${kind}: ${JSON.stringify(w.bytes)}`);
    const fd = fs.openSync(tarPath, 'r');
    const source = new FileSource(fd);
    const starts = new Map<string, [number, number]>();
    for (let e = readEntry(source); e; e = readEntry(source)) {
      starts.set(e.name, [e.headerOffset, e.dataOffset]);
      source.skip(e.size + padding(e.size));
    }
    fs.closeSync(fd);
    for (let i = 0; i < 64; i++) t.is(starts.get(`f${i}`)![1] % 4096, 0, `f${i} starts on a block`);
    const [h, d] = starts.get('small')!;
    t.true(d - h <= 1536, `small's header is ${d - h} bytes: not padded`);
    const out = path.join(mnt, 'out');
    fs.mkdirSync(out);
    const r = await ourExtract(tarPath, out);
    t.is(r.size, 64 * body.length + 1000);
    t.deepEqual(snapshotTree(out), snapshotTree(src));
    // GNU tar reads the aligned tar too
    const gnu = path.join(mnt, 'gnu');
    fs.mkdirSync(gnu);
    execFileSync('tar', [...GNU_X, '-xf', tarPath, '-C', gnu]);
    t.deepEqual(snapshotTree(gnu), snapshotTree(src));
  }
});

test('on btrfs copy_file_range moves only block-aligned bulks; everything else is buffered', async (t) => {
  const mnt = loopFs(t, 'btrfs', 300 << 20);
  const src = path.join(mnt, 'src');
  fs.mkdirSync(src);
  for (let i = 0; i < 20; i++) fs.writeFileSync(path.join(src, `f${i}`), Buffer.alloc(100_000 + i, i));
  const w = await ourTar(src, path.join(mnt, 'plain.tar'));
  const cfr = w.bytes.copy_file_range ?? 0;
  t.is(cfr % 4096, 0, JSON.stringify(w.bytes));
  // without alignment most bodies start off a block boundary: those (and all tails) are buffered
  t.true((w.bytes.readwrite ?? 0) > cfr, JSON.stringify(w.bytes));
  t.is(cfr + (w.bytes.readwrite ?? 0), 20 * 100_000 + 190);
});

test('writing into a pipe uses sendfile and GNU tar reads the stream', async (t) => {
  const { dir, src, out } = richSrc(t);
  const fifo = path.join(dir, 'fifo');
  execFileSync('mkfifo', [fifo]);
  // -B: a pipe may hand over short reads; GNU tar reblocks them by default only on stdin
  const tar = spawn('tar', [...GNU_X, '-B', '-xf', fifo, '-C', out], { stdio: 'inherit' });
  const done = new Promise<number>((resolve) => tar.on('exit', (code) => resolve(code ?? -1)));
  const fd = fs.openSync(fifo, 'w'); // blocks until tar opens the other end
  let res;
  try {
    res = await writeTar(src, treeItems(src), fd);
  } finally {
    fs.closeSync(fd);
  }
  t.is(await done, 0);
  t.true((res.bytes.sendfile ?? 0) > 3 << 20, JSON.stringify(res.bytes));
  t.deepEqual(snapshotTree(out), snapshotTree(src));
});

test('extracting from a pipe gives the same tree and the digest of the stream', async (t) => {
  const { dir, src, out } = richSrc(t);
  const tarPath = path.join(dir, 'in.tar');
  execFileSync('tar', [...GNU_C, '-cf', tarPath, '-C', src, '.']);
  const res = await extractTar(pipeOf(t, tarPath), out, { whiteouts: 'keep' });
  t.is(res.digest, sha256File(tarPath));
  t.is(res.tarSize, fs.statSync(tarPath).size);
  t.deepEqual(snapshotTree(out), snapshotTree(src));
});

test('id mappings: extract maps container ids to host ids, write maps them back, outside ids are errors naming the file', async (t) => {
  const dir = tempDir(t);
  const src = path.join(dir, 'src');
  fs.mkdirSync(src);
  fs.writeFileSync(path.join(src, 'a'), 'a');
  fs.lchownSync(path.join(src, 'a'), 1000, 1000);
  fs.writeFileSync(path.join(src, 'b'), 'b');
  const tarPath = path.join(dir, 'in.tar');
  await ourTar(src, tarPath);
  const m = { uidmap: [{ container_id: 0, host_id: 100000, size: 65536 }], gidmap: [{ container_id: 0, host_id: 200000, size: 65536 }] };
  const out = path.join(dir, 'out');
  fs.mkdirSync(out);
  const res = await ourExtract(tarPath, out, { idMappings: m });
  t.is(fs.lstatSync(path.join(out, 'a')).uid, 101000);
  t.is(fs.lstatSync(path.join(out, 'a')).gid, 201000);
  t.is(fs.lstatSync(path.join(out, 'b')).uid, 100000);
  t.deepEqual(res.uids, [100000, 101000]);
  // and back
  const back = path.join(dir, 'back.tar');
  const fd = fs.openSync(back, 'w');
  const { containerMapper } = await import('../../lib/idmap.ts');
  await writeTar(out, treeItems(out, containerMapper(m)), fd, { outOffset: 0 });
  fs.closeSync(fd);
  t.is(sha256File(back), sha256File(tarPath));
  // an id outside the ranges is refused, naming the file
  const small = { uidmap: [{ container_id: 0, host_id: 100000, size: 10 }], gidmap: [{ container_id: 0, host_id: 100000, size: 65536 }] };
  const out2 = path.join(dir, 'out2');
  fs.mkdirSync(out2);
  const err = await t.throwsAsync(ourExtract(tarPath, out2, { idMappings: small }));
  t.regex(err!.message, /^a: uid 1000 is outside the id mappings/);
});

// Hostile tars: each is refused with an error naming the entry, and nothing is written outside the root.
function hostileTar(dir: string, entries: Array<{ e: Partial<TarEntry> & { name: string }; body?: Buffer }>, opts: { cut?: number } = {}): string {
  const parts: Buffer[] = [];
  for (const { e, body } of entries) {
    const full: TarEntry = { type: 'file', mode: 0o644, uid: 0, gid: 0, size: body?.length ?? 0, mtime: { sec: 1, nsec: 0 }, ...e };
    parts.push(encodeHeader(full));
    if (body) parts.push(body, Buffer.alloc(padding(body.length)));
  }
  parts.push(END_OF_ARCHIVE);
  let all = Buffer.concat(parts);
  if (opts.cut) all = all.subarray(0, all.length - opts.cut);
  const p = path.join(dir, `hostile-${Math.random().toString(36).slice(2)}.tar`);
  fs.writeFileSync(p, all);
  return p;
}

/** a header built by hand, bypassing our encoder's own checks of names */
function rawHeader(name: string, type: string, linkname = '', size = 0): Buffer {
  const h = Buffer.alloc(512);
  h.write(name, 0, 100, 'utf8');
  h.write('0000644\0', 100);
  h.write('0000000\0', 108);
  h.write('0000000\0', 116);
  h.write(size.toString(8).padStart(11, '0') + '\0', 124);
  h.write('00000000001\0', 136);
  h.write(type, 156);
  h.write(linkname, 157, 100, 'utf8');
  h.write('ustar\0', 257);
  h.write('00', 263);
  h.fill(' ', 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148);
  return h;
}

function rawTar(dir: string, blocks: Buffer[]): string {
  const p = path.join(dir, `raw-${Math.random().toString(36).slice(2)}.tar`);
  fs.writeFileSync(p, Buffer.concat([...blocks, END_OF_ARCHIVE]));
  return p;
}

test('hostile tars are refused with an error naming the entry and write nothing outside the root', async (t) => {
  const dir = tempDir(t);
  const outside = path.join(dir, 'outside');
  fs.mkdirSync(outside);
  fs.writeFileSync(path.join(outside, 'victim'), 'untouched');
  const cases: Array<[string, string, RegExp]> = [
    ['dotdot', rawTar(dir, [rawHeader('../outside/victim', '0', '', 4), Buffer.alloc(512)]), /\.\.\/outside\/victim/],
    ['absolute', rawTar(dir, [rawHeader(path.join(outside, 'victim'), '0', '', 4), Buffer.alloc(512)]), /outside\/victim/],
    ['symlink then write through', rawTar(dir, [rawHeader('esc', '2', outside), rawHeader('esc/victim', '0', '', 4), Buffer.alloc(512)]), /esc\/victim/],
    ['relative symlink climbing out', rawTar(dir, [rawHeader('up', '2', '../../outside'), rawHeader('up/victim', '0', '', 4), Buffer.alloc(512)]), /up\/victim/],
    ['hardlink to outside', rawTar(dir, [rawHeader('hl', '1', '../outside/victim')]), /hl|outside\/victim/],
    ['hardlink through a symlink', rawTar(dir, [rawHeader('esc', '2', outside), rawHeader('hl', '1', 'esc/victim')]), /hl|esc\/victim/],
  ];
  for (const [what, tarPath, names] of cases) {
    const root = path.join(dir, `root-${what.replace(/ /g, '-')}`);
    fs.mkdirSync(root);
    const err = await t.throwsAsync(ourExtract(tarPath, root), undefined, what);
    t.regex(err!.message, names, what);
    t.truthy((err as { code?: string }).code, what);
    t.is(fs.readFileSync(path.join(outside, 'victim'), 'utf8'), 'untouched', what);
    t.deepEqual(fs.readdirSync(outside), ['victim'], what);
  }
});

test('a truncated body and a header that lies about its size are errors, never a short file', async (t) => {
  const dir = tempDir(t);
  const body = Buffer.alloc(5000, 1);
  const cut = hostileTar(dir, [{ e: { name: 'ok', size: 3 }, body: Buffer.from('abc') }, { e: { name: 'big', size: body.length }, body }], { cut: 1024 + 512 + 3000 });
  const root = path.join(dir, 'r1');
  fs.mkdirSync(root);
  const err = await t.throwsAsync(ourExtract(cut, root));
  t.regex(err!.message, /big/);
  t.is((err as { code?: string }).code, 'ETARTRUNCATED');
  t.false(fs.existsSync(path.join(root, 'big')) && fs.statSync(path.join(root, 'big')).size === body.length);

  // a header claiming 1 GiB in a tiny file
  const liar = rawTar(dir, [rawHeader('liar', '0', '', 1 << 30), Buffer.alloc(512)]);
  const root2 = path.join(dir, 'r2');
  fs.mkdirSync(root2);
  const err2 = await t.throwsAsync(ourExtract(liar, root2));
  t.regex(err2!.message, /liar/);

  // the same truncated tar through a pipe
  const root3 = path.join(dir, 'r3');
  fs.mkdirSync(root3);
  const err3 = await t.throwsAsync(extractTar(pipeOf(t, cut), root3, { whiteouts: 'keep' }));
  t.regex(err3!.message, /big/);
});

test('long names, big ids, ns times and binary xattrs survive our own round trip byte for byte', async (t) => {
  const dir = tempDir(t);
  const src = path.join(dir, 'src');
  fs.mkdirSync(src);
  makeRichTree(src);
  const a = path.join(dir, 'a.tar');
  await ourTar(src, a);
  const mid = path.join(dir, 'mid');
  fs.mkdirSync(mid);
  await ourExtract(a, mid);
  const b = path.join(dir, 'b.tar');
  await ourTar(mid, b);
  t.is(sha256File(b), sha256File(a));
  t.true(fs.existsSync(path.join(mid, LONG_NAME)));
});

test('whiteouts: delete mode removes what they name, overlay mode makes char 0/0 devices and opaque xattrs', async (t) => {
  const dir = tempDir(t);
  const root = path.join(dir, 'root');
  fs.mkdirSync(path.join(root, 'd/old'), { recursive: true });
  fs.writeFileSync(path.join(root, 'd/old/x'), 'x');
  fs.writeFileSync(path.join(root, 'gone'), 'gone');
  fs.mkdirSync(path.join(root, 'opq'));
  fs.writeFileSync(path.join(root, 'opq/lower'), 'lower');
  const tarPath = hostileTar(dir, [
    { e: { name: '.wh.gone' } },
    { e: { name: 'd/.wh.old' } },
    { e: { name: 'opq', type: 'dir', mode: 0o755 } },
    { e: { name: 'opq/.wh..wh..opq' } },
    { e: { name: 'opq/new', size: 3 }, body: Buffer.from('new') },
  ]);
  await ourExtract(tarPath, root, { whiteouts: 'delete' });
  t.false(fs.existsSync(path.join(root, 'gone')));
  t.false(fs.existsSync(path.join(root, 'd/old')));
  t.deepEqual(fs.readdirSync(path.join(root, 'opq')), ['new']);

  const up = path.join(dir, 'upper');
  fs.mkdirSync(up);
  await ourExtract(tarPath, up, { whiteouts: 'overlay' });
  const wh = fs.lstatSync(path.join(up, 'gone'));
  t.true(wh.isCharacterDevice());
  t.is(wh.rdev, 0);
  t.true(fs.lstatSync(path.join(up, 'd/old')).isCharacterDevice());
  t.is(execFileSync('getfattr', ['-n', 'trusted.overlay.opaque', '--only-values', path.join(up, 'opq')], { encoding: 'utf8' }), 'y');
  t.deepEqual(fs.readdirSync(path.join(up, 'opq')), ['new']);
});

test('a tar cannot set trusted.overlay.* attributes', async (t) => {
  const dir = tempDir(t);
  const tarPath = hostileTar(dir, [{ e: { name: 'd', type: 'dir', mode: 0o755, xattrs: new Map([['trusted.overlay.redirect', Buffer.from('/etc')], ['user.ok', Buffer.from('1')]]) } }]);
  const root = path.join(dir, 'root');
  fs.mkdirSync(root);
  await ourExtract(tarPath, root, { whiteouts: 'overlay' });
  const names = execFileSync('getfattr', ['-d', '-m', '-', '--absolute-names', path.join(root, 'd')], { encoding: 'utf8' });
  t.regex(names, /user\.ok/);
  t.notRegex(names, /trusted\.overlay/);
});

test('extracting in place of an existing symlink replaces the link, never writes through it', async (t) => {
  const dir = tempDir(t);
  const outside = path.join(dir, 'outside');
  fs.writeFileSync(outside, 'untouched');
  const root = path.join(dir, 'root');
  fs.mkdirSync(root);
  fs.symlinkSync(outside, path.join(root, 'f'));
  const tarPath = hostileTar(dir, [{ e: { name: 'f', size: 3 }, body: Buffer.from('new') }]);
  await ourExtract(tarPath, root);
  t.is(fs.readFileSync(outside, 'utf8'), 'untouched');
  t.false(fs.lstatSync(path.join(root, 'f')).isSymbolicLink());
  t.is(fs.readFileSync(path.join(root, 'f'), 'utf8'), 'new');
});

test('modes and owners come out as the tar says whatever the umask or a setgid parent would make of a new file', async (t) => {
  // files are made with their final mode and changed only where the new file differs: a
  // process umask of 077 and a setgid directory owned by group 55 must not show through
  const dir = tempDir(t);
  const out = path.join(dir, 'out');
  fs.mkdirSync(path.join(out, 'sg'), { recursive: true });
  fs.chownSync(path.join(out, 'sg'), 0, 55);
  fs.chmodSync(path.join(out, 'sg'), 0o2775);
  const body = Buffer.from('body\n');
  const files: Array<[string, number, number, number]> = [
    ['sg/plain', 0o644, 0, 0],
    ['sg/setuid', 0o4755, 1000, 1000],
    ['sg/group55', 0o640, 0, 55],
    ['open', 0o777, 0, 0],
    ['private', 0o600, 0, 0],
    ['sticky-setgid', 0o3750, 7, 8],
    ['owned', 0o644, 4242, 4343],
  ];
  const tarPath = hostileTar(dir, files.map(([name, mode, uid, gid]) => ({ e: { name, mode, uid, gid }, body })));
  const tool = path.join(path.dirname(new URL(import.meta.url).pathname), '..', '..', 'hack', 'tar.mjs');
  execFileSync('sh', ['-c', 'umask 077 && exec "$0" --import tsx "$1" extract "$2" "$3"', process.execPath, tool, tarPath, out], { env: { ...process.env, LAYERS_SOURCES: '1' } });
  for (const [name, mode, uid, gid] of files) {
    const st = fs.statSync(path.join(out, name));
    t.deepEqual([name, (st.mode & 0o7777).toString(8), st.uid, st.gid], [name, mode.toString(8), uid, gid]);
    t.is(fs.readFileSync(path.join(out, name), 'utf8'), 'body\n');
  }
});

test('sparse files from GNU tar keep their holes', async (t) => {
  const mnt = dirOn(t, 'ext4', 64 << 20);
  const src = path.join(mnt, 'src');
  fs.mkdirSync(src);
  const f = path.join(src, 'sparse');
  const fd = fs.openSync(f, 'w');
  fs.writeSync(fd, Buffer.alloc(8192, 1), 0, 8192, 0);
  fs.writeSync(fd, Buffer.alloc(4096, 2), 0, 4096, 20 << 20);
  fs.ftruncateSync(fd, 40 << 20);
  fs.closeSync(fd);
  for (const fmt of [['--format=gnu'], ['--format=pax', '--sparse-version=0.1'], ['--format=pax', '--sparse-version=1.0']]) {
    const tarPath = path.join(mnt, `s-${fmt.join('')}.tar`);
    execFileSync('tar', [...fmt, '--sparse', '-cf', tarPath, '-C', src, 'sparse']);
    const out = fs.mkdtempSync(path.join(mnt, 'out-'));
    await ourExtract(tarPath, out);
    const got = path.join(out, 'sparse');
    t.is(fs.statSync(got).size, 40 << 20, fmt.join(' '));
    t.true(fs.statSync(got).blocks * 512 < 1 << 20, `${fmt.join(' ')}: holes kept`);
    t.true(fs.readFileSync(got).equals(fs.readFileSync(f)), `${fmt.join(' ')}: same bytes`);
  }
});

for (const kind of ['ext4', 'btrfs', 'xfs'] as const satisfies readonly FsKind[]) {
  test(`${kind}: with sparse, files with holes are written as PAX 1.0 sparse: only their data is stored, and GNU tar and we make the holes again`, async (t) => {
    const mnt = loopFs(t, kind, 320 << 20);
    const src = path.join(mnt, 'src');
    fs.mkdirSync(src);
    const disk = path.join(src, 'disk.img'); // data at the start, in the middle and at the end of 256 MiB (a sparse file may not be larger than the layer's filesystem)
    let fd = fs.openSync(disk, 'w');
    fs.writeSync(fd, Buffer.alloc(8192, 1), 0, 8192, 0);
    fs.writeSync(fd, Buffer.alloc(4096, 2), 0, 4096, 100 << 20);
    fs.writeSync(fd, Buffer.from('end'), 0, 3, (256 << 20) - 3);
    fs.closeSync(fd);
    const tailHole = path.join(src, 'tail-hole'); // data, then a hole to the end
    fd = fs.openSync(tailHole, 'w');
    fs.writeSync(fd, Buffer.alloc(70_000, 3), 0, 70_000, 0);
    fs.ftruncateSync(fd, 64 << 20);
    fs.closeSync(fd);
    fs.writeFileSync(path.join(src, 'all-hole'), '');
    fs.truncateSync(path.join(src, 'all-hole'), 100 << 20);
    fs.writeFileSync(path.join(src, 'dense'), Buffer.alloc(200_000, 4)); // no holes: a plain entry

    const tarPath = path.join(mnt, 'sparse.tar');
    await ourTar(src, tarPath, { sparse: true });
    t.true(fs.statSync(tarPath).size < 400_000, `the tar holds the data only (${fs.statSync(tarPath).size} bytes)`);
    // a reader that knows no sparse files sees GNU.sparse records and the real names in them
    const verbose = execFileSync('tar', ['-tvf', tarPath], { encoding: 'utf8' });
    t.regex(verbose, / 268435456 .* disk\.img$/m, 'GNU tar lists the real size');
    const fdr = fs.openSync(tarPath, 'r');
    const src2 = new FileSource(fdr, 0);
    const kinds: Record<string, boolean> = {};
    for (let e = readEntry(src2); e; e = readEntry(src2)) {
      kinds[e.name] = e.sparse !== undefined;
      src2.advance(e.size);
      src2.skip(padding(e.size));
    }
    fs.closeSync(fdr);
    t.deepEqual(kinds, { 'all-hole': true, dense: false, 'disk.img': true, 'tail-hole': true });

    for (const [who, extract] of [
      ['GNU tar', async (dst: string) => void execFileSync('tar', ['-xf', tarPath, '-C', dst])],
      ['ours', async (dst: string) => void (await ourExtract(tarPath, dst))],
    ] as const) {
      const dst = fs.mkdtempSync(path.join(mnt, 'x-'));
      await extract(dst);
      for (const name of ['disk.img', 'tail-hole', 'all-hole', 'dense']) {
        const [a, b] = [path.join(src, name), path.join(dst, name)];
        t.is(fs.statSync(b).size, fs.statSync(a).size, `${who}: ${name} size`);
        t.is(sha256File(b), sha256File(a), `${who}: ${name} bytes`);
        // (up to 1 MiB more: xfs preallocates past what a writer wrote, GNU tar's writes included)
        t.true(fs.statSync(b).blocks * 512 <= fs.statSync(a).blocks * 512 + (1 << 20), `${who}: ${name} keeps its holes (${fs.statSync(b).blocks} blocks)`);
      }
    }
    // sparse: false, a file with holes is a plain entry: every byte stored, as the peer writes
    // (the 64 MiB file alone here: with the others it would not fit on this filesystem as a plain tar)
    const tailOnly = () => [...treeItems(src)].filter((i) => i.entry.name === 'tail-hole');
    const plain = path.join(mnt, 'plain.tar');
    let out = fs.openSync(plain, 'w');
    await writeTar(src, tailOnly(), out, { outOffset: 0, sparse: false });
    fs.closeSync(out);
    t.true(fs.statSync(plain).size > 64 << 20, 'a plain entry stores the hole as zeros');
    // unset (the default): sparse where the holes are most of the file, plain where they are not
    const half = path.join(mnt, 'half');
    fs.mkdirSync(half);
    fd = fs.openSync(path.join(half, 'mostly-data'), 'w'); // 320 KiB of data, a 64 KiB hole at the end
    fs.writeSync(fd, Buffer.alloc(320 << 10, 5), 0, 320 << 10, 0);
    fs.ftruncateSync(fd, 384 << 10);
    fs.closeSync(fd);
    for (const [dir, items, opts, sparse] of [
      [src, tailOnly, {}, true],
      [half, () => treeItems(half), {}, false],
      [half, () => treeItems(half), { sparse: true }, true],
    ] as const) {
      const p = path.join(mnt, 'default.tar');
      out = fs.openSync(p, 'w');
      await writeTar(dir, items(), out, { outOffset: 0, ...opts });
      fs.closeSync(out);
      const listed = execFileSync('tar', ['-tvf', p], { encoding: 'utf8' });
      const entries = readAll(p).filter((e) => e.type === 'file');
      t.is(entries.length, 1, listed);
      t.is(entries[0].sparse !== undefined, sparse, `${entries[0].name} with ${JSON.stringify(opts)}: ${listed}`);
    }
  });
}
