// The store's locks across processes (lib/lock.ts): the peer's lock files, taken in its order. A
// waiter waits while the holder lives; a holder killed with SIGKILL frees the store at once; a
// write touches the lock of the file written and another holder reloads that file only.
// (Many writers of both tools at once losing no record: tests/cli/peer-share.test.ts.)
import test from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { LOCK_ORDER, lockPaths, StoreLocks, WRITE, READ } from '../../lib/lock.ts';
import { tempDir } from '../fixtures/fs.ts';

const LOCK_TS = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'lib', 'lock.ts');

/** A process that takes the store's write locks, writes 'held' to stdout, and holds them until
 *  killed (or for holdMs, then writes 'done' to `marker` and touches layers.lock before releasing). */
function holder(root: string, opts: { holdMs?: number; marker?: string } = {}): Promise<ChildProcess> {
  const code = `
    const { StoreLocks, lockPaths, WRITE } = await import(${JSON.stringify(LOCK_TS)});
    const fs = await import('node:fs');
    const locks = new StoreLocks(lockPaths(${JSON.stringify(root)}, ${JSON.stringify(root + '/run')}, 'vfs'), () => {});
    await locks.with(WRITE, async () => {
      process.stdout.write('held\\n');
      await new Promise((r) => setTimeout(r, ${opts.holdMs ?? 3_600_000}));
      ${opts.marker ? `fs.writeFileSync(${JSON.stringify(opts.marker)}, 'done'); locks.written('layers');` : ''}
    });`;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    child.stdout!.setEncoding('utf8').on('data', (d: string) => d.includes('held') && resolve(child));
    child.on('exit', (c) => reject(new Error(`the holder exited (${c}) before taking the lock`)));
  });
}

test('the lock files are the peer\'s', (t) => {
  const p = lockPaths('/r', '/run', 'overlay');
  t.deepEqual(p, {
    storage: '/r/storage.lock',
    layers: '/r/overlay-layers/layers.lock',
    mountpoints: '/run/overlay-layers/mountpoints.lock',
    images: '/r/overlay-images/images.lock',
    containers: '/r/overlay-containers/containers.lock',
  });
  t.deepEqual([...LOCK_ORDER], ['storage', 'layers', 'mountpoints', 'images', 'containers']);
});

test('a waiter waits while the holder lives, then reloads only what the holder touched', async (t) => {
  const root = tempDir(t);
  const marker = path.join(root, 'marker');
  const seen: Array<Set<string>> = [];
  const locks = new StoreLocks(lockPaths(root, root + '/run', 'vfs'), (changed) => {
    seen.push(changed);
  });
  // first time: everything is read
  await locks.with(READ, () => undefined);
  t.deepEqual([...seen[0]!].sort(), ['containers', 'images', 'layers', 'mountpoints']);
  // touch all four, so the next holder's view is current
  await locks.with(WRITE, () => {
    for (const n of ['layers', 'mountpoints', 'images', 'containers'] as const) locks.written(n);
  });
  const child = await holder(root, { holdMs: 1500, marker });
  t.teardown(() => child.kill('SIGKILL'));
  let sawMarker: boolean | undefined;
  await locks.with(READ, () => {
    sawMarker = fs.existsSync(marker);
  });
  t.true(sawMarker, 'the lock was taken after the holder released it');
  t.deepEqual([...seen[2]!], ['layers'], 'only the records behind the touched lock are reloaded');
  const token = fs.readFileSync(lockPaths(root, root + '/run', 'vfs').layers);
  t.is(token.readUInt32LE(16), child.pid!, "the layers.lock token names the holder's pid");
});

test('a holder killed with SIGKILL frees the store at once', async (t) => {
  const root = tempDir(t);
  const child = await holder(root);
  const locks = new StoreLocks(lockPaths(root, root + '/run', 'vfs'), () => {});
  t.false(locks.file('layers').tryRLock(), 'the live holder excludes readers');
  const exited = new Promise((r) => child.on('exit', r));
  child.kill('SIGKILL');
  await exited;
  const t0 = Date.now();
  let took = -1;
  await locks.with(WRITE, () => {
    took = Date.now() - t0;
  });
  t.true(took >= 0 && took < 1_000, `took the locks after ${took} ms`);
});

test('writing without the exclusive lock is refused', async (t) => {
  const root = tempDir(t);
  const locks = new StoreLocks(lockPaths(root, root + '/run', 'vfs'), () => {});
  t.throws(() => locks.assertWritable('layers'), { message: /without holding its lock/ });
  await locks.with(READ, () => t.throws(() => locks.assertWritable('images'), { message: /exclusively/ }));
  await locks.with(WRITE, () => t.notThrows(() => locks.assertWritable('containers')));
});
