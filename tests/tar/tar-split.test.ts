// tar-split records (docs/tar-engine.md, "tar-split records"), checked against the peer: tars
// made by GNU tar are imported with containers-storage; our reader parses its record, our
// assembleTar rebuilds the tar byte for byte from that record and the peer's tree, and our
// disassembleTar writes the same JSON lines the peer wrote. CRC-64 is checked against an
// independent bit-by-bit implementation in Python.
import test, { type ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { native } from '../../lib/native.ts';
import {
  assembleTar,
  disassembleTar,
  goJsonString,
  LayerChangedError,
  readTarSplit,
  TarSplitWriter,
  type TarSplitEntry,
} from '../../lib/tar/tar-split.ts';
import { TarError } from '../../lib/tar/errors.ts';
import { tempDir } from '../fixtures/fs.ts';

// ------------------------------------------------------------------ helpers

/** CRC-64/ISO the way Go's hash/crc64 defines it, one bit at a time: shares nothing with ours */
const PY_CRC = `
import sys
P = 0xD800000000000000
tab = []
for i in range(256):
    c = i
    for _ in range(8):
        c = (c >> 1) ^ P if c & 1 else c >> 1
    tab.append(c)
crc = 0xFFFFFFFFFFFFFFFF
for b in sys.stdin.buffer.read():
    crc = tab[(crc ^ b) & 0xFF] ^ (crc >> 8)
print('%016x' % (crc ^ 0xFFFFFFFFFFFFFFFF))
`;

function pyCrc(data: Buffer): string {
  return execFileSync('python3', ['-c', PY_CRC], { input: data, encoding: 'utf8' }).trim();
}

function crcOf(data: Buffer): string {
  const c = native().crc64();
  c.update(data);
  return c.sum().toString('hex');
}

function sha256(file: string): string {
  return createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

interface Peer {
  graph: string;
  run: string;
}

function peerStore(t: ExecutionContext): Peer {
  const dir = tempDir(t, 'layers-tarsplit-');
  return { graph: path.join(dir, 'graph'), run: path.join(dir, 'run') };
}

/** import a tar with containers-storage on vfs: the layer's record and tree */
function peerImport(p: Peer, tar: string): { id: string; record: string; tree: string } {
  const out = execFileSync('containers-storage', ['--graph', p.graph, '--run', p.run, '--storage-driver', 'vfs', 'import-layer', '-f', tar], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const id = out.trim().split('\n').pop()!;
  return { id, record: path.join(p.graph, 'vfs-layers', `${id}.tar-split.gz`), tree: path.join(p.graph, 'vfs', 'dir', id) };
}

function gunzipLines(file: string): string[] {
  return zlib.gunzipSync(fs.readFileSync(file)).toString('utf8').split('\n');
}

async function entries(file: string): Promise<TarSplitEntry[]> {
  const out: TarSplitEntry[] = [];
  for await (const e of readTarSplit(file)) out.push(e);
  return out;
}

async function assembleToFile(record: string, tree: string, out: string, verify = false): Promise<void> {
  const fd = fs.openSync(out, 'w');
  try {
    await assembleTar(record, tree, fd, { outOffset: 0, verify });
  } finally {
    fs.closeSync(fd);
  }
}

async function disassembleToFile(tar: string, record: string): Promise<void> {
  const w = await TarSplitWriter.create(record);
  const fd = fs.openSync(tar, 'r');
  try {
    await disassembleTar(fd, w);
    await w.commit();
  } catch (err) {
    await w.abort();
    throw err;
  } finally {
    fs.closeSync(fd);
  }
}

/** a tree with what tar-split has to get right: long names, links, empty files, odd characters */
function makeTree(dir: string, opts: { xattrs?: boolean } = {}): void {
  const long = 'd'.repeat(90) + '/' + 'e'.repeat(90) + '/' + 'f'.repeat(120);
  fs.mkdirSync(path.join(dir, path.dirname(long)), { recursive: true });
  fs.writeFileSync(path.join(dir, long), 'long name\n');
  fs.mkdirSync(path.join(dir, 'etc'));
  fs.writeFileSync(path.join(dir, 'etc/hostname'), 'layers\n');
  fs.writeFileSync(path.join(dir, 'etc/block'), Buffer.alloc(512, 1)); // no padding after it
  fs.writeFileSync(path.join(dir, 'etc/big'), randomBytes(300_000));
  fs.writeFileSync(path.join(dir, 'empty'), '');
  fs.linkSync(path.join(dir, 'etc/hostname'), path.join(dir, 'hardlink'));
  fs.symlinkSync('etc/hostname', path.join(dir, 'symlink'));
  fs.symlinkSync('x'.repeat(150), path.join(dir, 'long-symlink'));
  fs.writeFileSync(path.join(dir, 'we<ird>&"\\ näme\t'), 'odd\n');
  if (opts.xattrs) {
    execFileSync('setfattr', ['-n', 'user.layers', '-v', 'tar-split', path.join(dir, 'etc/hostname')]);
    execFileSync('setfattr', ['-n', 'user.bin', '-v', '0x00ff10', path.join(dir, 'etc/big')]);
  }
}

// ------------------------------------------------------------------ CRC-64

test('crc64 matches Go\'s CRC-64/ISO: the check value, the empty input, every length up to 40 and a large random buffer', (t) => {
  t.is(crcOf(Buffer.from('123456789')), 'b90956c775a41001'); // crc64.Checksum([]byte("123456789"), crc64.MakeTable(crc64.ISO))
  t.is(crcOf(Buffer.alloc(0)), '0000000000000000');
  const data = randomBytes(40);
  for (let n = 0; n <= 40; n++) t.is(crcOf(data.subarray(0, n)), pyCrc(data.subarray(0, n)), `length ${n}`);
  const big = randomBytes(300_001);
  t.is(crcOf(big), pyCrc(big));
});

test('crc64 of every length up to 1 100 and at every alignment matches Go\'s (the carry-less fold takes 64 bytes and more)', (t) => {
  const data = randomBytes(1100);
  // one Python run: the CRC of every prefix, and of the 1 000 bytes from each offset 0..63
  const script = PY_CRC.replace(/crc = 0xFFFF[\s\S]*$/, `
data = sys.stdin.buffer.read()
def crc(b):
    c = 0xFFFFFFFFFFFFFFFF
    for x in b:
        c = tab[(c ^ x) & 0xFF] ^ (c >> 8)
    return '%016x' % (c ^ 0xFFFFFFFFFFFFFFFF)
for n in range(len(data) + 1):
    print(crc(data[:n]))
for o in range(64):
    print(crc(data[o:o + 1000]))
`);
  const want = execFileSync('python3', ['-c', script], { input: data, encoding: 'utf8', maxBuffer: 1 << 20 }).trim().split('\n');
  const got = [...Array.from({ length: data.length + 1 }, (_, n) => crcOf(data.subarray(0, n))), ...Array.from({ length: 64 }, (_, o) => crcOf(data.subarray(o, o + 1000)))];
  t.is(got.length, want.length);
  const differ = got.findIndex((g, i) => g !== want[i]);
  t.is(differ, -1, `first difference at ${differ}`);
});

test('crc64 fed in pieces equals crc64 of the whole; reset starts over; crc64Range of a file equals update', async (t) => {
  const dir = tempDir(t);
  const data = randomBytes(3 << 20);
  const whole = crcOf(data);
  const c = native().crc64();
  for (let at = 0; at < data.length; ) {
    const n = Math.min(data.length - at, 1 + Math.floor(Math.random() * 100_000));
    c.update(data.subarray(at, at + n));
    at += n;
  }
  t.is(c.sum().toString('hex'), whole);
  t.is(c.sum().toString('hex'), whole, 'sum does not end the CRC');
  c.reset();
  t.is(c.sum().toString('hex'), '0000000000000000');

  const file = path.join(dir, 'f');
  fs.writeFileSync(file, data);
  const fd = fs.openSync(file, 'r');
  try {
    const r = native().crc64();
    t.is(await native().crc64Range(fd, 0, -1, r), data.length);
    t.is(r.sum().toString('hex'), whole);
    const part = native().crc64();
    t.is(await native().crc64Range(fd, 12345, 1_000_000, part), 1_000_000);
    t.is(part.sum().toString('hex'), crcOf(data.subarray(12345, 12345 + 1_000_000)));
  } finally {
    fs.closeSync(fd);
  }
  await t.throwsAsync(() => native().crc64Range(-1, 0, 10, native().crc64()), { code: 'EBADF' });
  t.throws(() => native().crc64Range(0, 0, 0, {} as never), { instanceOf: TypeError });
});

// ------------------------------------------------------------------ against the peer

const formats: Array<{ title: string; args: string[]; xattrs?: boolean; global?: boolean }> = [
  { title: 'GNU tar --format=gnu', args: ['--format=gnu'] },
  { title: 'GNU tar --format=posix with xattrs', args: ['--format=posix', '--xattrs', '--xattrs-include=user.*'], xattrs: true },
  { title: 'GNU tar --format=posix with a PAX global header', args: ['--format=posix', '--pax-option=comment=made-by-a-test'], global: true },
  { title: 'GNU tar --format=ustar, blocking factor 1 (no trailing zeros)', args: ['--format=ustar', '-b', '1'] },
];

for (const f of formats) {
  test(`${f.title}: the peer's record is read, reassembles the exact tar, and disassembleTar writes the same lines`, async (t) => {
    const p = peerStore(t);
    const dir = path.dirname(p.graph);
    const src = path.join(dir, 'src');
    fs.mkdirSync(src);
    if (f.title.includes('ustar')) {
      // ustar cannot hold names over 255 bytes or long link targets
      const deep = path.join(src, 'p'.repeat(70), 'q'.repeat(70));
      fs.mkdirSync(deep, { recursive: true });
      fs.writeFileSync(path.join(deep, 'b'.repeat(90)), 'prefix + name\n');
      fs.writeFileSync(path.join(src, 'file'), 'x'.repeat(1000));
      fs.writeFileSync(path.join(src, 'empty'), '');
    } else makeTree(src, { xattrs: f.xattrs });
    const tar = path.join(dir, 't.tar');
    execFileSync('tar', [...f.args, '--numeric-owner', '-C', src, '-cf', tar, '.']);
    const layer = peerImport(p, tar);

    const got = await entries(layer.record);
    t.deepEqual(
      got.map((e) => e.position),
      got.map((_, i) => i),
      'positions number the entries',
    );
    const files = got.filter((e) => e.type === 'file');
    t.true(files.some((e) => e.type === 'file' && e.name === './etc/hostname' && e.size === 7) || f.title.includes('ustar'));
    t.true(files.every((e) => e.type === 'file' && (e.size === 0 ? e.crc === null : e.crc?.length === 8)));
    if (f.global) t.true(files.some((e) => e.type === 'file' && e.name.includes('GlobalHead') && e.size === 0), 'the global header is a member');
    // every body's recorded CRC is the CRC of that file in the tree
    for (const e of files) {
      if (e.type !== 'file' || e.size === 0) continue;
      t.is(e.crc!.toString('hex'), crcOf(fs.readFileSync(path.join(layer.tree, e.name))), e.name);
    }

    for (const verify of [false, true]) {
      const out = path.join(dir, `out-${verify}.tar`);
      await assembleToFile(layer.record, layer.tree, out, verify);
      t.is(sha256(out), sha256(tar), `assembled tar (verify ${verify}) is the original`);
    }

    const mine = path.join(dir, 'mine.tar-split.gz');
    await disassembleToFile(tar, mine);
    const [ours, theirs] = [gunzipLines(mine), gunzipLines(layer.record)];
    t.is(ours.length, theirs.length);
    const differ = ours.findIndex((line, i) => line !== theirs[i]);
    t.is(differ, -1, differ < 0 ? '' : `line ${differ + 1} differs:\n ours:   ${ours[differ].slice(0, 300)}\n theirs: ${theirs[differ]?.slice(0, 300)}`);
    t.is(fs.statSync(mine).mode & 0o777, 0o600);
    t.deepEqual(fs.readdirSync(dir).filter((n) => n.endsWith('.tmp')), [], 'no temp file left');
  });
}

/** the record's lines with the segments after the last file entry joined into one: how the
 *  peer cuts the bytes after the end blocks depends on its reader's buffering (here 7 680 bytes
 *  left in a buffer, then 1 MiB reads); the bytes are the same */
async function withTailJoined(file: string): Promise<string[]> {
  const all = await entries(file);
  let last = all.length;
  while (last > 0 && all[last - 1].type === 'segment') last--;
  const tail = Buffer.concat(all.slice(last).map((e) => (e as { payload: Buffer }).payload));
  return [...all.slice(0, last).map((e) => JSON.stringify({ ...e, position: 0 })), tail.toString('hex')];
}

test('a tar with bytes after its end blocks: the record keeps them, and the tar comes back whole', async (t) => {
  const p = peerStore(t);
  const dir = path.dirname(p.graph);
  const src = path.join(dir, 'src');
  fs.mkdirSync(src);
  fs.writeFileSync(path.join(src, 'f'), 'body');
  const tar = path.join(dir, 't.tar');
  execFileSync('tar', ['--format=gnu', '-C', src, '-cf', tar, '.']);
  fs.appendFileSync(tar, randomBytes((1 << 20) + 4321));
  const layer = peerImport(p, tar);
  const mine = path.join(dir, 'mine.tar-split.gz');
  await disassembleToFile(tar, mine);
  const [a, b] = [await withTailJoined(mine), await withTailJoined(layer.record)];
  t.is(a.length, b.length);
  t.true(a.every((line, i) => line === b[i]), 'the same entries, and the same bytes after the last member');
  const ours = await entries(mine);
  t.true(ours.every((e) => e.type === 'file' || e.payload.length <= 1 << 20), 'no segment over 1 MiB');
  const last = ours[ours.length - 1];
  t.true(last.type === 'segment' && last.payload.length === 0, 'an empty segment last, as the peer writes');
  for (const record of [mine, layer.record]) {
    const out = path.join(dir, 'out.tar');
    await assembleToFile(record, layer.tree, out);
    t.is(sha256(out), sha256(tar));
  }
});

/** dir/src holding 'sparse': 4 MiB, data only at its start and end (GNU tar --sparse makes it a sparse member) */
function sparseSource(dir: string): string {
  const src = path.join(dir, 'src');
  fs.mkdirSync(src);
  const fd = fs.openSync(path.join(src, 'sparse'), 'w');
  fs.writeSync(fd, 'data', 0, 'utf8');
  fs.ftruncateSync(fd, 4 << 20);
  fs.writeSync(fd, 'end', (4 << 20) - 3, 'utf8');
  fs.closeSync(fd);
  return src;
}

test('sparse members are refused by disassembleTar: a tar-split record cannot give their tar back', async (t) => {
  const dir = tempDir(t);
  const src = sparseSource(dir);
  const tar = path.join(dir, 't.tar');
  execFileSync('tar', ['--format=posix', '--sparse', '-C', src, '-cf', tar, '.']);
  const record = path.join(dir, 'r.tar-split.gz');
  const err = await t.throwsAsync(() => disassembleToFile(tar, record), { instanceOf: TarError });
  t.regex(err!.message, /sparse/);
  t.false(fs.existsSync(record));
  t.deepEqual(fs.readdirSync(dir).sort(), ['src', 't.tar'], 'the temp record is gone');
});

// ------------------------------------------------------------------ changed layers

test('a file grown, shrunk, changed, removed or replaced after import makes assembleTar fail naming it', async (t) => {
  const p = peerStore(t);
  const dir = path.dirname(p.graph);
  const src = path.join(dir, 'src');
  fs.mkdirSync(src);
  makeTree(src);
  const tar = path.join(dir, 't.tar');
  execFileSync('tar', ['--format=gnu', '-C', src, '-cf', tar, '.']);
  const layer = peerImport(p, tar);
  const out = path.join(dir, 'out.tar');
  const target = path.join(layer.tree, 'etc/big');
  const original = fs.readFileSync(target);

  const cases: Array<[string, () => void, RegExp, boolean?]> = [
    ['grown', () => fs.appendFileSync(target, 'more'), /etc\/big: has 300004 bytes, the record says 300000/],
    ['shrunk', () => fs.truncateSync(target, 1000), /etc\/big: has 1000 bytes/],
    ['removed', () => fs.rmSync(target), /etc\/big: is missing/],
    ['replaced by a symlink', () => (fs.rmSync(target), fs.symlinkSync('hostname', target)), /etc\/big: is no longer a regular file/],
    ['changed, same size (verify mode)', () => fs.writeFileSync(target, Buffer.from(original).fill(0, 0, 10)), /etc\/big: .*CRC-64 differs/, true],
  ];
  for (const [what, change, message, verify] of cases) {
    change();
    const err = await t.throwsAsync(() => assembleToFile(layer.record, layer.tree, out, verify), { instanceOf: LayerChangedError }, what);
    t.regex(err!.message, message, what);
    t.is(err!.code, 'ELAYERCHANGED');
    t.is((err as LayerChangedError).path, 'etc/big');
    fs.rmSync(target, { force: true });
    fs.writeFileSync(target, original);
  }
  // restored: the tar comes back again
  await assembleToFile(layer.record, layer.tree, out, true);
  t.is(sha256(out), sha256(tar));
});

test('a record name that climbs out of the layer root is refused', async (t) => {
  const dir = tempDir(t);
  fs.mkdirSync(path.join(dir, 'root'));
  fs.writeFileSync(path.join(dir, 'secret'), 'x');
  const record = path.join(dir, 'r.tar-split.gz');
  const w = await TarSplitWriter.create(record);
  await w.addSegment(Buffer.alloc(512));
  await w.addFile('../secret', 1, crcBuf(Buffer.from('x')));
  await w.commit();
  const fd = fs.openSync(path.join(dir, 'out'), 'w');
  t.teardown(() => fs.closeSync(fd));
  await t.throwsAsync(() => assembleTar(record, path.join(dir, 'root'), fd), { instanceOf: TarError, code: 'ETARPATH' });
});

function crcBuf(b: Buffer): Buffer {
  const c = native().crc64();
  c.update(b);
  return c.sum();
}

// ------------------------------------------------------------------ the writer

test('writer: entries read back identical, Go\'s JSON escapes, name_raw for names that are not UTF-8', async (t) => {
  const dir = tempDir(t);
  const record = path.join(dir, 'r.tar-split.gz');
  const w = await TarSplitWriter.create(record);
  const raw = Buffer.from([0x66, 0xff, 0xfe, 0x2f, 0x61]); // not UTF-8
  await w.addSegment(Buffer.from('header bytes'));
  await w.addFile('./dir/', 0, null);
  await w.addSegment(Buffer.alloc(0));
  await w.addFile('a<b>&c\u0008\u2028"\\\n', 3, crcBuf(Buffer.from('abc')));
  await w.addFile(raw, 1, crcBuf(Buffer.from('z')));
  t.is(w.entries, 5);
  t.false(fs.existsSync(record), 'nothing before commit');
  await w.commit();
  t.deepEqual(fs.readdirSync(dir), ['r.tar-split.gz']);

  t.deepEqual(gunzipLines(record), [
    `{"type":2,"payload":"${Buffer.from('header bytes').toString('base64')}","position":0}`,
    '{"type":1,"name":"./dir/","payload":null,"position":1}',
    '{"type":2,"payload":"","position":2}',
    `{"type":1,"name":"a\\u003cb\\u003e\\u0026c\\u0008\\u2028\\"\\\\\\n","size":3,"payload":"${crcBuf(Buffer.from('abc')).toString('base64')}","position":3}`,
    `{"type":1,"name_raw":"${raw.toString('base64')}","size":1,"payload":"${crcBuf(Buffer.from('z')).toString('base64')}","position":4}`,
    '',
  ]);
  const back = await entries(record);
  t.deepEqual(back[0], { type: 'segment', position: 0, payload: Buffer.from('header bytes') });
  t.deepEqual(back[1], { type: 'file', position: 1, name: './dir/', size: 0, crc: null });
  t.deepEqual(back[2], { type: 'segment', position: 2, payload: Buffer.alloc(0) });
  t.deepEqual(back[3], { type: 'file', position: 3, name: 'a<b>&c\u0008\u2028"\\\n', size: 3, crc: crcBuf(Buffer.from('abc')) });
  t.deepEqual(back[4], { type: 'file', position: 4, name: 'f\uDCFF\uDCFE/a', nameRaw: raw, size: 1, crc: crcBuf(Buffer.from('z')) });
  t.is(goJsonString('plain/name'), '"plain/name"');
});

test('writer: a second entry for the same cleaned path fails as the peer\'s packer does; abort leaves nothing', async (t) => {
  const dir = tempDir(t);
  const record = path.join(dir, 'r.tar-split.gz');
  const w = await TarSplitWriter.create(record);
  await w.addFile('./etc/a', 0, null);
  await t.throwsAsync(() => w.addFile('etc//a/', 0, null), { instanceOf: TarError, message: /second entry/ });
  await w.abort();
  t.deepEqual(fs.readdirSync(dir), []);
});

test('reader: a record that is not gzip, or has a bad line, fails with ETARFORMAT naming the file and line', async (t) => {
  const dir = tempDir(t);
  const notGzip = path.join(dir, 'a.tar-split.gz');
  fs.writeFileSync(notGzip, 'plain text');
  await t.throwsAsync(() => entries(notGzip), { instanceOf: TarError, code: 'ETARFORMAT', message: /not valid gzip/ });
  const bad = path.join(dir, 'b.tar-split.gz');
  fs.writeFileSync(bad, zlib.gzipSync('{"type":2,"payload":"","position":0}\n{"type":7,"position":1}\n'));
  await t.throwsAsync(() => entries(bad), { instanceOf: TarError, message: /b\.tar-split\.gz: line 2 .*unknown entry type 7/ });
  const badCrc = path.join(dir, 'c.tar-split.gz');
  fs.writeFileSync(badCrc, zlib.gzipSync('{"type":1,"name":"f","size":3,"payload":"AAA=","position":0}\n'));
  await t.throwsAsync(() => entries(badCrc), { instanceOf: TarError, message: /line 1 .*f: payload is not an 8-byte CRC-64/ });
  await t.throwsAsync(() => entries(path.join(dir, 'missing.tar-split.gz')), { code: 'ENOENT' });
});

// ------------------------------------------------------------------ memory

test('assembling a record of 50 000 files keeps memory flat', async (t) => {
  t.timeout(5 * 60_000);
  const dir = tempDir(t);
  const tree = path.join(dir, 'tree');
  fs.mkdirSync(tree);
  // hardlinks to one small file, stored by tar as 50 000 bodies: quick to make on a busy machine
  const body = path.join(dir, 'body');
  fs.writeFileSync(body, Buffer.alloc(300, 'y'));
  for (let i = 0; i < 50_000; i++) {
    const d = path.join(tree, `d${Math.floor(i / 1000)}`);
    if (i % 1000 === 0) fs.mkdirSync(d);
    fs.linkSync(body, path.join(d, `a-file-with-a-name-of-some-length-${i}`));
  }
  const tar = path.join(dir, 't.tar');
  execFileSync('tar', ['--format=gnu', '--hard-dereference', '-C', tree, '-cf', tar, '.']);
  const record = path.join(dir, 'r.tar-split.gz');
  await disassembleToFile(tar, record);

  // in a child process of its own, so the test runner's memory is not measured; V8's young
  // generation is capped (by default it may take 3 x 16 MiB of garbage before collecting), so the
  // figure measures what is kept, not when the collector runs
  const script = path.join(dir, 'assemble.mts');
  fs.writeFileSync(
    script,
    `import fs from 'node:fs';
import { assembleTar } from ${JSON.stringify(path.resolve('lib/tar/tar-split.ts'))};
const [record, tree, out] = process.argv.slice(2);
globalThis.gc();
const before = process.memoryUsage().rss;
let peak = before;
const timer = setInterval(() => { peak = Math.max(peak, process.memoryUsage().rss); }, 5);
const fd = fs.openSync(out, 'w');
const r = await assembleTar(record, tree, fd, { outOffset: 0 });
fs.closeSync(fd);
clearInterval(timer);
peak = Math.max(peak, process.memoryUsage().rss);
console.log(JSON.stringify({ before, peak, files: r.files }));
`,
  );
  const out = path.join(dir, 'out.tar');
  const env = { ...process.env };
  delete env.NODE_V8_COVERAGE;
  const res = JSON.parse(execFileSync(process.execPath, ['--expose-gc', '--max-semi-space-size=2', '--import', 'tsx', script, record, tree, out], { encoding: 'utf8', env }).trim().split('\n').pop()!);
  t.is(res.files, 50_000);
  t.is(sha256(out), sha256(tar));
  const growth = (res.peak - res.before) / (1 << 20);
  t.log(`rss before ${(res.before / (1 << 20)).toFixed(0)} MiB, growth ${growth.toFixed(1)} MiB for 50 000 files`);
  // two 4 MiB batch buffers, the segments' objects and what V8 lets pile up before collecting;
  // holding the record or the tar would take well over 100 MiB
  t.true(growth < 80, `rss grew by ${growth.toFixed(1)} MiB`);
});

// ------------------------------------------------------------------ the native record

/** a check outside a test's context (nativeRecord has none): throws, failing the test that called it */
function expectSize(actual: number, expected: number, what: string): void {
  if (actual !== expected) throw new Error(`${what}: ${actual} !== ${expected}`);
}

/** the record hashTar makes in the read that hashes the tar (native/tar-split.cc), written to a file as it goes */
async function nativeRecord(tar: string): Promise<{ gz?: Buffer; declined?: string; entries?: number; digest: string }> {
  const fd = fs.openSync(tar, 'r');
  const out = `${tar}.record.gz`;
  const recordFd = fs.openSync(out, 'w+');
  try {
    const hash = native().sha256();
    const r = await native().hashTar(fd, hash, recordFd);
    readWhole(r.size, tar);
    const gz = r.tarSplit ? fs.readFileSync(out) : undefined;
    if (gz) expectSize(gz.length, r.tarSplitSize!, 'tarSplitSize counts what was written');
    return { gz, declined: r.declined, entries: r.entries, digest: hash.digest() };
  } finally {
    fs.closeSync(fd);
    fs.closeSync(recordFd);
    fs.rmSync(out, { force: true });
  }
}

/** hashTar read the whole file */
function readWhole(size: number, tar: string): void {
  if (size !== fs.statSync(tar).size) throw new Error(`hashTar read ${size} bytes of ${tar}`);
}

/** names that exercise Go's rules: JSON escapes, U+2028, a control character, bytes that are not UTF-8 */
function makeOddNames(dir: string): void {
  fs.mkdirSync(dir);
  fs.writeFileSync(path.join(dir, 'a<b>&c "q" \\ \u2028\u2029 \u0001 ünï'), 'odd\n');
  fs.writeFileSync(Buffer.concat([Buffer.from(dir + '/raw-'), Buffer.from([0xff, 0xfe, 0xc0, 0xaf, 0xed, 0xa0, 0x80])]), 'not utf-8\n');
  fs.mkdirSync(Buffer.concat([Buffer.from(dir + '/dir-'), Buffer.from([0x80])]));
  fs.writeFileSync(path.join(dir, 'n'.repeat(200)), 'long\n');
}

test('hashTar makes the record disassembleTar writes, byte for byte: GNU, posix, ustar, bsdtar, odd names, trailing bytes, no end blocks, a volume label', async (t) => {
  const dir = tempDir(t);
  const full = path.join(dir, 'full');
  fs.mkdirSync(full);
  makeTree(full, { xattrs: true });
  const odd = path.join(dir, 'odd');
  makeOddNames(odd);
  const small = path.join(dir, 'small');
  fs.mkdirSync(path.join(small, 'p'.repeat(70), 'q'.repeat(70)), { recursive: true });
  fs.writeFileSync(path.join(small, 'p'.repeat(70), 'q'.repeat(70), 'b'.repeat(90)), 'prefix + name\n');
  fs.writeFileSync(path.join(small, 'file'), 'x'.repeat(1000));

  const tars: Record<string, string> = {};
  const make = (name: string, cmd: string, args: string[], from: string) => {
    tars[name] = path.join(dir, `${name}.tar`);
    execFileSync(cmd, [...args, '-C', from, '-cf', tars[name], '.']);
  };
  for (const [tree, from] of [['full', full], ['odd', odd]] as const) {
    make(`${tree}-gnu`, 'tar', ['--format=gnu'], from);
    make(`${tree}-posix`, 'tar', ['--format=posix', '--xattrs', '--xattrs-include=user.*'], from);
    make(`${tree}-global`, 'tar', ['--format=posix', '--pax-option=comment=made-by-a-test'], from);
    make(`${tree}-bsdtar`, 'bsdtar', [], from);
    make(`${tree}-bsdtar-gnu`, 'bsdtar', ['--format=gnutar'], from);
  }
  make('ustar-b1', 'tar', ['--format=ustar', '-b', '1'], small);
  make('label', 'tar', ['--format=gnu', '-V', 'a volume label'], small);
  // bytes after the end blocks: more than one 1 MiB segment of them
  tars.trailing = path.join(dir, 'trailing.tar');
  fs.copyFileSync(tars['full-gnu'], tars.trailing);
  fs.appendFileSync(tars.trailing, randomBytes((2 << 20) + 4321));
  // no end blocks at all, and one end block only
  const cut = (name: string, drop: number) => {
    tars[name] = path.join(dir, `${name}.tar`);
    const b = fs.readFileSync(tars['ustar-b1']);
    fs.writeFileSync(tars[name], b.subarray(0, b.length - drop));
  };
  cut('no-end-blocks', 1024);
  cut('one-end-block', 512);

  for (const [name, tar] of Object.entries(tars)) {
    const js = path.join(dir, `${name}.js.tar-split.gz`);
    await disassembleToFile(tar, js);
    const mine = await nativeRecord(tar);
    t.is(mine.declined, undefined, `${name}: not declined`);
    t.is(mine.digest, `sha256:${sha256(tar)}`, `${name}: digest`);
    const [ours, ref] = [zlib.gunzipSync(mine.gz!), zlib.gunzipSync(fs.readFileSync(js))];
    const [a, b] = [ours.toString('latin1').split('\n'), ref.toString('latin1').split('\n')];
    const differ = a.findIndex((line, i) => line !== b[i]);
    t.is(differ, -1, differ < 0 ? name : `${name}: line ${differ + 1} differs:\n native: ${a[differ].slice(0, 300)}\n js:     ${b[differ]?.slice(0, 300)}`);
    t.true(ours.equals(ref), `${name}: the same bytes`);
    t.is(mine.entries, b.length - 1, `${name}: entries`);
  }
  // the odd names did reach the record as Go writes them
  const oddLines = zlib.gunzipSync((await nativeRecord(tars['odd-gnu'])).gz!).toString('utf8');
  t.regex(oddLines, /"name":"\.\/a\\u003cb\\u003e\\u0026c \\"q\\" \\\\ \\u2028\\u2029 \\u0001 ünï"/);
  t.regex(oddLines, /"name_raw":"/);
});

test('hashTar declines what disassembleTar refuses or reads its own way: a sparse member, a name twice', async (t) => {
  const dir = tempDir(t);
  const src = sparseSource(dir);
  for (const format of ['posix', 'gnu']) {
    const tar = path.join(dir, `sparse-${format}.tar`);
    execFileSync('tar', [`--format=${format}`, '--sparse', '-C', src, '-cf', tar, '.']);
    t.regex((await nativeRecord(tar)).declined ?? '', /sparse|member type/, format);
  }
  const twice = path.join(dir, 'twice.tar');
  fs.writeFileSync(path.join(dir, 'f'), 'one');
  execFileSync('tar', ['--format=gnu', '-C', dir, '-cf', twice, 'f']);
  execFileSync('tar', ['--format=gnu', '-C', dir, '-rf', twice, 'f']);
  const r = await nativeRecord(twice);
  t.regex(r.declined ?? '', /second entry/);
  t.is(r.gz, undefined);
  // a global header as the last member: disassembleTar's walk keeps it in the end's segment
  const globalOnly = path.join(dir, 'global-only.tar');
  fs.mkdirSync(path.join(dir, 'none'));
  execFileSync('tar', ['--format=posix', '--pax-option=comment=x', '-C', path.join(dir, 'none'), '-cf', globalOnly, '--files-from', '/dev/null']);
  t.true(fs.readFileSync(globalOnly).subarray(156, 157).equals(Buffer.from('g')), 'the tar holds a global header only');
  t.regex((await nativeRecord(globalOnly)).declined ?? '', /last member/);
});
