// Memory stays flat: writing and extracting a tar of 3x more files keeps no more memory, and
// peak RSS stays under 150 MB (Node alone takes ~40; the engine runs as shipped, from dist/, without tsx), as it does for a 512 MiB file.
// Peak RSS is a poor leak detector (V8 lets garbage reach ~25 MiB of old space and widens its
// young generation to 2 x 16 MiB before collecting, more so in longer runs), so flatness is
// checked on what is still held after a full GC.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { tempDir } from '../fixtures/fs.ts';

const tarTool = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'hack', 'tar.mjs');
const MB = 1 << 20;

function run(args: string[], nodeFlags: string[] = []): { maxRSS: number; bytes: Record<string, number>; retained?: number } {
  // without c8's NODE_V8_COVERAGE: recording coverage takes memory of its own, growing with the run
  const env = { ...process.env };
  delete env.NODE_V8_COVERAGE;
  // the engine as the package ships it (dist/, built by hack/setup.sh), without the development
  // loader tsx, which alone takes ~37 MB (hack/tar.mjs)
  const out = execFileSync(process.execPath, [...nodeFlags, tarTool, ...args], { encoding: 'utf8', env });
  return JSON.parse(out.trim().split('\n').pop()!);
}

function smallFiles(dir: string, n: number): void {
  const body = Buffer.alloc(700, 'x');
  for (let i = 0; i < n; i++) {
    const d = path.join(dir, `d${Math.floor(i / 1000)}`);
    if (i % 1000 === 0) fs.mkdirSync(d);
    fs.writeFileSync(path.join(d, `file-with-a-longish-name-${i}`), body);
  }
}

test('peak memory does not grow with the number of files, and stays under 150 MB', (t) => {
  t.timeout(5 * 60_000);
  const dir = tempDir(t);
  const gcFlags = ['--expose-gc'];
  const kept: number[] = [];
  const seen: string[] = [];
  let defaults = 0;
  for (const n of [20_000, 60_000]) {
    const src = path.join(dir, `src${n}`);
    fs.mkdirSync(src);
    smallFiles(src, n);
    const tarPath = path.join(dir, `t${n}.tar`);
    const w = run(['create', src, tarPath], gcFlags);
    const out = path.join(dir, `out${n}`);
    fs.mkdirSync(out);
    const x = run(['extract', tarPath, out], gcFlags);
    t.is(fs.readdirSync(path.join(out, 'd4')).length, 1000);
    kept.push(Math.max(w.retained!, x.retained!));
    seen.push(`${n} files: create ${(w.retained! / MB).toFixed(1)}, extract ${(x.retained! / MB).toFixed(1)} MiB`);
    if (n === 60_000) {
      // and with Node's default heap settings, as the CLI runs
      const again = path.join(dir, 'again');
      fs.mkdirSync(again);
      defaults = Math.max(run(['create', src, path.join(dir, 'd.tar')]).maxRSS, run(['extract', tarPath, again]).maxRSS);
    }
  }
  // a per-file leak of 200 bytes or more (a header, a buffer, a stat) shows as > 8 MiB over 40 000 more files
  t.true(kept[1] - kept[0] < 8 * MB, `memory held after the run grew with 3x the files: ${seen.join('; ')}`);
  t.true(defaults < 150 * MB, `peak RSS with default heap settings: ${defaults / MB} MiB`);
});

test('a 512 MiB file goes through a tar without its body entering the process', (t) => {
  const dir = tempDir(t);
  const src = path.join(dir, 'src');
  const out = path.join(dir, 'out');
  fs.mkdirSync(src);
  fs.mkdirSync(out);
  const f = path.join(src, 'big');
  const fd = fs.openSync(f, 'w');
  const chunk = Buffer.alloc(8 * MB, 0x61);
  for (let i = 0; i < 64; i++) fs.writeSync(fd, chunk.fill(i, 0, 1));
  fs.closeSync(fd);
  const tarPath = path.join(dir, 't.tar');
  const w = run(['create', src, tarPath]);
  const x = run(['extract', tarPath, out]);
  t.true(w.maxRSS < 150 * MB, `create: peak RSS ${w.maxRSS / MB} MiB`);
  t.true(x.maxRSS < 150 * MB, `extract: peak RSS ${x.maxRSS / MB} MiB`);
  // on this filesystem the body moved inside the kernel
  t.is(w.bytes.copy_file_range ?? w.bytes.sendfile ?? 0, 512 * MB, JSON.stringify(w.bytes));
  t.is(fs.statSync(path.join(out, 'big')).size, 512 * MB);
  execFileSync('cmp', [f, path.join(out, 'big')]);
});
