// No command hangs on a special file (issue 14): a layer holding `x\xff` (a regular file) and
// `x\ufffd` (a FIFO) once made the tree copy and diff open the FIFO for reading, which blocks
// for ever with the store lock held. Bodies are now opened without blocking and must still be
// regular files; until names are kept as bytes end to end, such a layer fails with a clear
// error instead of hanging.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { tempStore } from '../fixtures/store.ts';

test('a layer whose names collide when decoded as UTF-8, one of them a FIFO: child and diff fail fast, no hang', async (t) => {
  const s = tempStore(t);
  const made = await s.cli(['create-layer']);
  t.is(made.code, 0, made.stderr);
  const id = made.stdout.split('\n')[0];
  const dir = path.join(s.root, 'vfs', 'dir', id);
  fs.writeFileSync(Buffer.concat([Buffer.from(dir + '/'), Buffer.from([0x78, 0xff])]), 'a regular file\n');
  execFileSync('mkfifo', [path.join(dir, 'x\ufffd')]);

  const started = Date.now();
  const child = await s.cli(['create-layer', id]);
  const diff = await s.cli(['diff', '-f', path.join(s.dir, 'out.tar'), id]);
  t.true(Date.now() - started < 30_000, 'both returned');
  for (const r of [child, diff]) {
    t.is(r.code, 1, r.stderr);
    t.regex(r.stderr, /x\\ufffd|x\uFFFD/);
    t.regex(r.stderr, /not a regular file any more/);
  }
  // the store is usable afterwards: the lock was released and the failed child is gone
  const layers = await s.cli(['layers', '-q']);
  t.is(layers.stdout, `${id}\n`);
});
