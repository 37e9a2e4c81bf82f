// The header codec against GNU tar (an independent writer and reader) and tar-stream (an
// independent reader): every field of every entry type, both ways, and hostile headers.
import test, { type ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { TarError } from '../../lib/tar/errors.ts';
import { END_OF_ARCHIVE, encodeHeader, padding, readEntry, sparseMapBlock } from '../../lib/tar/header.ts';
import { FileSource, PipeSource } from '../../lib/tar/source.ts';
import type { ReadEntry, TarEntry } from '../../lib/tar/types.ts';
import { tempDir } from '../fixtures/fs.ts';
import {
  TAR_STREAM_TYPE,
  fixChecksum,
  getXattrs,
  gnuTar,
  listTree,
  major,
  minor,
  paxBlocks,
  readAll,
  run,
  setXattr,
  storedBody,
  tarStreamList,
  unsparse,
  writeTarFile,
  type Item,
} from './gnutar.ts';

const CAPABILITY = Buffer.from('0100000200200000000000000000000000000000', 'hex');
const BINARY = Buffer.from([0x00, 0x80, 0xff, 0xfe, 0x7f, 0x0a, 0xc3, 0x28, 0x3d, 0x20]);
const LONG_DIR = 'L'.repeat(150) + '/' + 'M'.repeat(150);
const LONG_FILE = `${LONG_DIR}/file-${'n'.repeat(40)}`;
const LONG_TARGET = 't'.repeat(300);

function pattern(n: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed * 7 + (i >> 9)) & 0xff;
  return b;
}

function touchNs(p: string, when: string): void {
  run('touch', ['-h', '-d', when, p]);
}

/** a tree GNU tar archives; `extended` adds what ustar cannot hold */
function makeSource(dir: string, extended: boolean): void {
  const w = (rel: string, data: Buffer | string, mode = 0o644) => {
    const p = path.join(dir, rel);
    fs.mkdirSync(path.dirname(p), { recursive: true });
    fs.writeFileSync(p, data);
    fs.chmodSync(p, mode);
    return p;
  };
  fs.mkdirSync(path.join(dir, 'dir'));
  fs.chmodSync(path.join(dir, 'dir'), 0o1777);
  const f = w('dir/file', 'hello\n'.repeat(100), 0o640);
  touchNs(f, '2020-01-02 03:04:05.123456789');
  w('dir/empty', '');
  w('dir/b513', pattern(513, 1));
  fs.linkSync(f, path.join(dir, 'hard'));
  fs.symlinkSync('dir/file', path.join(dir, 'sym'));
  run('mknod', [path.join(dir, 'chr'), 'c', '1', '3']);
  run('mknod', [path.join(dir, 'blk'), 'b', '7', '200']);
  run('mkfifo', [path.join(dir, 'fifo')]);
  w('suid', pattern(100, 2), 0o4755);
  fs.chownSync(w('owned', 'o'), 1234, 5678);
  touchNs(path.join(dir, 'dir'), '2019-05-06 07:08:09.5');
  if (!extended) return;
  const long = w(LONG_FILE, pattern(777, 3));
  fs.linkSync(long, path.join(dir, 'hard-long'));
  fs.symlinkSync(LONG_TARGET, path.join(dir, 'sym-long'));
  fs.chownSync(w('id300k', 'a'), 300000, 300001);
  fs.chownSync(w('id3m', 'b'), 3000000, 3000001);
  const x = w('xattr', 'x');
  setXattr(x, 'security.capability', CAPABILITY);
  setXattr(x, 'user.bin', BINARY);
  w('ünï/ファイル', 'unicode\n');
  touchNs(w('ns-one', 'n'), '2021-03-04 05:06:07.000000001');
}

/** check every field of each entry against the file it came from */
function checkAgainstSource(t: ExecutionContext, tarFile: string, src: string, entries: ReadEntry[], opts: { ns: boolean; xattrs: boolean }): void {
  const firstName = new Map<string, string>(); // inode -> first name, as GNU tar makes hardlinks
  t.true(entries.length > 5);
  for (const e of entries) {
    const p = e.name === '.' ? src : path.join(src, e.name);
    const st = fs.lstatSync(p, { bigint: true });
    const what = `${e.name}: `;
    t.is(e.mode, Number(st.mode & 0o7777n), what + 'mode');
    t.is(e.uid, Number(st.uid), what + 'uid');
    t.is(e.gid, Number(st.gid), what + 'gid');
    t.is(e.uname, undefined, what + 'uname (numeric owners)');
    const ns = st.mtimeNs;
    t.is(e.mtime.sec, Number(ns / 1_000_000_000n), what + 'mtime sec');
    t.is(e.mtime.nsec, opts.ns ? Number(ns % 1_000_000_000n) : 0, what + 'mtime nsec');
    const inode = `${st.dev}:${st.ino}`;
    if (st.isFile() && st.nlink > 1n && firstName.has(inode)) {
      t.is(e.type, 'hardlink', what + 'type');
      t.is(e.linkname, firstName.get(inode));
      t.is(e.size, 0);
      continue;
    }
    if (st.isFile()) {
      firstName.set(inode, e.name);
      t.is(e.type, 'file', what + 'type');
      t.is(e.size, Number(st.size), what + 'size');
      t.true(storedBody(tarFile, e).equals(fs.readFileSync(p)), what + 'body at dataOffset');
    } else if (st.isDirectory()) {
      t.is(e.type, 'dir', what + 'type');
    } else if (st.isSymbolicLink()) {
      t.is(e.type, 'symlink', what + 'type');
      t.is(e.linkname, fs.readlinkSync(p), what + 'target');
    } else if (st.isCharacterDevice() || st.isBlockDevice()) {
      t.is(e.type, st.isCharacterDevice() ? 'char' : 'block', what + 'type');
      t.is(e.devmajor, major(st.rdev), what + 'devmajor');
      t.is(e.devminor, minor(st.rdev), what + 'devminor');
    } else if (st.isFIFO()) {
      t.is(e.type, 'fifo', what + 'type');
    }
    if (e.type !== 'file') t.is(e.size, 0, what + 'size');
    const want = opts.xattrs ? getXattrs(p) : new Map();
    t.deepEqual(e.xattrs ?? new Map(), want, what + 'xattrs');
  }
}

const namesOf = (entries: ReadEntry[]) => entries.map((e) => e.name).sort();

function expectedNames(src: string): string[] {
  return ['.', ...listTree(src)].sort();
}

for (const format of ['pax', 'gnu', 'ustar'] as const) {
  test(`decode GNU tar --format=${format}`, (t) => {
    const dir = tempDir(t);
    const src = path.join(dir, 'src');
    fs.mkdirSync(src);
    const extended = format !== 'ustar';
    makeSource(src, extended);
    const tarFile = path.join(dir, 'a.tar');
    const xattrs = format === 'pax' ? ['--xattrs', '--xattrs-include=*'] : [];
    gnuTar([`--format=${format}`, ...xattrs, '--numeric-owner', '--sort=name', '-cf', tarFile, '-C', src, '.']);
    const entries = readAll(tarFile);
    t.deepEqual(namesOf(entries), expectedNames(src));
    checkAgainstSource(t, tarFile, src, entries, { ns: format === 'pax', xattrs: format === 'pax' });
    if (extended) {
      const byName = new Map(entries.map((e) => [e.name, e]));
      t.is(byName.get('hard-long')?.linkname, LONG_FILE);
      t.is(byName.get('sym-long')?.linkname, LONG_TARGET);
      t.is(byName.get('id3m')?.uid, 3000000);
      t.is(byName.get('id3m')?.gid, 3000001);
      t.is(byName.get('id300k')?.uid, 300000);
      if (format === 'pax') {
        t.deepEqual(byName.get('dir/file')?.mtime, { sec: 1577934245, nsec: 123456789 });
        t.deepEqual(byName.get('ns-one')?.mtime.nsec, 1);
        t.true(byName.get('xattr')?.xattrs?.get('security.capability')?.equals(CAPABILITY));
        t.true(byName.get('xattr')?.xattrs?.get('user.bin')?.equals(BINARY));
        t.truthy(byName.get('dir/file')?.atime);
        t.truthy(byName.get('dir/file')?.ctime);
      }
    }
    // headers and bodies tile the file: each header starts where the previous body's padding ends
    let end = 0;
    for (const e of entries) {
      t.is(e.headerOffset, end, `${e.name}: headerOffset`);
      end = e.dataOffset + e.size + padding(e.size);
    }
  });
}

test('decode GNU tar owner and group names with big ids', (t) => {
  const dir = tempDir(t);
  const src = path.join(dir, 'src');
  fs.mkdirSync(src);
  fs.writeFileSync(path.join(src, 'f'), 'f');
  for (const format of ['pax', 'gnu']) {
    const tarFile = path.join(dir, `${format}.tar`);
    gnuTar([`--format=${format}`, '--owner=someone:3000000', '--group=somegroup:3000001', '-cf', tarFile, '-C', src, 'f']);
    const [e] = readAll(tarFile);
    t.like(e, { name: 'f', uid: 3000000, gid: 3000001, uname: 'someone', gname: 'somegroup' }, format);
  }
});

test('decode a negative mtime (GNU base-256 and PAX)', (t) => {
  const dir = tempDir(t);
  const f = path.join(dir, 'old');
  fs.writeFileSync(f, 'old');
  touchNs(f, '1960-01-01 00:00:00.25 UTC');
  const want = Math.floor(Number(fs.lstatSync(f, { bigint: true }).mtimeNs / 1_000_000n) / 1000);
  gnuTar(['--format=gnu', '-cf', path.join(dir, 'gnu.tar'), '-C', dir, 'old']);
  t.is(readAll(path.join(dir, 'gnu.tar'))[0].mtime.sec, want);
  gnuTar(['--format=pax', '-cf', path.join(dir, 'pax.tar'), '-C', dir, 'old']);
  t.deepEqual(readAll(path.join(dir, 'pax.tar'))[0].mtime, { sec: want, nsec: 250_000_000 });
});

/** sparse files: one ending in a hole, one ending in data, one with more segments than the GNU header holds */
function makeSparse(dir: string): string[] {
  const mk = (name: string, size: number, chunks: Array<[number, Buffer]>) => {
    const p = path.join(dir, name);
    fs.writeFileSync(p, '');
    fs.truncateSync(p, size);
    const fd = fs.openSync(p, 'r+');
    for (const [off, data] of chunks) fs.writeSync(fd, data, 0, data.length, off);
    fs.closeSync(fd);
    return name;
  };
  return [
    mk('sp-hole-end', 1 << 20, [
      [8192, pattern(4096, 1)],
      [600000, Buffer.from('tail!')],
    ]),
    mk('sp-data-end', 256 << 10, [[(256 << 10) - 100, pattern(100, 2)]]),
    mk(
      'sp-many',
      4 << 20,
      Array.from({ length: 30 }, (_, i): [number, Buffer] => [i * 131072 + 4096, pattern(4096, i)]),
    ),
  ];
}

for (const [label, args] of [
  ['gnu', ['--format=gnu', '--sparse']],
  ['pax 0.0', ['--format=pax', '--sparse', '--sparse-version=0.0']],
  ['pax 0.1', ['--format=pax', '--sparse', '--sparse-version=0.1']],
  ['pax 1.0', ['--format=pax', '--sparse', '--sparse-version=1.0']],
] as const) {
  test(`decode sparse files, ${label}`, (t) => {
    const dir = tempDir(t);
    const src = path.join(dir, 'src');
    fs.mkdirSync(src);
    const names = makeSparse(src);
    fs.writeFileSync(path.join(src, 'z-after'), 'after the sparse files\n');
    const tarFile = path.join(dir, 'sparse.tar');
    gnuTar([...args, '--sort=name', '-cf', tarFile, '-C', src, ...names, 'z-after']);
    const entries = readAll(tarFile);
    t.deepEqual(
      entries.map((e) => e.name),
      [...names, 'z-after'],
    );
    for (const e of entries.slice(0, names.length)) {
      const content = fs.readFileSync(path.join(src, e.name));
      t.truthy(e.sparse, `${e.name} is sparse`);
      t.is(e.sparse!.realSize, content.length, `${e.name}: realSize`);
      t.is(
        e.size,
        e.sparse!.map.reduce((n, s) => n + s.length, 0),
        `${e.name}: size is the stored data`,
      );
      t.true(e.size < content.length / 4, `${e.name}: holes are not stored`);
      t.true(unsparse(e, storedBody(tarFile, e)).equals(content), `${e.name}: data segments`);
    }
    t.true(entries.find((e) => e.name === 'sp-many')!.sparse!.map.length >= 30);
    const last = entries[names.length];
    t.is(storedBody(tarFile, last).toString(), 'after the sparse files\n');
  });
}

test('decode GNU volume labels and dumpdirs', (t) => {
  const dir = tempDir(t);
  const src = path.join(dir, 'src');
  fs.mkdirSync(path.join(src, 'd'), { recursive: true });
  fs.writeFileSync(path.join(src, 'd', 'f'), 'data');
  const tarFile = path.join(dir, 'inc.tar');
  gnuTar(['--format=gnu', '-V', 'my label', `--listed-incremental=${path.join(dir, 'snar')}`, '-cf', tarFile, '-C', src, 'd']);
  const entries = readAll(tarFile);
  t.deepEqual(
    entries.map((e) => [e.name, e.type, e.size]),
    [
      ['d', 'dir', 0],
      ['d/f', 'file', 4],
    ],
  );
  t.is(storedBody(tarFile, entries[1]).toString(), 'data');
});

// ---------------------------------------------------------------- encoding

const CAP_AND_BIN = () =>
  new Map([
    ['security.capability', CAPABILITY],
    ['user.bin', BINARY],
  ]);

function base(name: string, type: TarEntry['type'], extra: Partial<TarEntry> = {}): TarEntry {
  return { name, type, mode: type === 'dir' ? 0o755 : 0o644, uid: 0, gid: 0, size: 0, mtime: { sec: 1600000000, nsec: 0 }, ...extra };
}

function file(name: string, body: Buffer, extra: Partial<TarEntry> = {}): Item {
  return { entry: base(name, 'file', { size: body.length, ...extra }), body };
}

function sparseItem(name: string, realSize: number, segs: Array<[number, Buffer]>): Item & { content: Buffer } {
  const content = Buffer.alloc(realSize);
  for (const [off, data] of segs) data.copy(content, off);
  const body = Buffer.concat(segs.map(([, d]) => d));
  return {
    entry: base(name, 'file', { size: body.length, mode: 0o600, sparse: { realSize, map: segs.map(([offset, d]) => ({ offset, length: d.length })) } }),
    body,
    content,
  };
}

function encodeItems(): Array<Item & { content?: Buffer }> {
  return [
    { entry: base('d', 'dir', { mode: 0o1777, uid: 1000, gid: 1001, mtime: { sec: 1577934245, nsec: 5 } }) },
    file('d/f', pattern(1000, 1), { mode: 0o640, uid: 300000, gid: 3000000, mtime: { sec: 1577934245, nsec: 123456789 }, xattrs: CAP_AND_BIN() }),
    file('d/empty', Buffer.alloc(0), { mtime: { sec: 1, nsec: 1 } }),
    file('d/suid', pattern(513, 2), { mode: 0o4755 }),
    { entry: base(LONG_DIR.split('/')[0], 'dir') },
    { entry: base(LONG_DIR, 'dir', { mode: 0o700, mtime: { sec: 1500000000, nsec: 999999999 } }) },
    file(LONG_FILE, pattern(777, 3), { uid: 3000000, gid: 300000 }),
    { entry: base('hl-' + 'h'.repeat(120), 'hardlink', { linkname: LONG_FILE, uid: 3000000, gid: 300000 }) },
    { entry: base('hl2', 'hardlink', { linkname: 'd/f', mode: 0o640, uid: 300000, gid: 3000000 }) },
    { entry: base('sl-long', 'symlink', { mode: 0o777, linkname: LONG_TARGET, mtime: { sec: 1400000000, nsec: 42 } }) },
    { entry: base('ünï', 'dir', { uid: 7, gid: 8 }) },
    file('ünï/ファイル', Buffer.from('unicode\n'), { uname: 'ユーザー', gname: 'g'.repeat(40) }),
    { entry: base('ünï/リンク', 'symlink', { mode: 0o777, linkname: 'ターゲット' }) },
    { entry: base('dev', 'dir') },
    { entry: base('dev/null2', 'char', { mode: 0o666, devmajor: 1, devminor: 3 }) },
    { entry: base('dev/loop200', 'block', { mode: 0o660, devmajor: 7, devminor: 200, gid: 6 }) },
    { entry: base('dev/bigminor', 'char', { mode: 0o600, devmajor: 4095, devminor: 1048575 }) },
    { entry: base('dev/fifo', 'fifo', { mode: 0o620, mtime: { sec: 1600000000, nsec: 100 } }) },
    file('old', Buffer.from('before 1970\n'), { mtime: { sec: -2, nsec: 500000000 } }),
    file('names', Buffer.from('n'), { uid: 5, gid: 6, uname: 'u'.repeat(40), gname: 'grp' }),
    file('xattr-only', Buffer.from('x'), { xattrs: new Map([['user.empty-ish', Buffer.from([0xff])]]) }),
    sparseItem('sparse', 1 << 20, [
      [4096, pattern(4096, 4)],
      [512000, pattern(100, 5)],
    ]),
    sparseItem('sparse-end', 12288, [
      [0, pattern(1024, 6)],
      [12188, pattern(100, 7)],
    ]),
    sparseItem('sparse-hole', 65536, []),
    file('z-last', pattern(4097, 8)),
  ];
}

function extract(t: ExecutionContext, tarFile: string): string {
  const out = fs.mkdtempSync(path.join(path.dirname(tarFile), 'out-'));
  gnuTar(['-xpf', tarFile, '--xattrs', '--xattrs-include=*', '--numeric-owner', '-C', out]);
  t.pass();
  return out;
}

/** what GNU tar made of each item: type, mode, owner, ns mtime, rdev, nlink, bytes, xattrs */
function checkExtracted(t: ExecutionContext, out: string, items: Array<Item & { content?: Buffer }>): void {
  const links = new Map<string, number>();
  for (const { entry } of items) if (entry.type === 'hardlink') links.set(entry.linkname!, (links.get(entry.linkname!) ?? 1) + 1);
  for (const { entry: e, body, content } of items) {
    const p = path.join(out, e.name);
    const st = fs.lstatSync(p, { bigint: true });
    const what = `${e.name}: `;
    const target = e.type === 'hardlink' ? items.find((i) => i.entry.name === e.linkname)!.entry : e;
    t.is(Number(st.mode & 0o7777n), target.mode, what + 'mode');
    t.is(Number(st.uid), target.uid, what + 'uid');
    t.is(Number(st.gid), target.gid, what + 'gid');
    t.is(st.mtimeNs, BigInt(target.mtime.sec) * 1_000_000_000n + BigInt(target.mtime.nsec), what + 'mtime');
    switch (e.type) {
      case 'file':
      case 'hardlink': {
        t.true(st.isFile(), what + 'type');
        const src = items.find((i) => i.entry.name === target.name)!;
        t.true(fs.readFileSync(p).equals(src.content ?? src.body!), what + 'contents');
        t.is(Number(st.nlink), links.get(target.name) ?? 1, what + 'nlink');
        if (target.sparse) {
          t.is(Number(st.size), target.sparse.realSize, what + 'size');
          t.true(Number(st.blocks) * 512 < target.sparse.realSize || target.sparse.realSize <= 8192, what + 'holes kept');
        }
        break;
      }
      case 'dir':
        t.true(st.isDirectory(), what + 'type');
        break;
      case 'symlink':
        t.true(st.isSymbolicLink(), what + 'type');
        t.is(fs.readlinkSync(p), e.linkname!, what + 'target');
        break;
      case 'char':
      case 'block':
        t.is(e.type === 'char' ? st.isCharacterDevice() : st.isBlockDevice(), true, what + 'type');
        t.is(major(st.rdev), e.devmajor!, what + 'major');
        t.is(minor(st.rdev), e.devminor!, what + 'minor');
        break;
      case 'fifo':
        t.true(st.isFIFO(), what + 'type');
        break;
    }
    if (e.type !== 'symlink') t.deepEqual(getXattrs(p), target.xattrs ?? new Map(), what + 'xattrs');
  }
}

/** our reader gives back every field we wrote */
function checkRoundTrip(t: ExecutionContext, tarFile: string, items: Item[]): ReadEntry[] {
  const entries = readAll(tarFile);
  t.is(entries.length, items.length);
  entries.forEach((e, i) => {
    const want = items[i].entry;
    const got: Partial<ReadEntry> = { ...e };
    delete got.headerOffset;
    delete got.dataOffset;
    const expect: TarEntry = { ...want };
    if (want.type !== 'file') expect.size = 0;
    t.deepEqual(got, stripUndefined(expect), `${want.name}: fields`);
    if (want.type === 'file') {
      const stored = storedBody(tarFile, e);
      t.true(stored.equals(items[i].body ?? Buffer.alloc(0)), `${want.name}: stored bytes`);
    }
  });
  return entries;
}

function stripUndefined(e: TarEntry): TarEntry {
  const out = { ...e } as Record<string, unknown>;
  for (const k of Object.keys(out)) if (out[k] === undefined) delete out[k];
  return out as unknown as TarEntry;
}

async function checkTarStream(t: ExecutionContext, tarFile: string, items: Item[]): Promise<void> {
  const listed = await tarStreamList(tarFile);
  const want = items.map(({ entry: e }) => {
    if (e.sparse) {
      // PAX 1.0 sparse: a reader that knows no sparse files sees the stand-in name and the stored map + data
      return { name: `GNUSparseFile.0/${e.name}`, type: 'file', size: sparseMapBlock(e.sparse).length + e.size };
    }
    return { name: e.name, type: TAR_STREAM_TYPE[e.type], size: e.type === 'file' ? e.size : 0 };
  });
  t.deepEqual(
    listed.map((l) => ({ ...l, name: l.name.replace(/\/$/, '') })),
    want,
  );
}

test('encode every entry type; GNU tar extracts it exactly and tar-stream lists it', async (t) => {
  const dir = tempDir(t);
  const items = encodeItems();
  const tarFile = path.join(dir, 'ours.tar');
  writeTarFile(tarFile, items);
  checkRoundTrip(t, tarFile, items);
  checkExtracted(t, extract(t, tarFile), items);
  await checkTarStream(t, tarFile, items);
  // GNU tar lists the same names with no warnings
  const listing = gnuTar(['-tf', tarFile]).trim().split('\n');
  t.deepEqual(
    listing.map((n) => n.replace(/\/$/, '')),
    items.map((i) => i.entry.name),
  );
});

test('aligned headers: bodies start on 4096-byte boundaries and GNU tar extracts the same tree', async (t) => {
  const dir = tempDir(t);
  const items = encodeItems();
  const plain = path.join(dir, 'plain.tar');
  const aligned = path.join(dir, 'aligned.tar');
  writeTarFile(plain, items);
  writeTarFile(aligned, items, 4096);
  const entries = checkRoundTrip(t, aligned, items);
  for (const e of entries) {
    const bodyStart = e.sparse ? e.dataOffset - sparseMapBlock(e.sparse).length : e.dataOffset;
    t.is(bodyStart % 4096, 0, `${e.name}: body offset ${bodyStart}`);
  }
  const a = extract(t, plain);
  const b = extract(t, aligned);
  t.deepEqual(listTree(a), listTree(b));
  checkExtracted(t, b, items);
  await checkTarStream(t, aligned, items);
});

test('alignment at every offset and PAX size: exact multiples, self-consistent record lengths, no empty comment', (t) => {
  const dir = tempDir(t);
  const tarFile = path.join(dir, 'a.tar');
  let cases = 0;
  for (let valueLen = 0; valueLen < 1200; valueLen += 37) {
    const e = base('f', 'file', { size: 1 });
    if (valueLen > 0) e.xattrs = new Map([['user.v', Buffer.alloc(valueLen, 0x80)]]);
    for (let offset = 0; offset < 8192; offset += 512) {
      const h = encodeHeader(e, { alignTo: { offset, block: 4096 } });
      t.is((offset + h.length) % 4096, 0);
      if (h.length > 512) {
        const paxSize = parseInt(h.toString('latin1', 124, 135), 8);
        const data = h.subarray(512, 512 + paxSize);
        t.false(data.includes(Buffer.from(' comment=\n')), 'never an empty comment');
        t.true(paxSize > 0);
      }
      // our reader checks every record's length prefix
      fs.writeFileSync(tarFile, Buffer.concat([Buffer.alloc(offset), h, Buffer.from('z'), Buffer.alloc(511), END_OF_ARCHIVE]));
      const fd = fs.openSync(tarFile, 'r');
      try {
        const got = readEntry(new FileSource(fd, offset))!;
        t.is(got.dataOffset, offset + h.length);
        if (valueLen > 0) t.is(got.xattrs!.get('user.v')!.length, valueLen);
      } finally {
        fs.closeSync(fd);
      }
      cases++;
    }
  }
  t.true(cases > 400);
  t.throws(() => encodeHeader(base('f', 'file'), { alignTo: { offset: 100, block: 4096 } }), { instanceOf: TarError });
});

test('PAX record lengths across digit boundaries survive GNU tar', (t) => {
  const dir = tempDir(t);
  const items: Item[] = [];
  // " SCHILY.xattr.user.k=" + value + "\n": lengths around 9/10, 99/100 and 999/1000 bytes
  for (const n of [0, 1, 74, 75, 76, 77, 78, 973, 974, 975, 976, 977, 978]) {
    items.push(file(`x${n}`, Buffer.from('.'), { xattrs: new Map([['user.k', Buffer.alloc(n, 0xc3)]]) }));
  }
  const tarFile = path.join(dir, 'len.tar');
  writeTarFile(tarFile, items);
  checkRoundTrip(t, tarFile, items);
  const out = extract(t, tarFile);
  for (const { entry } of items) t.deepEqual(getXattrs(path.join(out, entry.name)), entry.xattrs, entry.name);
});

test('encode: a sparse map block is the PAX 1.0 lines padded to a block', (t) => {
  const b = sparseMapBlock({
    realSize: 100,
    map: [
      { offset: 0, length: 10 },
      { offset: 50, length: 5 },
    ],
  });
  t.is(b.length, 512);
  // the file ends in a hole: a zero-length segment at the real size tells GNU tar to extend it
  t.is(b.toString('latin1').replace(/\0+$/, ''), '3\n0\n10\n50\n5\n100\n0\n');
  const full = sparseMapBlock({ realSize: 610, map: [{ offset: 0, length: 512 }, { offset: 600, length: 10 }] });
  t.is(full.toString('latin1').replace(/\0+$/, ''), '2\n0\n512\n600\n10\n');
  t.throws(() => encodeHeader(base('s', 'file', { size: 20, sparse: { realSize: 100, map: [{ offset: 0, length: 10 }, { offset: 50, length: 10 }] } })), { instanceOf: TarError, message: /s: sparse segment 0\+10 is not a whole number of 512-byte blocks/ });
  t.throws(() => encodeHeader(base('s', 'file', { size: 3, sparse: { realSize: 100, map: [{ offset: 0, length: 10 }] } })), { instanceOf: TarError, message: /s: sparse map holds 10 bytes/ });
});

test('encode: ustar fields for a plain entry, PAX only when needed', (t) => {
  const h = encodeHeader(base('a/b', 'dir', { mtime: { sec: 1234, nsec: 0 }, uname: 'root', gname: 'wheel' }));
  t.is(h.length, 512);
  t.is(h.toString('latin1', 0, 5), 'a/b/\0');
  t.is(h.toString('latin1', 257, 265), 'ustar\u000000');
  t.is(h.toString('latin1', 136, 148), '00000002322\0');
  t.is(h[156], 0x35);
  const ns = encodeHeader(base('f', 'file', { mtime: { sec: 1234, nsec: 500000000 } }));
  t.is(ns.length, 1536);
  t.true(ns.toString('latin1', 512, 1024).includes(' mtime=1234.5\n'));
  const big = encodeHeader(base('f', 'file', { uid: 2097151, gid: 2097152 }));
  t.false(big.toString('latin1').includes(' uid='));
  t.true(big.toString('latin1').includes(' gid=2097152\n'));
  t.throws(() => encodeHeader(base('f', 'file', { uid: -1 })), { instanceOf: TarError, message: /f: cannot encode uid/ });
});

// ---------------------------------------------------------------- end of archive and pipes

function readBuffer(t: ExecutionContext, bytes: Buffer): ReadEntry[] {
  const dir = tempDir(t);
  const p = path.join(dir, 'x.tar');
  fs.writeFileSync(p, bytes);
  return readAll(p);
}

test('end of archive: two zero blocks, one zero block then EOF, EOF at a header boundary', (t) => {
  const one = Buffer.concat([encodeHeader(base('a', 'file', { size: 3 })), Buffer.from('abc'), Buffer.alloc(509)]);
  t.deepEqual(readBuffer(t, Buffer.concat([one, END_OF_ARCHIVE])).map((e) => e.name), ['a']);
  t.deepEqual(readBuffer(t, Buffer.concat([one, Buffer.alloc(512)])).map((e) => e.name), ['a']);
  t.deepEqual(readBuffer(t, one).map((e) => e.name), ['a']);
  t.deepEqual(readBuffer(t, Buffer.alloc(0)), []);
});

test('PipeSource: reads headers from a pipe, hashes what it reads, bodies by skip or by advance', async (t) => {
  const dir = tempDir(t);
  const items = encodeItems();
  const tarFile = path.join(dir, 'pipe.tar');
  writeTarFile(tarFile, items);
  const whole = fs.readFileSync(tarFile);
  const viaPipe = async (consume: (fd: number, src: PipeSource, e: ReadEntry) => void) => {
    const fifo = path.join(dir, `fifo-${Math.random()}`);
    run('mkfifo', [fifo]);
    const child = spawn('sh', ['-c', 'cat "$0" > "$1"', tarFile, fifo], { stdio: 'ignore' });
    const exited = new Promise((resolve) => child.on('exit', resolve));
    const fd = fs.openSync(fifo, 'r');
    const hash = createHash('sha256');
    const src = new PipeSource(fd, { onBytes: (b) => hash.update(b) });
    const entries: ReadEntry[] = [];
    try {
      for (let e = readEntry(src); e; e = readEntry(src)) {
        entries.push(e);
        consume(fd, src, e);
      }
    } finally {
      fs.closeSync(fd);
    }
    await exited;
    return { entries, position: src.position, hash: hash.digest('hex') };
  };
  const skipped = await viaPipe((_fd, src, e) => src.skip(e.size + padding(e.size)));
  t.is(skipped.position, whole.length);
  t.is(skipped.hash, createHash('sha256').update(whole).digest('hex'), 'onBytes saw every byte');
  t.deepEqual(
    skipped.entries.map((e) => [e.name, e.headerOffset, e.dataOffset]),
    readAll(tarFile).map((e) => [e.name, e.headerOffset, e.dataOffset]),
  );
  // a body taken from the fd by someone else (as a native splice would) is reported by advance()
  const bodies = new Map<string, Buffer>();
  const advanced = await viaPipe((fd, src, e) => {
    const b = Buffer.alloc(e.size);
    let got = 0;
    while (got < e.size) got += fs.readSync(fd, b, got, e.size - got, null);
    bodies.set(e.name, b);
    src.advance(e.size);
    src.skip(padding(e.size));
  });
  t.is(advanced.position, whole.length);
  for (const { entry, body } of items) if (entry.type === 'file') t.true(bodies.get(entry.name)!.equals(body ?? Buffer.alloc(0)), entry.name);
});

test('PAX global headers apply to nothing, as in Go (the peer); an empty entry record means the header field', (t) => {
  const g = paxBlocks([
    ['uname', 'globaluser'],
    ['uid', '1000'],
    ['SCHILY.xattr.security.capability', CAPABILITY],
  ], 'g');
  const a = encodeHeader(base('a', 'file', { uname: 'ustaruser', uid: 7 }));
  const b = Buffer.concat([paxBlocks([['uname', '']]), encodeHeader(base('b', 'file', { uname: 'headeruser' }))]);
  const c = Buffer.concat([paxBlocks([['uname', 'own'], ['LIBARCHIVE.xattr.user.%C3%A9t%C3%A9', Buffer.from('AAH/').toString('base64')], ['vendor.key', 'v']]), encodeHeader(base('c', 'file'))]);
  const entries = readBuffer(t, Buffer.concat([g, a, b, c, END_OF_ARCHIVE]));
  t.deepEqual(
    entries.map((e) => [e.name, e.uname, e.uid]),
    [
      ['a', 'ustaruser', 7],
      ['b', 'headeruser', 0],
      ['c', 'own', 0],
    ],
  );
  t.is(entries[0].headerOffset, g.length, 'the global header is not part of the next entry');
  t.is(entries[0].xattrs, undefined, 'no capability from a global header');
  t.deepEqual(entries[2].xattrs?.get('user.été'), Buffer.from('AAH/'));
  t.deepEqual(entries[2].pax, { 'vendor.key': 'v' });
});

test('checksums: the signed sum of old tars is accepted', (t) => {
  const h = encodeHeader(base('n', 'file'));
  h.write('né', 0, 'utf8'); // a byte >= 0x80 makes the two sums differ
  h.fill(0x20, 148, 156);
  let signed = 0;
  for (const c of h) signed += c > 127 ? c - 256 : c;
  h.write(signed.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'latin1');
  t.deepEqual(readBuffer(t, Buffer.concat([h, END_OF_ARCHIVE])).map((e) => e.name), ['né']);
});

// ---------------------------------------------------------------- hostile input

function expectError(t: ExecutionContext, bytes: Buffer, code: TarError['code'], names: string | RegExp): TarError {
  const err = t.throws(() => readBuffer(t, bytes), { instanceOf: TarError }) as TarError;
  t.is(err.code, code, err.message);
  if (typeof names === 'string') t.true(err.message.includes(names), `message names the entry: ${err.message}`);
  else t.regex(err.message, names);
  return err;
}

function withName(name: string, type: TarEntry['type'] = 'file', extra: Partial<TarEntry> = {}): Buffer {
  const h = encodeHeader(base('placeholder', type, extra));
  h.fill(0, 0, 100);
  h.write(name, 0, 100, 'utf8');
  return fixChecksum(h);
}

for (const bad of ['../x', '/abs', 'a/../../x', './../x']) {
  test(`hostile name ${bad} is refused`, (t) => {
    const err = expectError(t, Buffer.concat([withName(bad), END_OF_ARCHIVE]), 'ETARPATH', bad);
    t.is(err.entry, bad);
  });
}

test('hostile: NUL byte in a PAX path', (t) => {
  const err = expectError(t, Buffer.concat([paxBlocks([['path', 'a\0b']]), encodeHeader(base('a', 'file')), END_OF_ARCHIVE]), 'ETARPATH', 'a\\u0000b');
  t.is(err.entry, 'a\0b');
});

test('hostile: a long PAX path that climbs out', (t) => {
  const name = 'x/'.repeat(100) + '../'.repeat(101) + 'etc/passwd';
  expectError(t, Buffer.concat([paxBlocks([['path', name]]), encodeHeader(base('a', 'file')), END_OF_ARCHIVE]), 'ETARPATH', name);
});

test('hostile: hardlink target ../../etc/passwd', (t) => {
  const h = encodeHeader(base('evil', 'hardlink', { linkname: '../../etc/passwd' }));
  const err = expectError(t, Buffer.concat([h, END_OF_ARCHIVE]), 'ETARPATH', 'evil: hardlink target "../../etc/passwd"');
  t.is(err.entry, 'evil');
});

test('hostile: a symlink target is data, kept verbatim', (t) => {
  const [e] = readBuffer(t, Buffer.concat([encodeHeader(base('s', 'symlink', { linkname: '../../etc/passwd' })), END_OF_ARCHIVE]));
  t.is(e.linkname, '../../etc/passwd');
});

test('hostile: bad checksum', (t) => {
  const h = encodeHeader(base('victim', 'file'));
  h[0] ^= 1; // 'w'
  const err = expectError(t, Buffer.concat([h, END_OF_ARCHIVE]), 'ETARFORMAT', 'wictim');
  t.regex(err.message, /checksum/);
});

test('hostile: truncated header', (t) => {
  const h = encodeHeader(base('cut-short', 'file'));
  expectError(t, h.subarray(0, 300), 'ETARTRUNCATED', 'cut-short');
  // cut inside a PAX header's data
  const p = paxBlocks([['path', 'pax-named']], 'x', 'PaxHeaders/pax-named');
  expectError(t, p.subarray(0, 520), 'ETARTRUNCATED', 'pax-named');
  // an extension header and then nothing
  expectError(t, p, 'ETARTRUNCATED', /byte 0/);
});

test('hostile: truncated body (header says more than the file holds)', (t) => {
  const h = encodeHeader(base('big-liar', 'file', { size: 10000 }));
  const err = expectError(t, Buffer.concat([h, Buffer.alloc(1000)]), 'ETARTRUNCATED', 'big-liar: unexpected EOF: the header says 10000 bytes but only 1000 remain');
  t.is(err.entry, 'big-liar');
});

test('hostile: PAX header claiming 2 GB', (t) => {
  const h = encodeHeader(base('PaxHeaders/victim', 'file', { size: 2 ** 31 }));
  h[156] = 0x78;
  fixChecksum(h);
  const err = expectError(t, Buffer.concat([h, Buffer.alloc(4096)]), 'ETARTOOBIG', 'victim');
  t.is(err.offset, 0);
});

test('hostile: extension headers of one entry add up past the limit', (t) => {
  const chunk = paxBlocks([['vendor.a', 'v'.repeat(700 << 10)]]);
  // a GNU long name after the PAX header: two kinds, their sizes add up
  const chunk2Header = encodeHeader(base('second', 'file', { size: 700 << 10 }));
  chunk2Header[156] = 0x4c;
  fixChecksum(chunk2Header);
  const chunk2 = Buffer.concat([chunk2Header, Buffer.alloc(700 << 10, 0x76)]);
  expectError(t, Buffer.concat([chunk, chunk2, encodeHeader(base('a', 'file')), END_OF_ARCHIVE]), 'ETARTOOBIG', 'second');
  const longName = encodeHeader(base('././@LongLink', 'file', { size: (1 << 20) + 1 }));
  longName[156] = 0x4c;
  fixChecksum(longName);
  expectError(t, Buffer.concat([longName, Buffer.alloc(4096)]), 'ETARTOOBIG', '@LongLink');
});

test('hostile: size field with garbage', (t) => {
  const h = encodeHeader(base('garbage-size', 'file', { size: 1 }));
  h.write('12x45678901\0', 124, 12, 'latin1');
  fixChecksum(h);
  expectError(t, Buffer.concat([h, Buffer.alloc(512), END_OF_ARCHIVE]), 'ETARFORMAT', 'garbage-size');
  const neg = encodeHeader(base('negative-size', 'file'));
  neg.fill(0xff, 124, 136);
  fixChecksum(neg);
  expectError(t, Buffer.concat([neg, END_OF_ARCHIVE]), 'ETARFORMAT', 'negative-size');
  const pax = Buffer.concat([paxBlocks([['size', '1e3']]), encodeHeader(base('pax-size', 'file')), END_OF_ARCHIVE]);
  expectError(t, pax, 'ETARFORMAT', 'pax-size: size is not a valid number ("1e3")');
  const mtime = Buffer.concat([paxBlocks([['mtime', '12.x']]), encodeHeader(base('pax-mtime', 'file')), END_OF_ARCHIVE]);
  expectError(t, mtime, 'ETARFORMAT', 'pax-mtime: PAX mtime is not a time');
});

test('hostile: malformed PAX records', (t) => {
  for (const data of ['5 a=b\n', '99 path=x\n', 'x path=y\n', '10 pathxy\n']) {
    const h = encodeHeader(base('PaxHeaders/bad-records', 'file', { size: data.length }));
    h[156] = 0x78;
    fixChecksum(h);
    const bytes = Buffer.concat([h, Buffer.from(data), Buffer.alloc(padding(data.length)), encodeHeader(base('a', 'file')), END_OF_ARCHIVE]);
    expectError(t, bytes, 'ETARFORMAT', 'bad-records');
  }
});

test('hostile: unsupported entry type', (t) => {
  const h = encodeHeader(base('multivolume', 'file'));
  h[156] = 0x4d; // 'M'
  fixChecksum(h);
  expectError(t, Buffer.concat([h, END_OF_ARCHIVE]), 'ETARFORMAT', 'multivolume: unsupported entry type "M"');
});

test('hostile: sparse maps that overlap, go backwards or pass the real size', (t) => {
  const cases: Array<[string, string]> = [
    ['overlap', '0,10,5,10'],
    ['backwards', '100,10,0,10'],
    ['past-end', '95,10'],
  ];
  for (const [name, map] of cases) {
    const stored = map.split(',').reduce((n, v, i) => (i % 2 ? n + Number(v) : n), 0);
    const bytes = Buffer.concat([
      paxBlocks([
        ['GNU.sparse.size', '100'],
        ['GNU.sparse.map', map],
      ]),
      encodeHeader(base(name, 'file', { size: stored })),
      Buffer.alloc(512),
      END_OF_ARCHIVE,
    ]);
    expectError(t, bytes, 'ETARFORMAT', `${name}: sparse map segment`);
  }
  // PAX 1.0 whose in-body map does not match the stored data
  const h = Buffer.concat([
    paxBlocks([
      ['GNU.sparse.major', '1'],
      ['GNU.sparse.minor', '0'],
      ['GNU.sparse.name', 'sp10'],
      ['GNU.sparse.realsize', '50'],
    ]),
    encodeHeader(base('GNUSparseFile.0/sp10', 'file', { size: 1024 })),
    sparseMapBlock({ realSize: 50, map: [{ offset: 40, length: 20 }] }),
    Buffer.alloc(512),
    END_OF_ARCHIVE,
  ]);
  expectError(t, h, 'ETARFORMAT', 'sp10: sparse map segment 40+20');
});
