// tar-split records in the store (docs/tar-engine.md, "tar-split records"): every applied layer
// gets <driver>-layers/<id>.tar-split.gz, diff gives back the exact tar it was applied from on
// every driver, the peer's diff of our layer gives the same bytes and ours of the peer's layer
// too, and a file changed behind the store's back fails the diff naming it.
import test, { type ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { BIN, sha256File } from '../fixtures/store.ts';
import { tempDir } from '../fixtures/fs.ts';
import { DRIVERS, driverStore, type DriverStore } from './fixtures.ts';

const haveBsdtar = (() => {
  try {
    execFileSync('bsdtar', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

/** A tree with what layer tars carry: long names, hardlinks, symlinks, xattrs, odd owners, an empty file. */
function makeSource(dir: string): string {
  const src = path.join(dir, 'src');
  const long = path.join(src, 'd'.repeat(90), 'e'.repeat(90));
  fs.mkdirSync(long, { recursive: true });
  fs.writeFileSync(path.join(long, 'f'.repeat(120)), 'long name\n');
  fs.mkdirSync(path.join(src, 'etc'));
  fs.writeFileSync(path.join(src, 'etc/passwd'), 'root:x:0:0::/root:/bin/sh\n');
  fs.writeFileSync(path.join(src, 'etc/empty'), '');
  fs.writeFileSync(path.join(src, 'big'), Buffer.alloc(300_000, 5));
  fs.linkSync(path.join(src, 'big'), path.join(src, 'big-link'));
  fs.symlinkSync('etc/passwd', path.join(src, 'sym'));
  fs.chownSync(path.join(src, 'etc/passwd'), 1000, 1001);
  execFileSync('setfattr', ['-n', 'user.note', '-v', 'hello', path.join(src, 'etc/passwd')]);
  return src;
}

/** the tars of one tree by each writer: GNU tar (gnu, posix with xattrs), bsdtar */
function tars(dir: string, src: string): Record<string, string> {
  const out: Record<string, string> = {};
  const gnu = (name: string, args: string[]) => {
    out[name] = path.join(dir, `${name}.tar`);
    execFileSync('tar', [...args, '--numeric-owner', '-C', src, '-cf', out[name], '.']);
  };
  gnu('gnu', ['--format=gnu']);
  gnu('posix', ['--format=posix', '--xattrs', '--xattrs-include=*']);
  if (haveBsdtar) {
    out.bsdtar = path.join(dir, 'bsdtar.tar');
    execFileSync('bsdtar', ['--numeric-owner', '-C', src, '-cf', out.bsdtar, '.']);
  }
  return out;
}

function peer(s: DriverStore, args: string[], stdout?: number): string {
  return execFileSync('containers-storage', ['-g', s.root, '-R', s.runroot, '-s', s.driver, ...args], {
    encoding: 'utf8',
    stdio: ['ignore', stdout ?? 'pipe', 'pipe'],
  });
}

async function ok(t: ExecutionContext, s: DriverStore, args: string[]): Promise<string> {
  const r = await s.cli(args);
  t.is(r.code, 0, `layers ${args.join(' ')}: ${r.stderr}`);
  return r.stdout.trim();
}

/** `layers diff` (or the peer's) of a layer into a file; its sha256 */
async function diffDigest(t: ExecutionContext, s: DriverStore, id: string, who: 'ours' | 'peer'): Promise<string> {
  const out = path.join(s.dir, `diff-${who}-${id}.tar`);
  if (who === 'ours') await ok(t, s, ['diff', '-f', out, id]);
  else {
    const fd = fs.openSync(out, 'w');
    try {
      peer(s, ['diff', id], fd);
    } finally {
      fs.closeSync(fd);
    }
  }
  const digest = await sha256File(out);
  fs.rmSync(out);
  return digest;
}

for (const driver of DRIVERS) {
  test.serial(`${driver}: diff of an applied layer is the tar it was applied from, for ours and the peer's`, async (t) => {
    const s = driverStore(t, driver);
    const work = tempDir(t);
    const inputs = tars(work, makeSource(work));
    if (!haveBsdtar) t.log('bsdtar not installed: its tar is not tried');
    let parent: string | undefined;
    for (const [name, tar] of Object.entries(inputs)) {
      const want = await sha256File(tar);
      const id = await ok(t, s, ['import-layer', '-f', tar, ...(parent ? [parent] : [])]);
      t.true(fs.existsSync(path.join(s.root, `${driver}-layers`, `${id}.tar-split.gz`)), `${name}: record written`);
      t.is(await diffDigest(t, s, id, 'ours'), want, `${name}: our diff of our layer`);
      t.is(await diffDigest(t, s, id, 'peer'), want, `${name}: the peer's diff of our layer`);
      // the peer's layer, with the record it wrote
      const theirs = peer(s, ['import-layer', '-f', tar]).trim().split('\n').pop()!;
      t.is(await diffDigest(t, s, theirs, 'ours'), want, `${name}: our diff of the peer's layer`);
      parent = id;
    }
    // the peer's own diff output, applied by us, comes back the same
    const peerTar = path.join(work, 'peer-diff.tar');
    const fd = fs.openSync(peerTar, 'w');
    peer(s, ['diff', parent!], fd);
    fs.closeSync(fd);
    const id = await ok(t, s, ['import-layer', '-f', peerTar]);
    t.is(await diffDigest(t, s, id, 'ours'), await sha256File(peerTar), "the peer's diff output");
    // the record goes with the layer
    await ok(t, s, ['delete-layer', id]);
    t.false(fs.existsSync(path.join(s.root, `${driver}-layers`, `${id}.tar-split.gz`)));
    t.deepEqual(
      fs.readdirSync(path.join(s.root, `${driver}-layers`)).filter((f) => f.startsWith('.')),
      [],
      'no temp record left behind',
    );
  });

  test.serial(`${driver}: a file changed behind the store's back fails the diff naming it`, async (t) => {
    const s = driverStore(t, driver);
    const work = tempDir(t);
    const { gnu } = tars(work, makeSource(work));
    const id = await ok(t, s, ['import-layer', '-f', gnu]);
    const store = await s.open();
    const dir = store.driver.layerDir(id);
    // same size, other bytes: only the CRC check of a file whose inode changed finds it
    fs.writeFileSync(path.join(dir, 'etc/passwd'), 'ROOT:X:0:0::/root:/bin/sh\n');
    let r = await s.cli(['diff', '-f', path.join(work, 'out.tar'), id]);
    t.not(r.code, 0);
    t.regex(r.stderr, /etc\/passwd: .*CRC-64 differs/);
    fs.appendFileSync(path.join(dir, 'etc/passwd'), 'more\n');
    r = await s.cli(['diff', '-f', path.join(work, 'out.tar'), id]);
    t.regex(r.stderr, /etc\/passwd: has 31 bytes, the record says 26/);
    // written back as it was: a newer ctime alone is no change, the CRC matches
    fs.writeFileSync(path.join(dir, 'etc/passwd'), 'root:x:0:0::/root:/bin/sh\n');
    await ok(t, s, ['diff', '-f', path.join(work, 'out.tar'), id]);
    t.is(await sha256File(path.join(work, 'out.tar')), await sha256File(gnu));
    fs.rmSync(path.join(dir, 'big'));
    fs.rmSync(path.join(dir, 'big-link'));
    r = await s.cli(['diff', '-f', path.join(work, 'out.tar'), id]);
    t.regex(r.stderr, /(big|big-link): is missing/);
  });
}

test('a sparse tar is applied without a record, and diffs the driver\'s way', async (t) => {
  const s = driverStore(t, 'vfs');
  const work = tempDir(t);
  const src = path.join(work, 'src');
  fs.mkdirSync(src);
  const fd = fs.openSync(path.join(src, 'holes'), 'w');
  fs.writeSync(fd, 'x', 0);
  fs.writeSync(fd, 'y', 8 << 20);
  fs.closeSync(fd);
  const tar = path.join(work, 'sparse.tar');
  execFileSync('tar', ['--format=posix', '--sparse', '-C', src, '-cf', tar, '.']);
  const id = await ok(t, s, ['import-layer', '-f', tar]);
  t.false(fs.existsSync(path.join(s.root, 'vfs-layers', `${id}.tar-split.gz`)));
  const out = path.join(work, 'out.tar');
  await ok(t, s, ['diff', '-f', out, id]);
  t.deepEqual(execFileSync('tar', ['-tf', out], { encoding: 'utf8' }).split('\n').filter(Boolean).sort(), ['holes']);
});

test('gzip, zstd, xz and bzip2 layers, from a file and from stdin: the digests of the file and of its content; junk fails as the peer words it', async (t) => {
  const s = driverStore(t, 'vfs');
  const work = tempDir(t);
  const { gnu } = tars(work, makeSource(work));
  const diffDigest = await sha256File(gnu);
  const kinds = { gzip: 2, zstd: 4, xz: 3, bzip2: 1 } as const;
  for (const [kind, code] of Object.entries(kinds)) {
    const file = `${gnu}.${kind}`;
    fs.writeFileSync(file, execFileSync(kind, ['-c', gnu]));
    for (const how of ['file', 'pipe']) {
      const r =
        how === 'file'
          ? await s.cli(['import-layer', '-f', file])
          : { code: 0, stderr: '', stdout: execFileSync('sh', ['-c', 'cat "$1" | "$0" "$2" -g "$3" -R "$4" -s vfs import-layer', process.execPath, file, BIN, s.root, s.runroot], { encoding: 'utf8' }) };
      t.is(r.code, 0, `${kind} ${how}: ${r.stderr}`);
      const id = r.stdout.trim().split('\n').pop()!;
      const rec = JSON.parse(await ok(t, s, ['layer', '--json', id]))[0];
      t.is(rec['compressed-diff-digest'], await sha256File(file), `${kind} ${how}`);
      t.is(rec['compressed-size'], fs.statSync(file).size);
      t.is(rec['diff-digest'], diffDigest);
      t.is(rec['diff-size'], fs.statSync(gnu).size);
      t.is(rec.compression, code);
    }
    // garbage inside valid compression, and a cut stream: the peer's words, no layer left
    const before = JSON.parse(await ok(t, s, ['layers', '--json']) || 'null')?.length ?? 0;
    const junk = path.join(work, `junk.${kind}`);
    fs.writeFileSync(junk, execFileSync(kind, ['-c'], { input: fs.readFileSync('/etc/os-release') }));
    let r = await s.cli(['import-layer', '-f', junk]);
    t.not(r.code, 0);
    t.regex(r.stderr, /invalid tar header|unexpected EOF/, `${kind} junk`);
    const whole = fs.readFileSync(file);
    fs.writeFileSync(junk, whole.subarray(0, whole.length >> 1));
    r = await s.cli(['import-layer', '-f', junk]);
    t.not(r.code, 0);
    t.regex(r.stderr, /unexpected EOF/, `${kind} cut: ${r.stderr}`);
    t.is(JSON.parse(await ok(t, s, ['layers', '--json']) || 'null')?.length ?? 0, before, `${kind}: no layer left`);
  }
});
