// SIGINT/SIGTERM during a long store-changing command (docs/cli.md, "Signals"): the native loops
// stop before their next file, the operation fails through its normal path, so when the process
// has ended the half-made layer is gone (record and directory: nothing for the next command to
// repair), the locks are free, and the process ended by the signal (a shell sees 128+n).
import test from 'ava';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { LockFile } from '../../lib/lockfile.ts';
import { END_OF_ARCHIVE, encodeHeader, padding } from '../../lib/tar/header.ts';
import { loopFs } from '../fixtures/fs.ts';
import { BIN, gnuTar, tempStore, type TempStore } from '../fixtures/store.ts';
import { makeBulkTree } from '../fixtures/tree.ts';

// serial: building a big tar blocks this process's event loop for seconds, and a concurrent
// test's polling would then miss the other's import altogether
/** Enough small files that applying or copying them takes seconds: the signal comes in the middle. */
const FILES = 60000;

function bigTar(s: TempStore): string {
  const tree = path.join(s.dir, 'tree');
  makeBulkTree(tree, FILES, FILES * 64);
  const tar = gnuTar(tree, path.join(s.dir, 'big.tar'));
  fs.rmSync(tree, { recursive: true });
  return tar;
}

const layerDir = (s: TempStore, id: string) => path.join(s.root, 'vfs', 'dir', id);

/**
 * Start `layers ARGS`, wait until it is writing files into a new (incomplete) layer, send
 * `signal`, and resolve with how the process ended and the id of the layer it was making.
 */
async function interrupt(
  s: TempStore,
  args: string[],
  signal: NodeJS.Signals,
  waitForFiles: boolean | ((layerDir: string) => boolean) = true,
): Promise<{ status: number; stderr: string; id: string }> {
  const ready = typeof waitForFiles === 'function' ? waitForFiles : (dir: string) => !waitForFiles || fs.existsSync(path.join(dir, 'd0'));
  const child = spawn(process.execPath, [BIN, '-g', s.root, '-R', s.runroot, '-s', 'vfs', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (d) => (stderr += d));
  const ended = new Promise<number>((resolve) =>
    child.on('close', (code, sig) => resolve(code ?? 128 + os.constants.signals[sig as NodeJS.Signals])),
  );
  let exited = false;
  void ended.then(() => (exited = true));
  let id: string | undefined;
  // the layer's first directory of files (d0) exists: its data is being written (or, without
  // waitForFiles, its record is: the cancel flag stays set, so the first file the native loop
  // reaches stops it; an apply of a fast machine's tar may finish before d0 is seen)
  while (!exited && !(id !== undefined && ready(layerDir(s, id)))) {
    await new Promise((r) => setTimeout(r, 5));
    try {
      id = (s.records() as Array<{ id: string; flags?: { incomplete?: boolean } }>).find((r) => r.flags?.incomplete)?.id;
    } catch {
      // layers.json not there yet, or being replaced
    }
  }
  if (!exited) child.kill(signal);
  return { status: await ended, stderr, id: id ?? '' };
}

/** The store's layer lock is free now: taken without waiting, then given back. */
function layersLockFree(s: TempStore): boolean {
  const lock = LockFile.get(path.join(s.root, 'vfs-layers', 'layers.lock'));
  if (!lock.tryLock()) return false;
  lock.unlock();
  return true;
}

test.serial('SIGTERM during import-layer of a big tar: the import stops, no layer is left (record or files), the lock is free, exit 143', async (t) => {
  const s = tempStore(t);
  const tar = bigTar(s);
  const r = await interrupt(s, ['import-layer', '-f', tar], 'SIGTERM', false);
  t.is(r.status, 143, r.stderr);
  t.regex(r.stderr, /ECANCELED/); // stopped by the cancel flag, not ended half-way by the signal
  t.not(r.id, '');
  // before any other command: nothing half-made for the next one to repair
  t.deepEqual(s.records(), []);
  t.false(fs.existsSync(layerDir(s, r.id)));
  t.true(layersLockFree(s));
  const l = await s.cli(['layers']);
  t.is(l.code, 0, l.stderr);
  t.is(l.stdout, '');
});

test.serial('SIGINT during create-layer of a child of a big layer (a tree copy): the copy stops, the child is gone, the parent intact, exit 130', async (t) => {
  const s = tempStore(t);
  const base = await s.cli(['import-layer', '-n', 'base', '-f', bigTar(s)]);
  t.is(base.code, 0, base.stderr);
  const baseId = base.stdout.slice(0, 64);
  const r = await interrupt(s, ['create-layer', baseId], 'SIGINT');
  t.is(r.status, 130, r.stderr);
  t.regex(r.stderr, /ECANCELED/);
  t.not(r.id, '');
  t.deepEqual(
    s.records().map((rec) => [rec.id, (rec.flags as { incomplete?: boolean } | undefined)?.incomplete]),
    [[baseId, undefined]],
  );
  t.false(fs.existsSync(layerDir(s, r.id)));
  t.true(layersLockFree(s));
  t.is(fs.readdirSync(layerDir(s, baseId)).length, Math.ceil(FILES / 500));
  const l = await s.cli(['layers', '-q']);
  t.is(l.stdout, `${baseId}\n`);
});

test.serial('SIGTERM while a zstd input is decompressed (before any tar is read): libzstd stops at its next chunk, no layer is left, exit 143', async (t) => {
  const s = tempStore(t);
  // 2 GiB of zeros, ~200 KiB compressed: its decompression into the store's temp file takes
  // seconds, and it starts after the (incomplete) layer record is written
  const zst = path.join(s.dir, 'zeros.zst');
  execFileSync('sh', ['-c', 'head -c 2G /dev/zero | zstd -q -1 -c > "$1"', 'sh', zst]);
  const r = await interrupt(s, ['import-layer', '-f', zst], 'SIGTERM', false);
  t.is(r.status, 143, r.stderr);
  // the native decompression loop stopped (not the tar apply after it)
  t.regex(r.stderr, /zeros\.zst: decompressing it \(zstd\).*ECANCELED/);
  t.not(r.id, '');
  t.deepEqual(s.records(), []);
  t.false(fs.existsSync(layerDir(s, r.id)));
  t.true(layersLockFree(s));
});

/** a tar on the store's filesystem: 'big' (1 GiB of data, no holes), then 'small' */
function bigBodyTar(s: TempStore): string {
  const BIG = 1 << 30;
  const tar = path.join(s.dir, 'big-body.tar');
  const fd = fs.openSync(tar, 'w');
  try {
    const mtime = { sec: 1600000000, nsec: 0 };
    fs.writeSync(fd, encodeHeader({ name: 'big', type: 'file', mode: 0o644, uid: 0, gid: 0, size: BIG, mtime }));
    const chunk = Buffer.alloc(1 << 20, 'layers ');
    for (let n = 0; n < BIG; n += chunk.length) fs.writeSync(fd, chunk);
    fs.writeSync(fd, Buffer.concat([encodeHeader({ name: 'small', type: 'file', mode: 0o644, uid: 0, gid: 0, size: 5, mtime }), Buffer.from('small'), Buffer.alloc(padding(5)), END_OF_ARCHIVE]));
  } finally {
    fs.closeSync(fd);
  }
  return tar;
}

/** the layer's 'big' has 64 MiB or more of its 1 GiB: its body copy is under way */
const copying = (dir: string) => {
  try {
    return fs.statSync(path.join(dir, 'big')).size >= 64 << 20;
  } catch {
    return false;
  }
};

test.serial('SIGTERM inside the body copy of a 1 GiB file: the copy stops at its next chunk (the error names that file, not the next), no layer is left, the lock is free', async (t) => {
  // on a loop fs of its own: a copy that did not stop would fill it, not the machine's disk
  const s = tempStore(t, loopFs(t, 'ext4', 3 * 2 ** 30));
  const tar = bigBodyTar(s);
  const r = await interrupt(s, ['import-layer', '-f', tar], 'SIGTERM', copying);
  t.is(r.status, 143, r.stderr);
  t.regex(r.stderr, /ECANCELED.*'big'/);
  t.not(r.id, '');
  t.deepEqual(s.records(), []);
  t.false(fs.existsSync(layerDir(s, r.id)));
  t.true(layersLockFree(s));
});

test.serial('SIGINT inside the copy of a 1 GiB file into a child layer: the copy stops at its next chunk, the child is gone, the parent intact', async (t) => {
  const s = tempStore(t, loopFs(t, 'ext4', 4 * 2 ** 30));
  const tar = bigBodyTar(s);
  const base = await s.cli(['import-layer', '-f', tar]);
  t.is(base.code, 0, base.stderr);
  fs.rmSync(tar);
  const baseId = base.stdout.slice(0, 64);
  const r = await interrupt(s, ['create-layer', baseId], 'SIGINT', copying);
  t.is(r.status, 130, r.stderr);
  t.regex(r.stderr, /ECANCELED.*'big'/);
  t.deepEqual(s.records().map((rec) => rec.id), [baseId]);
  t.false(fs.existsSync(layerDir(s, r.id)));
  t.true(layersLockFree(s));
  t.is(fs.statSync(path.join(layerDir(s, baseId), 'big')).size, 1 << 30);
});
