// A full disk is bad input like any other: on a small loop filesystem that a layer cannot fit
// in, import-layer (a plain tar, and a gzip one whose decompressed copy is what overflows),
// applydiff and (vfs) a child's full copy fail with an error that names the input, the layer
// and ENOSPC, and leave the store as it was: the same records, the same layer directories, no
// temp file, the space given back, and the next command works.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { loopFs, tempDir } from '../fixtures/fs.ts';
import { runCli } from '../fixtures/store.ts';

const MiB = 1 << 20;

/** A tar of one file of `size` random bytes (random: gzip cannot shrink it), made outside the full filesystem. */
function randomTar(dir: string, name: string, size: number, gzip = false): string {
  const src = path.join(dir, `${name}-src`);
  fs.mkdirSync(src);
  const fd = fs.openSync(path.join(src, name), 'w');
  for (let done = 0; done < size; done += MiB) fs.writeSync(fd, execFileSync('head', ['-c', String(MiB), '/dev/urandom']));
  fs.closeSync(fd);
  const out = path.join(dir, `${name}.tar${gzip ? '.gz' : ''}`);
  execFileSync('tar', ['-C', src, gzip ? '-czf' : '-cf', out, '.']);
  return out;
}

for (const driver of ['vfs', 'overlay'] as const) {
  test(`${driver}: a full disk fails import, applydiff and copies with a clear error and leaves the store as it was`, async (t) => {
    const mnt = loopFs(t, 'ext4', 64 * MiB);
    const host = tempDir(t);
    const g = ['-g', path.join(mnt, 'root'), '-R', path.join(mnt, 'run'), '-s', driver];
    const cli = (args: string[], stdinFile?: string) => runCli([...g, ...args], { stdinFile });
    const big = randomTar(host, 'big', 80 * MiB);
    const bigGz = randomTar(host, 'biggz', 80 * MiB, true);
    const fat = randomTar(host, 'fat', 30 * MiB);
    const small = randomTar(host, 'small', 1);

    let r = await cli(['import-layer', '-n', 'base', '-f', small]);
    t.is(r.code, 0, r.stderr);
    r = await cli(['import-layer', '-n', 'fat', '-f', fat, 'base']);
    t.is(r.code, 0, r.stderr);
    const root = path.join(mnt, 'root');
    const state = () => ({
      layers: fs.readFileSync(path.join(root, `${driver}-layers/layers.json`), 'utf8'),
      dirs: fs.readdirSync(driver === 'vfs' ? path.join(root, 'vfs/dir') : path.join(root, 'overlay')).sort(),
      tmp: fs.readdirSync(path.join(root, 'tmp')),
    });
    const before = state();
    const freeBefore = fs.statfsSync(mnt).bfree;

    const failures: Array<[string, string[], string | undefined, RegExp]> = [
      ['import of a plain tar', ['import-layer', '-n', 'big', '-f', big, 'base'], undefined, /big\.tar to layer [0-9a-f]{64}: big: extracting: ENOSPC/],
      ['import of a gzip tar from stdin', ['import-layer', '-n', 'big', 'base'], bigGz, /stdin: writing its decompressed copy into .*\/tmp: ENOSPC/],
      // the read stream on the -f descriptor must not close it (issue 14: EBADF instead of ENOSPC)
      ['import of a gzip tar from a file', ['import-layer', '-n', 'big', '-f', bigGz, 'base'], undefined, /writing its decompressed copy into .*\/tmp: ENOSPC/],
      ['applydiff', ['applydiff', '-f', big, 'fat'], undefined, /big\.tar to layer [0-9a-f]{64}: big: extracting: ENOSPC/],
    ];
    for (const [what, args, stdin, message] of failures) {
      r = await cli(args, stdin);
      t.is(r.code, 1, `${what}: ${r.stderr}`);
      t.regex(r.stderr, message, what);
      t.is(r.stderr.trim().split('\n').length, 1, `${what}: one line`);
      // a failed applydiff leaves its layer incomplete, and the next command removes it
      if (args[0] !== 'applydiff') t.deepEqual(state(), before, `${what}: the store is as it was`);
    }
    // the layer whose apply failed was removed by the next command (it could not be finished)
    r = await cli(['layers']);
    t.is(r.code, 0, r.stderr);
    t.notRegex(r.stdout, /name: fat/, 'the half-applied layer is gone');
    t.regex(r.stdout, /name: base/, 'the layer below it stays');
    t.deepEqual(state().tmp, [], 'no temp file is left');
    t.true(fs.statfsSync(mnt).bfree >= freeBefore, 'the space is given back (and the fat layer with it)');

    if (driver === 'vfs') {
      // a child of a 30 MiB layer is a 30 MiB copy on vfs (ext4 cannot share it): no room for it
      r = await cli(['import-layer', '-n', 'fat', '-f', fat, 'base']);
      t.is(r.code, 0, r.stderr);
      const copyState = state();
      r = await cli(['create-layer', '-n', 'copy', 'fat']);
      t.is(r.code, 1, r.stderr);
      t.regex(r.stderr, /create-layer: fat: copying .*vfs\/dir\/[0-9a-f]{64} to .*: ENOSPC/);
      t.deepEqual(state(), copyState, 'the failed copy left nothing');
    }
    r = await cli(['import-layer', '-n', 'after', '-f', small, 'base']);
    t.is(r.code, 0, `the next import works: ${r.stderr}`);
  });
}
