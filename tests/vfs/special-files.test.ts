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

test('a layer with x\\xff (a file) beside x\\ufffd (a FIFO): child and diff keep both, exactly, and never open the FIFO', async (t) => {
  const s = tempStore(t);
  const made = await s.cli(['create-layer']);
  t.is(made.code, 0, made.stderr);
  const id = made.stdout.split('\n')[0];
  const dir = path.join(s.root, 'vfs', 'dir', id);
  const rawName = Buffer.from([0x78, 0xff]);
  fs.writeFileSync(Buffer.concat([Buffer.from(dir + '/'), rawName]), 'a regular file\n');
  execFileSync('mkfifo', [path.join(dir, 'x\ufffd')]);

  // names are bytes (docs/tar-engine.md, "Names"): the two no longer collide; a hang would time out here
  const child = await s.cli(['create-layer', id]);
  t.is(child.code, 0, child.stderr);
  const childDir = path.join(s.root, 'vfs', 'dir', child.stdout.split('\n')[0]);
  t.is(fs.readFileSync(Buffer.concat([Buffer.from(childDir + '/'), rawName]), 'utf8'), 'a regular file\n');
  t.true(fs.lstatSync(path.join(childDir, 'x\ufffd')).isFIFO());
  const out = path.join(s.dir, 'out.tar');
  const diff = await s.cli(['diff', '-f', out, id]);
  t.is(diff.code, 0, diff.stderr);
  const listed = execFileSync('tar', ['-tvf', out], { encoding: 'latin1' });
  t.regex(listed, /^-.* x\\377$/m, listed); // GNU tar shows the byte 0xff as \377
  t.regex(listed, /^p.* x\xef\xbf\xbd$/m, listed);
});
