// Compressed diffs (docs/tar-engine.md, "Compression"): `diff` writes gzip or zstd, from the API
// (DiffOptions.compression) and the CLI (-c/--gzip as the peer spells it, --zstd and
// --compression KIND ours), and the output decompresses to exactly the uncompressed diff's bytes,
// for an applied layer (reassembled from its tar-split record) and a changed one (the driver's diff);
// and zstd input inflated by the addon's libzstd (native/zstd.cc).
import test, { type ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { RecordStore } from '../../lib/store/store.ts';
import { native } from '../../lib/native.ts';
import { gnuTar, makeTree, tempStore, type TempStore } from '../fixtures/store.ts';

const DECOMPRESS = { gzip: ['gzip', '-dc'], zstd: ['zstd', '-dc', '-q'] } as const;

/** a store with `base` (imported from a GNU tar) and `child` (changed through a mount) */
async function twoLayers(t: ExecutionContext): Promise<{ s: TempStore; store: RecordStore }> {
  const s = tempStore(t);
  const tree = path.join(s.dir, 'tree');
  fs.mkdirSync(tree);
  makeTree(tree);
  fs.writeFileSync(path.join(tree, 'random'), Buffer.from(Array.from({ length: 200_000 }, (_, i) => (i * 7919) % 251)));
  const store = await s.open();
  await store.createLayer({ names: ['base'] }, gnuTar(tree, path.join(s.dir, 'base.tar')));
  await store.createLayer({ names: ['child'], parent: 'base' });
  const dir = await store.mount('child');
  fs.writeFileSync(path.join(dir, 'etc/hostname'), 'other\n');
  fs.rmSync(path.join(dir, 'etc/conf.d/a.conf'));
  fs.writeFileSync(path.join(dir, 'added'), 'line of text\n'.repeat(5000));
  await store.unmount('child');
  return { s, store };
}

async function diffBytes(store: RecordStore, file: string, layer: string, compression?: 'gzip' | 'zstd'): Promise<Buffer> {
  const fd = fs.openSync(file, 'w');
  try {
    await store.diff(layer, fd, { compression });
  } finally {
    fs.closeSync(fd);
  }
  return fs.readFileSync(file);
}

test('DiffOptions.compression: gzip and zstd output decompress to the uncompressed diff', async (t) => {
  const { s, store } = await twoLayers(t);
  for (const layer of ['base', 'child']) {
    const plain = await diffBytes(store, path.join(s.dir, `${layer}.tar`), layer);
    t.true(plain.length > 10_000, layer);
    for (const kind of ['gzip', 'zstd'] as const) {
      const file = path.join(s.dir, `${layer}.tar.${kind}`);
      const packed = await diffBytes(store, file, layer, kind);
      t.true(packed.length < plain.length / 2, `${layer} ${kind}: ${packed.length} of ${plain.length}`);
      const [cmd, ...args] = DECOMPRESS[kind];
      t.deepEqual(execFileSync(cmd, [...args, file], { maxBuffer: 1 << 26 }), plain, `${layer} ${kind}`);
    }
  }
});

test('diff CLI: -c, --zstd, --compression KIND; conflicting or unknown kinds are usage errors', async (t) => {
  const { s, store } = await twoLayers(t);
  const plain = path.join(s.dir, 'plain.tar');
  t.is((await s.cli(['diff', '-f', plain, 'child'])).code, 0);
  const expected = fs.readFileSync(plain);
  const cases: Array<[string[], 'gzip' | 'zstd' | 'none']> = [
    [['-c'], 'gzip'],
    [['--gzip'], 'gzip'],
    [['--compression', 'gzip'], 'gzip'],
    [['--zstd'], 'zstd'],
    [['--compression=zstd'], 'zstd'],
    [['--compression', 'none'], 'none'],
    [['--zstd', '-u'], 'none'],
  ];
  for (const [flags, kind] of cases) {
    const out = path.join(s.dir, `out-${flags.join('')}`);
    const r = await s.cli(['diff', ...flags, '-f', out, 'child']);
    t.is(r.code, 0, `${flags.join(' ')}: ${r.stderr}`);
    if (kind === 'none') t.deepEqual(fs.readFileSync(out), expected, flags.join(' '));
    else {
      const [cmd, ...args] = DECOMPRESS[kind];
      t.deepEqual(execFileSync(cmd, [...args, out]), expected, flags.join(' '));
    }
  }
  // to stdout too (the compressor writes into a pipe), with no zstd command to run: the addon's libzstd compresses
  const piped = execFileSync(process.execPath, [path.join(import.meta.dirname, '../../bin/layers.js'), '-g', s.root, '-R', s.runroot, 'diff', '--zstd', 'child'], {
    env: { ...process.env, PATH: '/nonexistent' },
  });
  t.deepEqual(execFileSync('zstd', ['-dc', '-q'], { input: piped }), expected);
  // one frame with its content checksum (Frame_Header_Descriptor bit 2), as the zstd command writes
  t.is(piped.readUInt32LE(0), 0xfd2fb528);
  t.is(piped[4] & 0x04, 0x04);
  for (const [flags, re] of [
    [['-c', '--zstd'], /conflicting compressions: gzip and zstd/],
    [['--compression', 'lz4'], /--compression lz4: use gzip, zstd or none/],
  ] as const) {
    const r = await s.cli(['diff', ...flags, '-f', path.join(s.dir, 'x'), 'child']);
    t.is(r.code, 2, flags.join(' '));
    t.regex(r.stderr, re);
  }
});

test('zstd input by the addon: concatenated frames from a pipe, skippable frames; corrupt data names the input and leaves nothing', async (t) => {
  const s = tempStore(t);
  const tree = path.join(s.dir, 'tree');
  fs.mkdirSync(tree);
  makeTree(tree);
  const tar = fs.readFileSync(gnuTar(tree, path.join(s.dir, 'l.tar')));
  const half = tar.length >> 1;
  // two frames (zstd -c of each half, concatenated) with a skippable frame between, as `zstd -d` takes them
  const skippable = Buffer.concat([Buffer.from([0x50, 0x2a, 0x4d, 0x18, 3, 0, 0, 0]), Buffer.from('abc')]);
  const framed = Buffer.concat([execFileSync('zstd', ['-c', '-q'], { input: tar.subarray(0, half) }), skippable, execFileSync('zstd', ['-c', '-q', '-19'], { input: tar.subarray(half) })]);
  const file = path.join(s.dir, 'l.tar.zst');
  fs.writeFileSync(file, framed);
  t.deepEqual(execFileSync('zstd', ['-dc', '-q', file]), tar, 'the zstd command reads it as the tar');
  const r = await s.cli(['import-layer', '-n', 'framed'], { stdinFile: file });
  t.is(r.code, 0, r.stderr);
  const store = await s.open();
  const rec = (await store.layers()).find((l) => l.names?.includes('framed'))!;
  t.is(rec['compressed-diff-digest'], 'sha256:' + createHash('sha256').update(framed).digest('hex'));
  t.is(rec['compressed-size'], framed.length);
  t.is(rec['diff-digest'], 'sha256:' + createHash('sha256').update(tar).digest('hex'));
  t.is(rec.compression, 4);
  // flipped bytes inside the frame (its content checksum, on by default, catches any that decode): libzstd's reason, the input named, no layer, no temp file
  const corrupt = execFileSync('zstd', ['-c', '-q'], { input: tar });
  corrupt[corrupt.length >> 1] ^= 0xff;
  corrupt[(corrupt.length >> 1) + 1] ^= 0xff;
  fs.writeFileSync(file, corrupt);
  const err = await t.throwsAsync(store.createLayer({ names: ['bad'] }, file));
  t.is((err as { code?: string }).code, 'ECOMPRESSION');
  t.regex(err!.message, /l\.tar\.zst: bad zstd data: \S/);
  t.false(await store.exists('bad'));
  t.deepEqual(fs.readdirSync(path.join(s.root, 'tmp')), []);
});

test("libzstd is the system's: the built and the prebuilt binary link libzstd.so.1 and define no ZSTD_ symbol of their own", (t) => {
  const root = path.join(import.meta.dirname, '../..');
  const binaries = ['build/Release/layers_native.node', 'prebuilds/linux-x64/layers.glibc.node'].map((b) => path.join(root, b)).filter((b) => fs.existsSync(b));
  t.true(binaries.length > 0);
  for (const b of binaries) {
    const needed = execFileSync('readelf', ['-d', b], { encoding: 'utf8' });
    t.regex(needed, /NEEDED.*libc\.so/, b);
    t.regex(needed, /NEEDED.*\[libzstd\.so\.1\]/, b);
    // the library's code is not copied in: the ZSTD_ symbols it calls are imported
    t.regex(execFileSync('nm', ['-D', '--undefined-only', b], { encoding: 'utf8' }), /\bU ZSTD_decompressStream\b/, b);
  }
});

/** 2 GiB of zeros, zstd -1: ~200 KiB that take seconds to inflate */
function zeros(dir: string): string {
  const zst = path.join(dir, 'zeros.zst');
  execFileSync('sh', ['-c', 'head -c 2G /dev/zero | zstd -q -1 -c > "$1"', 'sh', zst]);
  return zst;
}

test('zstd decompression stops at its next output buffer once its abort flag is set; an AbortSignal during it leaves no layer', async (t) => {
  const s = tempStore(t);
  const zst = zeros(s.dir);
  // the native call: its whole input is one read, so the flag is checked between output buffers
  const inFd = fs.openSync(zst, 'r');
  const outPath = path.join(s.dir, 'out');
  const outFd = fs.openSync(outPath, 'w');
  try {
    const abort = new Int32Array(1);
    const running = native().zstdDecompress(inFd, 0, outFd, Buffer.alloc(0), native().sha256(), new Float64Array(1), abort);
    running.catch(() => undefined);
    while (fs.fstatSync(outFd).size === 0) await new Promise((r) => setTimeout(r, 2));
    Atomics.store(abort, 0, 1);
    await t.throwsAsync(running, { code: 'ECANCELED' });
    t.true(fs.fstatSync(outFd).size < 2 ** 31, `stopped after ${fs.fstatSync(outFd).size} bytes`);
  } finally {
    fs.closeSync(inFd);
    fs.closeSync(outFd);
  }
  // through the store: aborted once the layer's record exists (the decompression follows it)
  const store = await s.open();
  const ac = new AbortController();
  const importing = store.createLayer({ names: ['zeros'], signal: ac.signal }, zst);
  importing.catch(() => undefined);
  const incomplete = () => {
    try {
      return (s.records() as Array<{ flags?: { incomplete?: boolean } }>).some((r) => r.flags?.incomplete);
    } catch {
      return false; // layers.json not there yet
    }
  };
  while (!incomplete()) await new Promise((r) => setTimeout(r, 2));
  ac.abort();
  const err = await t.throwsAsync(importing, { code: 'EABORTED' });
  t.regex(err!.message, /zeros\.zst: aborted/);
  t.false(await store.exists('zeros'));
  t.deepEqual(s.records(), []);
  t.deepEqual(fs.readdirSync(path.join(s.root, 'tmp')), []);
});
