// Never a third tree (docs/tar-engine.md, "One tree"): for tars that Go's archive/tar (the peer,
// containers-storage) and other readers would read differently, we either build exactly the tree
// the peer builds or refuse the tar naming the entry and the ambiguity. And numbers that would
// wrap, NULs that would cut a value, control characters that would reach a terminal are refused
// or escaped. One regression case per finding of the hostile-input review (issue 14).
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { native } from '../../lib/native.ts';
import { TarError } from '../../lib/tar/errors.ts';
import { END_OF_ARCHIVE, encodeHeader, padding } from '../../lib/tar/header.ts';
import type { TarEntry } from '../../lib/tar/types.ts';
import { tempDir } from '../fixtures/fs.ts';
import { tempStore } from '../fixtures/store.ts';
import { bothTrees, fixChecksum, gnuTar, paxBlocks, readAll, writeTarFile } from './gnutar.ts';

const CAPABILITY = Buffer.from('0100000200200000000000000000000000000000', 'hex');
const ZERO = Buffer.alloc(512);

function base(name: string, type: TarEntry['type'], extra: Partial<TarEntry> = {}): TarEntry {
  return { name, type, mode: type === 'dir' ? 0o755 : 0o644, uid: 0, gid: 0, size: 0, mtime: { sec: 1600000000, nsec: 0 }, ...extra };
}

function fileEntry(name: string, body: string, extra: Partial<TarEntry> = {}): Buffer {
  const b = Buffer.from(body);
  return Buffer.concat([encodeHeader(base(name, 'file', { size: b.length, ...extra })), b, Buffer.alloc(padding(b.length))]);
}

/** a header whose size field says `size` whatever its type (encodeHeader writes 0 for links) */
function withSize(header: Buffer, size: number): Buffer {
  const h = Buffer.from(header);
  h.write(size.toString(8).padStart(11, '0') + '\0', 124, 12, 'latin1');
  return fixChecksum(h);
}

/** a GNU 'L' (long name) or 'K' (long link) header with its data */
function gnuLong(type: 'L' | 'K', value: string): Buffer {
  const data = Buffer.from(value + '\0');
  const h = encodeHeader(base('././@LongLink', 'file', { size: data.length }));
  h[156] = type.charCodeAt(0);
  return Buffer.concat([fixChecksum(h), data, Buffer.alloc(padding(data.length))]);
}

function refused(t: import('ava').ExecutionContext, bytes: Buffer, message: RegExp): TarError {
  const p = path.join(tempDir(t), 'x.tar');
  fs.writeFileSync(p, bytes);
  const err = t.throws(() => readAll(p), { instanceOf: TarError }) as TarError;
  t.regex(err.message, message);
  return err;
}

test('a symlink, hardlink, device, fifo or directory with a body is refused: Go would read the body as the next header', (t) => {
  // the smuggling case: the "body" of a symlink is a header of a setuid file
  const hidden = encodeHeader(base('bin/evil', 'file', { mode: 0o4755 }));
  const link = withSize(encodeHeader(base('harmless', 'symlink', { linkname: 'x' })), 512);
  const err = refused(t, Buffer.concat([link, hidden, END_OF_ARCHIVE]), /invalid tar header: harmless: a symlink entry with a body of 512 bytes/);
  t.is(err.code, 'ETARFORMAT');
  t.is(err.entry, 'harmless');
  for (const type of ['hardlink', 'char', 'fifo', 'dir'] as const) {
    const h = withSize(encodeHeader(base(`e-${type}`, type, { linkname: type === 'hardlink' ? 'harmless' : undefined })), 1024);
    refused(t, Buffer.concat([h, ZERO, ZERO, END_OF_ARCHIVE]), new RegExp(`e-${type}: a ${type} entry with a body of 1024 bytes`));
  }
});

test('a lone zero block followed by more entries is an invalid tar, not its end (Go refuses it too)', (t) => {
  const bytes = Buffer.concat([fileEntry('a', 'a\n'), ZERO, fileEntry('b', 'b\n'), END_OF_ARCHIVE]);
  refused(t, bytes, /invalid tar header: a single zero block at byte 1024 is followed by more data at byte 1536/);
  // one zero block at the very end is a complete tar, as for Go
  const p = path.join(tempDir(t), 'one-zero.tar');
  fs.writeFileSync(p, Buffer.concat([fileEntry('a', 'a\n'), ZERO]));
  t.deepEqual(readAll(p).map((e) => e.name), ['a']);
});

test('two extension headers of one kind for one entry, or one before a global header, are refused', (t) => {
  const file = fileEntry('real', 'x\n');
  refused(t, Buffer.concat([paxBlocks([['path', 'one']]), paxBlocks([['path', 'two']]), file, END_OF_ARCHIVE]), /PAX header at byte 1024 follows the extension header at byte 0 of the same entry/);
  refused(t, Buffer.concat([gnuLong('L', 'one'), gnuLong('L', 'two'), file, END_OF_ARCHIVE]), /GNU long name header at byte 1024 follows/);
  refused(t, Buffer.concat([gnuLong('K', 'one'), gnuLong('K', 'two'), file, END_OF_ARCHIVE]), /GNU long link name header at byte 1024 follows/);
  // Go drops an 'x' that a 'g' follows; others apply it to the next entry
  refused(t, Buffer.concat([paxBlocks([['path', 'evil']]), paxBlocks([['comment', 'c']], 'g'), file, END_OF_ARCHIVE]), /PAX global header at byte 1024 follows the extension header at byte 0/);
  // a PAX path and a GNU long name that disagree: Go takes the long name, GNU tar the path
  refused(t, Buffer.concat([gnuLong('L', 'from-gnu'), paxBlocks([['path', 'from-pax']]), file, END_OF_ARCHIVE]), /from-pax: its PAX path and its GNU long name "from-gnu" differ/);
  // the same name twice is no ambiguity
  const p = path.join(tempDir(t), 'same.tar');
  fs.writeFileSync(p, Buffer.concat([gnuLong('L', 'same'), paxBlocks([['path', 'same']]), file, END_OF_ARCHIVE]));
  t.deepEqual(readAll(p).map((e) => e.name), ['same']);
});

test('device numbers, uids and gids out of range are refused, not wrapped', (t) => {
  const dev = (major: string, minor: string) => Buffer.concat([paxBlocks([['SCHILY.devmajor', major], ['SCHILY.devminor', minor]]), encodeHeader(base('dev', 'char', { devmajor: 1, devminor: 1 })), END_OF_ARCHIVE]);
  refused(t, dev(String(2 ** 32 + 1), '1'), /dev: device 4294967297:1 is out of range/);
  refused(t, dev('1', String(2 ** 20)), /dev: device 1:1048576 is out of range/);
  const p = path.join(tempDir(t), 'dev.tar');
  fs.writeFileSync(p, Buffer.concat([paxBlocks([['SCHILY.devmajor', '4095'], ['SCHILY.devminor', String(2 ** 20 - 1)]]), encodeHeader(base('dev', 'char', { devmajor: 4095, devminor: 2 ** 20 - 1 })), END_OF_ARCHIVE]));
  t.like(readAll(p)[0], { devmajor: 4095, devminor: 2 ** 20 - 1 });
  // Go's reader and GNU tar take the header's device, not SCHILY.devmajor/devminor: when they
  // differ, refused (found by the differential fuzzer, seed 3907881921: a char 0:0 became 4095:0)
  refused(t, dev('4095', '1'), /dev: its PAX SCHILY\.devmajor 4095 and its header's 1 differ/);
  refused(t, dev('1', '7'), /dev: its PAX SCHILY\.devminor 7 and its header's 1 differ/);
  for (const key of ['uid', 'gid'] as const) {
    const bytes = Buffer.concat([paxBlocks([[key, String(2 ** 32)]]), fileEntry('f', 'x'), END_OF_ARCHIVE]);
    refused(t, bytes, new RegExp(`f: ${key} 4294967296 is out of range`));
    refused(t, Buffer.concat([paxBlocks([[key, String(2 ** 32 - 1)]]), fileEntry('f', 'x'), END_OF_ARCHIVE]), new RegExp(`${key} 4294967295 is out of range`));
  }
});

test('a NUL inside a PAX path, linkpath or xattr key is refused, not cut at', (t) => {
  refused(t, Buffer.concat([paxBlocks([['linkpath', Buffer.from('/etc\0/shadow')]]), encodeHeader(base('l', 'symlink', { linkname: 'x' })), END_OF_ARCHIVE]), /NUL byte in PAX linkpath/);
  refused(t, Buffer.concat([paxBlocks([['path', Buffer.from('a\0b')]]), fileEntry('f', 'x'), END_OF_ARCHIVE]), /"a\\u0000b": NUL byte in name/);
  refused(t, Buffer.concat([paxBlocks([['SCHILY.xattr.user.a\0security.capability', 'v']]), fileEntry('f', 'x'), END_OF_ARCHIVE]), /NUL byte in PAX key/);
});

test('a PAX global header sets no owner or capability: the same tree as the peer builds', async (t) => {
  const s = tempStore(t);
  const g = paxBlocks([['uid', '0'], ['SCHILY.xattr.security.capability', CAPABILITY]], 'g');
  const tar = path.join(s.dir, 'g.tar');
  fs.writeFileSync(tar, Buffer.concat([g, fileEntry('tool', '#!/bin/sh\n', { uid: 1000, gid: 1000, mode: 0o755 }), END_OF_ARCHIVE]));
  const ours = await s.cli(['import-layer', '-f', tar]);
  t.is(ours.code, 0, ours.stderr);
  const peer = s.peer(['import-layer', '-f', tar]);
  t.is(peer.code, 0, peer.stderr);
  for (const id of [ours.stdout.split('\n')[0], peer.stdout.split('\n')[0]]) {
    const f = path.join(s.root, 'vfs', 'dir', id, 'tool');
    const st = fs.statSync(f);
    t.is(st.uid, 1000, id);
    t.is(st.gid, 1000, id);
    t.is(native().lgetxattr(f, 'security.capability'), undefined, `${id}: no capability`);
  }
});

test('a garbage tar with terminal escapes in its name: the error line escapes them', async (t) => {
  const s = tempStore(t);
  const h = encodeHeader(base('x', 'file'));
  h.write('\x1b]0;pwned\x07\x1b[31mred\n', 0, 'latin1');
  h.write('        ', 148, 'latin1'); // a bad checksum: garbage
  const tar = path.join(s.dir, 'garbage.tar');
  fs.writeFileSync(tar, Buffer.concat([h, END_OF_ARCHIVE]));
  const r = await s.cli(['import-layer', '-f', tar]);
  t.is(r.code, 1);
  t.false(/[\x00-\x08\x0b-\x1f\x7f]/.test(r.stderr), JSON.stringify(r.stderr));
  t.regex(r.stderr, /\\x1b\]0;pwned\\x07\\x1b\[31mred\\x0a/);
  t.is(r.stderr.split('\n').length, 2, 'one line');
});

test('a sparse entry larger than the layer filesystem is refused before anything is written', async (t) => {
  const s = tempStore(t);
  const data = Buffer.from('tiny data\n');
  const tar = path.join(s.dir, 'bomb.tar');
  const entry = base('disk.img', 'file', { size: data.length, sparse: { realSize: 2 ** 50, map: [{ offset: 2 ** 50 - data.length, length: data.length }] } });
  writeTarFile(tar, [{ entry, body: data }]);
  t.true(fs.statSync(tar).size < 8192, 'a few KB of tar');
  const r = await s.cli(['import-layer', '-f', tar]);
  t.is(r.code, 1);
  t.regex(r.stderr, /disk\.img: a sparse file of 1125899906842624 bytes, larger than the filesystem of the layer \(\d+ bytes\)/);
  t.is((await s.cli(['layers', '-q'])).stdout, '', 'no layer left');
});

test('PAX sparse records without a map, or with two real sizes, are refused (found by the differential fuzzer)', (t) => {
  // seed 2450293863: Go's reader needs a map to call an entry sparse and extracted an empty file;
  // GNU tar and we read a 10000-byte hole
  const entry = (records: Array<[string, string]>) => Buffer.concat([paxBlocks(records), encodeHeader(base('f', 'file')), END_OF_ARCHIVE]);
  refused(t, entry([['GNU.sparse.realsize', '10000'], ['GNU.sparse.numblocks', '0'], ['GNU.sparse.size', '10000']]), /f: PAX sparse records without a map .* readers disagree on whether it is sparse/);
  // Go takes GNU.sparse.size first, GNU tar GNU.sparse.realsize
  refused(t, entry([['GNU.sparse.realsize', '100'], ['GNU.sparse.size', '200'], ['GNU.sparse.map', '100,0']]), /f: GNU\.sparse\.realsize 100 and GNU\.sparse\.size 200 differ/);
  // a 0.1 map that ends in a hole reads as before
  const p = path.join(tempDir(t), 'ok.tar');
  fs.writeFileSync(p, entry([['GNU.sparse.realsize', '100'], ['GNU.sparse.size', '100'], ['GNU.sparse.map', '100,0']]));
  t.like(readAll(p)[0].sparse, { realSize: 100 });
});

test('a V7 header (no ustar or GNU magic) has no device fields: 0:0, as Go and GNU tar read it (found by the differential fuzzer)', (t) => {
  // seed 1883606504: a char device whose magic was zeroed; its device fields said 4095:1048575
  const h = encodeHeader(base('e', 'char', { devmajor: 4095, devminor: 2 ** 20 - 1 }));
  h.fill(0, 257, 265);
  const p = path.join(tempDir(t), 'v7.tar');
  fs.writeFileSync(p, Buffer.concat([fixChecksum(h), END_OF_ARCHIVE]));
  t.like(readAll(p)[0], { name: 'e', type: 'char', devmajor: 0, devminor: 0 });
  t.regex(gnuTar(['--numeric-owner', '-tvf', p]), /^c[-rwx]{9} 0\/0 +0,0 /);
});

test("a hardlink's mode and mtime reach the linked inode only where the peer's lstat of the target as written succeeds (K9, found by the differential fuzzer)", async (t) => {
  // seed 1114085508 ('a/../b' with 'a' a device) and K9 ('c/' on a file): the peer's
  // os.Lstat(linkname) in its chroot fails with ENOTDIR, so it sets neither; 'd/../e' resolves
  const s = tempStore(t);
  const later = { mtime: { sec: 1700000000, nsec: 0 }, mode: 0o600 };
  const tar = path.join(s.dir, 'links.tar');
  fs.writeFileSync(
    tar,
    Buffer.concat([
      fileEntry('a', 'not a directory'),
      fileEntry('b', 'b'),
      fileEntry('c', 'c'),
      encodeHeader(base('d', 'dir')),
      fileEntry('e', 'e'),
      encodeHeader(base('l1', 'hardlink', { linkname: 'a/../b', ...later })),
      encodeHeader(base('l2', 'hardlink', { linkname: 'c/', ...later })),
      encodeHeader(base('l3', 'hardlink', { linkname: 'd/../e', ...later })),
      END_OF_ARCHIVE,
    ]),
  );
  const ours = await s.cli(['import-layer', '-f', tar]);
  t.is(ours.code, 0, ours.stderr);
  const peer = s.peer(['import-layer', '-f', tar]);
  t.is(peer.code, 0, peer.stderr);
  for (const id of [ours.stdout.split('\n')[0], peer.stdout.split('\n')[0]]) {
    const st = (n: string) => fs.lstatSync(path.join(s.root, 'vfs', 'dir', id, n));
    for (const n of ['b', 'c']) t.like({ mode: st(n).mode & 0o7777, mtime: st(n).mtimeMs / 1000, nlink: st(n).nlink }, { mode: 0o644, mtime: 1600000000, nlink: 2 }, `${id}: ${n}`);
    t.like({ mode: st('e').mode & 0o7777, mtime: st('e').mtimeMs / 1000, nlink: st('e').nlink }, { mode: 0o600, mtime: 1700000000, nlink: 2 }, `${id}: e`);
  }
});


test("missing parents made after a tar's '.' changed the root's owner are owned as the root was (seeds 410461064, 424449953)", async (t) => {
  const dirs = await bothTrees(t, Buffer.concat([encodeHeader(base('.', 'dir', { uid: 65535, gid: 1000, mode: 0o750 })), fileEntry('made/by/parents', 'x')]));
  for (const d of dirs) {
    t.like(fs.statSync(d), { uid: 65535, gid: 1000 }, `${d}: the root as the tar says`);
    for (const p of ['made', 'made/by']) t.like(fs.statSync(path.join(d, p)), { uid: 0, gid: 0 }, `${d}: ${p}`);
  }
});

test("names under a top-level '.wh..wh.*' (AUFS's hardlink dir) are skipped once their parents are made; deeper down one is a whiteout (seed 2799712491)", async (t) => {
  const dirs = await bothTrees(
    t,
    Buffer.concat([fileEntry('.wh..wh.plnk/x', 'aufs'), encodeHeader(base('.wh..wh.meta', 'dir')), fileEntry('a/.wh.x', 'kept?'), fileEntry('a/.wh..wh.x', '')]),
  );
  for (const d of dirs) {
    t.deepEqual(fs.readdirSync(d).sort(), ['.wh..wh.plnk', 'a'], d);
    t.deepEqual(fs.readdirSync(path.join(d, '.wh..wh.plnk')), [], `${d}: made as a parent, x skipped`);
    t.deepEqual(fs.readdirSync(path.join(d, 'a')), [], `${d}: a/.wh..wh.x removed a/.wh.x`);
  }
});

test('a volume label named as a whiteout is refused: the peer applies it as one (seed 2216113716)', async (t) => {
  const s = tempStore(t);
  const label = fixChecksum(Buffer.from(encodeHeader(base('a/.wh..wh..opq', 'file'))).fill(0x56, 156, 157));
  const tar = path.join(s.dir, 'v.tar');
  fs.writeFileSync(tar, Buffer.concat([fileEntry('a/kept', 'x'), label, END_OF_ARCHIVE]));
  const r = await s.cli(['import-layer', '-f', tar]);
  t.is(r.code, 1);
  t.regex(r.stderr, /a\/\.wh\.\.wh\.\.opq: a volume label or PAX global header named as a whiteout/);
  t.deepEqual(s.records(), []);
});

test('a PAX global header named like a path removes what is there, as the peer does (its own path record naming it), and names the layer root only to be refused (seeds 3973979510, 1735709091)', async (t) => {
  const dirs = await bothTrees(t, Buffer.concat([fileEntry('a/c', 'x'), fileEntry('b', 'kept'), paxBlocks([['comment', 'c']], 'g', 'a')]));
  for (const d of dirs) t.deepEqual(fs.readdirSync(d).sort(), ['b'], d);
  // its own `path` record is its name as Go reads it (seed 1735709091)
  const byPath = await bothTrees(t, Buffer.concat([fileEntry('a/c', 'x'), fileEntry('b', 'kept'), paxBlocks([['path', 'a']], 'g', 'PaxHeaders.0/other')]));
  for (const d of byPath) t.deepEqual(fs.readdirSync(d).sort(), ['b'], d);
  const s = tempStore(t);
  const tar = path.join(s.dir, 'root.tar');
  fs.writeFileSync(tar, Buffer.concat([fileEntry('b', 'x'), paxBlocks([['comment', 'c']], 'g', './'), END_OF_ARCHIVE]));
  const r = await s.cli(['import-layer', '-f', tar]);
  t.is(r.code, 1);
  t.regex(r.stderr, /PAX global header named as the layer root/);
  t.deepEqual(s.records(), []);
});

test("a hardlink entry with the linked inode's own owner keeps its security.capability (the peer's SafeLchown; seed 2304436510)", async (t) => {
  await bothTrees(
    t,
    Buffer.concat([
      fileEntry('tool', '#!/bin/sh\n', { mode: 0o755, xattrs: new Map([['security.capability', CAPABILITY]]) }),
      encodeHeader(base('again', 'hardlink', { linkname: 'tool', mode: 0o2755 })),
    ]),
  ).then((dirs) => {
    for (const d of dirs) t.deepEqual(native().lgetxattr(path.join(d, 'tool'), 'security.capability'), CAPABILITY, d);
  });
});

test("a hardlink to a symlink named as a directory ('a/') is refused: the peer would chmod what the symlink points to (seed 2081642962)", async (t) => {
  const s = tempStore(t);
  const tar = path.join(s.dir, 'l.tar');
  fs.writeFileSync(tar, Buffer.concat([encodeHeader(base('a', 'symlink', { linkname: '..' })), encodeHeader(base('l', 'hardlink', { linkname: 'a/', mode: 0o644 })), END_OF_ARCHIVE]));
  const r = await s.cli(['import-layer', '-f', tar]);
  t.is(r.code, 1);
  t.regex(r.stderr, /l: .*ETARFORMAT: a hardlink to a symlink named as a directory \('a\/'\)/);
  t.deepEqual(s.records(), []);
});
