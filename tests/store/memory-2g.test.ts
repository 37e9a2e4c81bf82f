// A 2 GiB layer keeps memory flat (issue 12; docs/performance.md, "Memory"): the peak RSS of
// the `layers` process, as /usr/bin/time reports it, stays under 150 MB for `import-layer` of a
// 2 GiB tar and for `diff` of the layer from its tar-split record, with the bytes checked: the
// diff is the tar, and the record has its digest and size. (Many entries are
// tests/tar/memory.test.ts's part; zstd input goes through fixed native buffers.)
import test from 'ava';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { BIN, gnuTar, tempStore } from '../fixtures/store.ts';

const MiB = 1 << 20;
const LIMIT = 150 * 1000 * 1000;

test('a 2 GiB layer: import-layer and diff from its record peak under 150 MB of RSS', (t) => {
  t.timeout(4 * 60_000);
  const s = tempStore(t);
  // 1.9 GiB in 15 large files (holes: cheap to make, read as zeros) and 128 MiB in 2 048 files of 64 KiB
  const tree = path.join(s.dir, 'tree');
  fs.mkdirSync(path.join(tree, 'big'), { recursive: true });
  for (let i = 0; i < 15; i++) {
    const f = path.join(tree, 'big', `f${i}`);
    fs.writeFileSync(f, `large file ${i}\n`);
    fs.truncateSync(f, 128 * MiB);
  }
  const body = Buffer.alloc(64 << 10);
  for (let i = 0; i < 2048; i++) {
    if (i % 512 === 0) fs.mkdirSync(path.join(tree, `d${i / 512}`));
    body.writeUInt32LE(i, 0);
    fs.writeFileSync(path.join(tree, `d${Math.floor(i / 512)}`, `small-${i}`), body);
  }
  const tar = gnuTar(tree, path.join(s.dir, 'big.tar'));
  fs.rmSync(tree, { recursive: true });
  const size = fs.statSync(tar).size;
  t.true(size > 2 * 2 ** 30, `${size}`);
  const digest = `sha256:${execFileSync('sha256sum', [tar], { encoding: 'utf8' }).slice(0, 64)}`;

  // sh runs `layers ARGS` under /usr/bin/time, its stdout through `then` (a shell command); the
  // peak RSS is written to a file of its own
  const env = { ...process.env };
  delete env.NODE_V8_COVERAGE; // coverage recording takes memory of its own
  const rssFile = path.join(s.dir, 'rss');
  const measured = (args: string[], then = 'cat'): { out: string; rss: number } => {
    const script = `/usr/bin/time -f %M -o "$0" "$1" "$2" -g "$3" -R "$4" -s vfs ${args.join(' ')} | ${then}`;
    const out = execFileSync('sh', ['-c', script, rssFile, process.execPath, BIN, s.root, s.runroot], { encoding: 'utf8', env, maxBuffer: 1 << 20 });
    return { out, rss: Number(fs.readFileSync(rssFile, 'utf8').trim().split('\n').pop()) * 1024 };
  };
  const seen: string[] = [];
  const check = (what: string, rss: number) => {
    seen.push(`${what} ${(rss / 1e6).toFixed(0)} MB`);
    t.true(rss > 0 && rss < LIMIT, `${what}: peak RSS ${rss} bytes`);
  };

  const plain = measured(['import-layer', '-n', 'plain', '-f', tar]);
  check('import-layer', plain.rss);
  const id = plain.out.trim().split('\n')[0];
  const record = (s.records() as Array<Record<string, unknown>>).find((r) => r.id === id)!;
  t.is(record['diff-digest'], digest);
  t.is(record['diff-size'], size);

  const diffed = measured(['diff', id], 'sha256sum');
  check('diff', diffed.rss);
  t.is(`sha256:${diffed.out.slice(0, 64)}`, digest, 'the diff is the tar');

  t.log(seen.join(', '));
});
