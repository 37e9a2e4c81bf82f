// The store lock across processes: a waiter waits while the holder lives, and a holder killed
// with SIGKILL frees the lock at once (its flock dies with it), with the lock directory it left
// removed by the next writer. (Many writers at once losing no record: tests/cli/cli.test.ts.)
import test from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { StoreLock } from '../../lib/lock.ts';
import { tempDir } from '../fixtures/fs.ts';

const LOCK_TS = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'lib', 'lock.ts');

/** A process that takes the lock at lockPath, writes 'held' to stdout, and holds it until killed
 *  (or for holdMs, then writes 'done' to `marker` before releasing). */
function holder(lockPath: string, opts: { holdMs?: number; marker?: string } = {}): Promise<ChildProcess> {
  const code = `
    const { StoreLock } = await import(${JSON.stringify(LOCK_TS)});
    const fs = await import('node:fs');
    await new StoreLock(${JSON.stringify(lockPath)}, () => {}).withLock(async () => {
      process.stdout.write('held\\n');
      await new Promise((r) => setTimeout(r, ${opts.holdMs ?? 3_600_000}));
      ${opts.marker ? `fs.writeFileSync(${JSON.stringify(opts.marker)}, 'done');` : ''}
    });`;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    child.stdout!.setEncoding('utf8').on('data', (d: string) => d.includes('held') && resolve(child));
    child.on('exit', (c) => reject(new Error(`the holder exited (${c}) before taking the lock`)));
  });
}

test('a waiter waits while the holder lives', async (t) => {
  const dir = tempDir(t);
  const lockPath = path.join(dir, 'store.lock');
  const marker = path.join(dir, 'marker');
  const child = await holder(lockPath, { holdMs: 1500, marker });
  t.teardown(() => child.kill('SIGKILL'));
  let sawMarker: boolean | undefined;
  await new StoreLock(lockPath, () => {}).withLock(async () => {
    sawMarker = fs.existsSync(marker);
  });
  t.true(sawMarker, 'the lock was taken before the holder released it');
});

test('a holder killed with SIGKILL frees the lock at once; its lock directory is cleared', async (t) => {
  const dir = tempDir(t);
  const lockPath = path.join(dir, 'store.lock');
  const child = await holder(lockPath);
  t.true(fs.statSync(lockPath).isDirectory(), 'the holder made the lock directory');
  const exited = new Promise((r) => child.on('exit', r));
  child.kill('SIGKILL');
  await exited;
  t.true(fs.existsSync(lockPath), 'the dead holder left its lock directory behind');
  // proper-lockfile alone would wait until the directory is 10 s old; the flock tells at once
  const t0 = Date.now();
  let took = -1;
  await new StoreLock(lockPath, () => {}).withLock(async () => {
    took = Date.now() - t0;
  });
  t.true(took >= 0 && took < 5_000, `took the lock after ${took} ms`);
  t.false(fs.existsSync(lockPath), 'released');
  t.is(fs.readFileSync(lockPath + '.holder', 'utf8'), `${process.pid}\n`, 'the holder file names the last holder');
});
