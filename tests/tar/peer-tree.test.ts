// The known disagreements with the peer that the differential fuzzer found (docs/tar-engine.md,
// "Differential fuzzing", K2-K8): each tar here is imported by `layers` and by the peer
// (containers-storage) on vfs, and the two layer trees must be the same (names, types, modes,
// owners, contents, xattrs, hardlink groups, mtimes of all but directories).
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { END_OF_ARCHIVE, encodeHeader, padding } from '../../lib/tar/header.ts';
import type { TarEntry } from '../../lib/tar/types.ts';
import { tempStore } from '../fixtures/store.ts';
import { bothTrees, paxBlocks } from './gnutar.ts';

function entry(name: string, type: TarEntry['type'], extra: Partial<TarEntry> = {}, body = ''): Buffer {
  const b = Buffer.from(body);
  const e: TarEntry = { name, type, mode: type === 'dir' ? 0o755 : 0o644, uid: 0, gid: 0, size: b.length, mtime: { sec: 1600000000, nsec: 0 }, ...extra };
  return Buffer.concat([encodeHeader(e), b, Buffer.alloc(padding(b.length))]);
}

async function sameTree(t: import('ava').ExecutionContext, tar: Buffer): Promise<void> {
  await bothTrees(t, tar);
}

test("K2: the tar's '.' sets the layer root's mode, owner and xattrs, and a setgid root passes its group on", async (t) => {
  await sameTree(
    t,
    Buffer.concat([
      entry('.', 'dir', { mode: 0o2775, uid: 1000, gid: 1001, xattrs: new Map([['user.root', Buffer.from('yes')]]) }),
      entry('sub', 'dir', { mode: 0o755 }),
      entry('sub/f', 'file', {}, 'hello'),
    ]),
  );
});

test('K3: a whiteout or an opaque marker makes its missing parent directories (0755)', async (t) => {
  await sameTree(t, Buffer.concat([entry('gone/deep/.wh.x', 'file'), entry('top/.wh..wh..opq', 'file'), entry('f', 'file', {}, 'x')]));
});

test('K7: an opaque marker after entries of its directory removes what the tar made only as parents, with its contents', async (t) => {
  await sameTree(
    t,
    Buffer.concat([entry('d/x', 'dir'), entry('d/x/y/f', 'file', {}, 'gone'), entry('d/x/kept', 'file', {}, 'kept'), entry('d/g', 'file', {}, 'g'), entry('d/.wh..wh..opq', 'file')]),
  );
});

test("K8: a PAX global header's name makes its parent directories (GNU tar's /tmp/GlobalHead.%p.%n)", async (t) => {
  await sameTree(t, Buffer.concat([paxBlocks([['comment', 'x']], 'g', '/tmp/GlobalHead.1.1'), entry('f', 'file', {}, 'x')]));
});

test("K4: a hardlink entry's owner, mode, xattrs and mtime are set on the linked inode", async (t) => {
  await sameTree(
    t,
    Buffer.concat([
      entry('f', 'file', { mode: 0o4755, uid: 5, gid: 6 }, 'body'),
      entry('h', 'hardlink', { linkname: 'f', mode: 0o600, uid: 1000, gid: 1000, mtime: { sec: 1234567890, nsec: 0 }, xattrs: new Map([['user.link', Buffer.from('1')]]) }),
      entry('s', 'symlink', { linkname: 'f', uid: 7, gid: 7 }),
      entry('hs', 'hardlink', { linkname: 's', mode: 0o600, uid: 8, gid: 8, mtime: { sec: 1234567890, nsec: 0 } }),
    ]),
  );
});

test('K5: a time before 1970 is set as 0 on all but symlinks', async (t) => {
  const old = { sec: -86400 * 365, nsec: 0 };
  await sameTree(
    t,
    Buffer.concat([entry('old', 'file', { mtime: old }, 'x'), entry('oldlink', 'symlink', { linkname: 'old', mtime: old }), entry('fifo', 'fifo', { mtime: old })]),
  );
});

test('K6: security.selinux is not taken from a tar; trusted.overlay.* is, on vfs', async (t) => {
  await sameTree(
    t,
    entry('f', 'file', { xattrs: new Map([['security.selinux', Buffer.from('system_u:object_r:bin_t:s0\0')], ['trusted.overlay.opaque', Buffer.from('y')], ['user.a', Buffer.from('b')]]) }, 'x'),
  );
});

test('an xattr in a namespace Linux does not have is refused naming the entry and the key (not "ENOTSUP ... on socket")', async (t) => {
  const s = tempStore(t);
  const file = path.join(s.dir, 'x.tar');
  fs.writeFileSync(file, Buffer.concat([entry('d/e', 'file', { xattrs: new Map([['foo.bar', Buffer.from('1')]]) }, 'x'), END_OF_ARCHIVE]));
  const ours = await s.cli(['import-layer', '-f', file]);
  t.not(ours.code, 0);
  t.regex(ours.stderr, /d\/e: xattr 'foo\.bar' is in no namespace Linux has/);
  t.notRegex(ours.stderr, /socket/);
  t.deepEqual(fs.readdirSync(path.join(s.root, 'vfs', 'dir')), [], 'no layer left');
});
