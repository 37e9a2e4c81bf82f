// One tar stream, many sections (docs/tar-engine.md, "Sections"): a container's diff, a host
// directory and single files in one archive; restored to a new container's layer and a host
// directory; a skipped section's bodies never read.
import test, { type ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { openRecordStore, type RecordStore } from '../../lib/store/store.ts';
import { extractTar } from '../../lib/tar/extract.ts';
import { endOfArchiveOffset, TarAppender } from '../../lib/tar/sections.ts';
import { canMount, dirOn, tempDir, type FsKind } from '../fixtures/fs.ts';
import { gnuTar, runCli } from '../fixtures/store.ts';
import { makeBulkTree, snapshotTree } from '../fixtures/tree.ts';

const DRIVERS: Array<{ driver: string; kind: FsKind | 'tmp' }> = [
  { driver: 'vfs', kind: 'tmp' },
  { driver: 'overlay', kind: 'ext4' },
  { driver: 'btrfs', kind: 'btrfs' },
];

function write(p: string, data: string | Buffer, mode = 0o644): void {
  fs.mkdirSync(path.dirname(p), { recursive: true });
  fs.writeFileSync(p, data, { mode });
  fs.chmodSync(p, mode);
}

/** The image's tree: files to change, to delete, a directory to delete, owners and xattrs. */
function baseTree(dir: string): void {
  write(path.join(dir, 'etc/keep.conf'), 'keep\n');
  write(path.join(dir, 'etc/change.conf'), 'old\n');
  write(path.join(dir, 'etc/gone.conf'), 'gone\n');
  write(path.join(dir, 'var/lib/old/a'), 'a\n');
  write(path.join(dir, 'var/lib/old/b'), 'b\n');
  write(path.join(dir, 'bin/tool'), Buffer.alloc(200_000, 3), 0o755);
  fs.chownSync(path.join(dir, 'bin/tool'), 1000, 1001);
}

/** The container's changes: changed, added (owners, modes, xattrs, a symlink) and deleted. */
function changeTree(root: string): void {
  fs.writeFileSync(path.join(root, 'etc/change.conf'), 'new contents\n');
  fs.chmodSync(path.join(root, 'etc/change.conf'), 0o600);
  fs.rmSync(path.join(root, 'etc/gone.conf'));
  fs.rmSync(path.join(root, 'var/lib/old'), { recursive: true });
  write(path.join(root, 'srv/data/big'), Buffer.alloc(3 << 20, 9));
  write(path.join(root, 'srv/data/small'), 'small\n', 0o640);
  fs.chownSync(path.join(root, 'srv/data/small'), 2000, 2001);
  execFileSync('setfattr', ['-n', 'user.note', '-v', 'checkpointed', path.join(root, 'srv/data/small')]);
  fs.symlinkSync('data/small', path.join(root, 'srv/link'));
  fs.chownSync(path.join(root, 'bin/tool'), 1002, 1003);
}

async function storeOn(t: ExecutionContext, driver: string, base: string): Promise<RecordStore> {
  const store = await openRecordStore({ root: path.join(base, 'root'), runroot: path.join(base, 'run'), driver });
  t.teardown(async () => {
    await store.shutdown(true).catch(() => undefined);
  });
  return store;
}

/** the mounted container's tree, then unmounted */
async function containerTree(store: RecordStore, ref: string) {
  const root = await store.mount(ref);
  try {
    return snapshotTree(root, { dirTimes: false });
  } finally {
    await store.unmount(ref);
  }
}

for (const { driver, kind } of DRIVERS) {
  test.serial(`${driver}: a container's diff, a host directory and files in one archive; restored section by section`, async (t) => {
    if (!canMount) return t.pass('needs root');
    const base = dirOn(t, kind, 2 * 1024 ** 3);
    const scratch = path.join(base, 'scratch');
    fs.mkdirSync(scratch);
    const store = await storeOn(t, driver, base);
    const image = path.join(scratch, 'image');
    baseTree(image);
    const layer = await store.createLayer({ id: 'base' }, gnuTar(image, path.join(scratch, 'image.tar')));
    await store.createImage({ id: 'img', layer: layer.id });
    const c1 = await store.createContainer({ id: 'c1', image: 'img' });
    changeTree(await store.mount('c1'));
    await store.unmount('c1');

    // the checkpoint: 200 MB over 40 files (issue 17's size), and two small config files
    const host = path.join(scratch, 'checkpoint');
    makeBulkTree(host, 40, 200 << 20);
    write(path.join(scratch, 'config.dump'), '{"id":"c1"}\n');
    write(path.join(scratch, 'spec.dump'), '{"spec":1}\n', 0o600);

    const archive = path.join(scratch, 'archive.tar');
    const out = TarAppender.open(archive);
    await store.diffSection('c1', out, 'rootfs-diff');
    await out.close();
    // a second writer appends to the closed tar: only its end blocks are rewritten
    const more = TarAppender.open(archive, { append: true });
    await more.addTree(host, 'checkpoint');
    await more.addFiles([path.join(scratch, 'config.dump'), path.join(scratch, 'spec.dump')], 'checkpoint-files');
    await more.close();
    t.is(fs.statSync(archive).size, endOfArchiveOffset(fs.openSync(archive, 'r')) + 1024);

    // GNU tar reads it, every name under one of the prefixes, the whiteouts as entries
    const listing = execFileSync('tar', ['--numeric-owner', '-tvf', archive], { encoding: 'utf8' });
    const names = execFileSync('tar', ['-tf', archive], { encoding: 'utf8' }).split('\n').filter(Boolean);
    t.true(names.every((n) => /^(rootfs-diff|checkpoint|checkpoint-files)(\/|$)/.test(n)), names.join('\n'));
    for (const n of ['rootfs-diff/etc/.wh.gone.conf', 'rootfs-diff/var/lib/.wh.old', 'rootfs-diff/srv/data/big', 'checkpoint/d0/f0', 'checkpoint-files/config.dump', 'checkpoint-files/spec.dump'])
      t.true(names.includes(n) || names.includes(n + '/'), `${n} listed`);
    t.regex(listing, /-rw-r----- 2000\/2001 +6 .* rootfs-diff\/srv\/data\/small/);

    // restore: a new container on the same image gets the diff section; the host directory its own
    const c2 = await store.createContainer({ id: 'c2', image: 'img' });
    const applied = await store.applyDiff(c2.layer, archive, { section: 'rootfs-diff' });
    const restored = path.join(scratch, 'restored');
    fs.mkdirSync(restored);
    fs.mkdirSync(path.join(scratch, 'files'));
    const fd = fs.openSync(archive, 'r');
    try {
      await extractTar(fd, restored, { whiteouts: 'keep', section: 'checkpoint' });
      await extractTar(fd, path.join(scratch, 'files'), { whiteouts: 'keep', section: 'checkpoint-files' });
    } finally {
      fs.closeSync(fd);
    }
    t.deepEqual(snapshotTree(restored), snapshotTree(host));
    t.is(fs.readFileSync(path.join(scratch, 'files/spec.dump'), 'utf8'), '{"spec":1}\n');
    t.is(fs.statSync(path.join(scratch, 'files/spec.dump')).mode & 0o777, 0o600);
    const before = await containerTree(store, 'c1');
    t.false('etc/gone.conf' in before);
    t.deepEqual(await containerTree(store, 'c2'), before);

    // the section's diff digest is that of the same diff applied from a tar of its own
    const standalone = path.join(scratch, 'diff.tar');
    const sfd = fs.openSync(standalone, 'w');
    await store.diff(c1.layer, sfd).finally(() => fs.closeSync(sfd));
    const c3 = await store.createContainer({ id: 'c3', image: 'img' });
    const alone = await store.applyDiff(c3.layer, standalone);
    t.is(applied['diff-digest'], alone['diff-digest']);
    t.is(applied['diff-size'], alone['diff-size']);
    t.is(applied['diff-size'], fs.statSync(standalone).size);
  });
}

/** bytes this process has read through read(2)-like calls so far (/proc/self/io) */
function readChars(): number {
  return Number(/^rchar: (\d+)$/m.exec(fs.readFileSync('/proc/self/io', 'utf8'))![1]);
}

test.serial('skipping a 1 GiB section reads none of its bodies; a pipe gives the same section', async (t) => {
  const dir = tempDir(t);
  const bigDir = path.join(dir, 'big');
  fs.mkdirSync(bigDir);
  // 1 GiB: data at both ends, a hole between (cheap to make; the tar holds it as 1 GiB of body)
  const chunk = Buffer.alloc(1 << 20, 0x5a);
  const bfd = fs.openSync(path.join(bigDir, 'image'), 'w');
  fs.writeSync(bfd, chunk, 0, chunk.length, 0);
  fs.writeSync(bfd, chunk, 0, chunk.length, (1 << 30) - chunk.length);
  fs.closeSync(bfd);
  const small = path.join(dir, 'small');
  write(path.join(small, 'a'), 'a\n');
  write(path.join(small, 'b/c'), Buffer.alloc(70_000, 1));
  const archive = path.join(dir, 'a.tar');
  const out = TarAppender.open(archive);
  await out.addTree(bigDir, 'big');
  await out.addTree(small, 'small');
  await out.close();

  fs.mkdirSync(path.join(dir, 'out'));
  fs.mkdirSync(path.join(dir, 'again'));
  const fd = fs.openSync(archive, 'r');
  const before = readChars();
  let r;
  try {
    r = await extractTar(fd, path.join(dir, 'out'), { whiteouts: 'keep', section: 'small' });
  } finally {
    fs.closeSync(fd);
  }
  const read = readChars() - before;
  t.true(read < 4 << 20, `read ${read} bytes to extract a 70 KB section behind a 1 GiB one`);
  t.deepEqual(snapshotTree(path.join(dir, 'out')), snapshotTree(small));

  // the same section from a pipe: the other bodies pass through, the digest is the same
  const viaPipe = path.join(dir, 'out-pipe');
  fs.mkdirSync(viaPipe);
  const res = await runCli(['untar', '--section', 'small', '-C', viaPipe], { stdinFile: archive });
  t.is(res.code, 0, res.stderr);
  t.deepEqual(snapshotTree(viaPipe), snapshotTree(small));
  // and the digest from a file equals a standalone tar of the same tree, written by the engine
  const alone = path.join(dir, 'small.tar');
  const w = TarAppender.open(alone);
  await w.addTree(small, 'x');
  await w.close();
  const afd = fs.openSync(alone, 'r');
  const again = await extractTar(afd, path.join(dir, 'again'), { whiteouts: 'keep', section: 'x' }).finally(() => fs.closeSync(afd));
  t.is(r.digest, again.digest);
});

test.serial('CLI: diff --prefix, tar --append, applydiff --section and untar --section', async (t) => {
  const dir = tempDir(t);
  const g = ['-g', path.join(dir, 'root'), '-R', path.join(dir, 'run'), '-s', 'vfs'];
  const cli = async (...args: string[]) => {
    const r = await runCli([...g, ...args]);
    t.is(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  const image = path.join(dir, 'image');
  baseTree(image);
  await cli('import-layer', '--id', 'base', '-f', gnuTar(image, path.join(dir, 'image.tar')));
  await cli('create-image', '--id', 'img', 'base');
  await cli('create-container', '--id', 'c1', 'img');
  const mnt = (await cli('mount', 'c1')).trim();
  changeTree(mnt);
  await cli('unmount', 'c1');
  const host = path.join(dir, 'ckpt');
  makeBulkTree(host, 4, 1 << 20);
  write(path.join(dir, 'config.dump'), 'cfg\n');
  const archive = path.join(dir, 'checkpoint.tar');
  await cli('diff', '--prefix', 'rootfs-diff', '-f', archive, 'c1');
  await cli('tar', '--prefix', 'checkpoint', '--append', '-f', archive, host);
  await cli('tar', '--prefix', 'files', '--append', '-f', archive, path.join(dir, 'config.dump'));
  const names = execFileSync('tar', ['-tf', archive], { encoding: 'utf8' }).split('\n').filter(Boolean);
  t.true(names.includes('rootfs-diff/etc/.wh.gone.conf'));
  t.true(names.includes('checkpoint/d0/f0'));
  t.true(names.includes('files/config.dump'));

  await cli('create-container', '--id', 'c2', 'img');
  const [c2] = JSON.parse(await cli('container', '--json', 'c2')) as Array<{ layer: string }>;
  await cli('applydiff', '--section', 'rootfs-diff', '-f', archive, c2.layer);
  await cli('untar', '--section', 'checkpoint', '-f', archive, '-C', path.join(dir, 'restored'));
  t.deepEqual(snapshotTree(path.join(dir, 'restored')), snapshotTree(host));
  const trees = [];
  for (const c of ['c1', 'c2']) {
    const m = (await cli('mount', c)).trim();
    trees.push(snapshotTree(m, { dirTimes: false }));
    await cli('unmount', c);
  }
  t.deepEqual(trees[1], trees[0]);

  // refused: --append without a file, a section prefix that climbs
  const bad = await runCli([...g, 'tar', '--prefix', '../x', '-f', path.join(dir, 'x.tar'), host]);
  t.not(bad.code, 0);
  t.regex(bad.stderr, /invalid section prefix/);
});
