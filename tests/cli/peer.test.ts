// Against the reference peer on the same input: the same tar imported by `containers-storage -s
// vfs` and by `layers -s vfs` gives identical trees, and each tool's `diff` of the layer (and of
// a child with changes) extracts with GNU tar to the same tree.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { tempDir } from '../fixtures/fs.ts';
import { tempStore } from '../fixtures/store.ts';
import { makeRichTree, snapshotTree } from '../fixtures/tree.ts';

const GNU_X = ['--xattrs', '--xattrs-include=*', '--numeric-owner', '-p'];

function extract(tarPath: string, dir: string): string {
  fs.mkdirSync(dir);
  execFileSync('tar', [...GNU_X, '-xf', tarPath, '-C', dir]);
  return dir;
}

test('the same tar imported by the peer and by us gives identical trees, and both diffs extract alike', async (t) => {
  const dir = tempDir(t);
  const src = path.join(dir, 'src');
  fs.mkdirSync(src);
  makeRichTree(src);
  const tarPath = path.join(dir, 'rich.tar');
  execFileSync('tar', ['--format=pax', '--xattrs', '--xattrs-include=*', '--numeric-owner', '-cf', tarPath, '-C', src, '.']);

  const ours = tempStore(t, path.join(dir, 'ours'));
  const peer = tempStore(t, path.join(dir, 'peer'));
  fs.mkdirSync(ours.dir, { recursive: true });
  fs.mkdirSync(peer.dir, { recursive: true });
  const o = await ours.cli(['import-layer', '-f', tarPath, '-n', 'base']);
  t.is(o.code, 0, o.stderr);
  const p = peer.peer(['import-layer', '-f', tarPath, '-n', 'base']);
  t.is(p.code, 0, p.stderr);
  const firstLine = (s: string) => s.trim().split('\n')[0];
  const ourId = firstLine(o.stdout);
  const peerId = firstLine(p.stdout);
  const ourTree = path.join(ours.root, 'vfs/dir', ourId);
  const peerTree = path.join(peer.root, 'vfs/dir', peerId);
  t.deepEqual(snapshotTree(ourTree), snapshotTree(peerTree));
  t.deepEqual(snapshotTree(ourTree), snapshotTree(src));

  // both diffs of the base layer extract to the same tree
  const ourDiff = path.join(dir, 'ours.tar');
  const peerDiff = path.join(dir, 'peer.tar');
  t.is((await ours.cli(['diff', '-f', ourDiff, 'base'])).code, 0);
  t.is(peer.peer(['diff', '-u', '-f', peerDiff, 'base']).code, 0);
  t.deepEqual(snapshotTree(extract(ourDiff, path.join(dir, 'x-ours'))), snapshotTree(extract(peerDiff, path.join(dir, 'x-peer'))));

  // a child with changes: each tool's diff against the base extracts alike over a copy of the base
  const change = path.join(dir, 'change');
  fs.mkdirSync(path.join(change, 'sub/dir'), { recursive: true });
  fs.writeFileSync(path.join(change, 'sub/dir/new.txt'), 'new\n');
  fs.writeFileSync(path.join(change, 'b512'), 'rewritten\n');
  fs.writeFileSync(path.join(change, '.wh.b513'), '');
  const changeTar = path.join(dir, 'change.tar');
  execFileSync('tar', ['--format=pax', '--numeric-owner', '-cf', changeTar, '-C', change, '.']);
  const oc = await ours.cli(['import-layer', '-f', changeTar, '-n', 'child', 'base']);
  t.is(oc.code, 0, oc.stderr);
  const pc = peer.peer(['import-layer', '-f', changeTar, '-n', 'child', 'base']);
  t.is(pc.code, 0, pc.stderr);
  const ourChild = path.join(ours.root, 'vfs/dir', firstLine(oc.stdout));
  const peerChild = path.join(peer.root, 'vfs/dir', firstLine(pc.stdout));
  t.deepEqual(snapshotTree(ourChild, { dirTimes: false }), snapshotTree(peerChild, { dirTimes: false }));
  t.false(fs.existsSync(path.join(ourChild, 'b513')));

  const ourChildDiff = path.join(dir, 'ours-child.tar');
  const peerChildDiff = path.join(dir, 'peer-child.tar');
  t.is((await ours.cli(['diff', '-f', ourChildDiff, 'child'])).code, 0);
  t.is(peer.peer(['diff', '-u', '-f', peerChildDiff, 'child']).code, 0);
  const names = (p: string) => execFileSync('tar', ['-tf', p], { encoding: 'utf8' }).trim().split('\n').map((n) => n.replace(/^\.\//, '').replace(/\/$/, '')).filter((n) => n && n !== '.').sort();
  t.deepEqual(names(ourChildDiff), names(peerChildDiff));
  // the one intended difference: the peer stamps whiteouts with the time of the diff, we with 0,
  // so that the same two trees always give the same tar
  const snap = (p: string) => {
    const s = snapshotTree(p, { dirTimes: false });
    for (const [k, v] of Object.entries(s)) if (path.basename(k).startsWith('.wh.')) v.mtimeNs = 'whiteout';
    return s;
  };
  t.deepEqual(snap(extract(ourChildDiff, path.join(dir, 'xc-ours'))), snap(extract(peerChildDiff, path.join(dir, 'xc-peer'))));
});
