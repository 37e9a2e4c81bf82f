// containers/storage's lock file protocol (lib/lockfile.ts, docs/sharing.md "Locks"): our locks
// exclude our other processes, POSIX record locks (python3's fcntl.lockf) and the real peer
// binary, both ways; a SIGKILLed holder frees the lock at once; the last-writer token one side
// writes is seen as a modification by the other.
import test, { type ExecutionContext } from 'ava';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { LAST_WRITER_SIZE, LockFile, LockUsageError, newLastWriterToken } from '../../lib/lockfile.ts';
import { tempDir } from '../fixtures/fs.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const AGENT = path.join(here, 'lock-agent.ts');
const PEER = '/usr/bin/containers-storage';

/** A line-per-command process (ours, or python3 holding a POSIX lock), killed when the test ends. */
class Agent {
  private readonly lines: string[] = [];
  private readonly waiters: Array<(line: string) => void> = [];
  readonly exited: Promise<number | null>;
  constructor(
    t: ExecutionContext,
    readonly child: ChildProcess,
  ) {
    t.teardown(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    });
    readline.createInterface({ input: child.stdout! }).on('line', (line) => {
      const w = this.waiters.shift();
      if (w) w(line);
      else this.lines.push(line);
    });
    this.exited = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
  }
  next(): Promise<string> {
    const line = this.lines.shift();
    if (line !== undefined) return Promise.resolve(line);
    return new Promise((resolve, reject) => {
      this.waiters.push(resolve);
      void this.exited.then((code) => reject(new Error(`agent exited (${code}) before answering`)));
    });
  }
  async ask(cmd: string): Promise<string> {
    this.child.stdin!.write(`${cmd}\n`);
    return this.next();
  }
}

/** Another process of ours with a LockFile on file (tests/locks/lock-agent.ts). */
function ourAgent(t: ExecutionContext, file: string): Agent {
  return new Agent(t, spawn(process.execPath, ['--import', 'tsx', AGENT, file], { stdio: ['pipe', 'pipe', 'inherit'] }));
}

/** python3 holding a POSIX record lock (fcntl.lockf, i.e. F_SETLKW) on file until its stdin
 *  closes or says anything; prints "held" once it has it. */
function pythonHolder(t: ExecutionContext, file: string, mode: 'ex' | 'sh'): Agent {
  const code = `
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.lockf(fd, fcntl.LOCK_EX if sys.argv[2] == 'ex' else fcntl.LOCK_SH)
print('held', flush=True)
sys.stdin.readline()
`;
  return new Agent(t, spawn('python3', ['-c', code, file, mode], { stdio: ['pipe', 'pipe', 'inherit'] }));
}

/** Whether python3 could take a POSIX lock of this kind on file right now (F_SETLK). */
function pythonCanLock(file: string, mode: 'ex' | 'sh'): boolean {
  const code = `
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
try:
    fcntl.lockf(fd, (fcntl.LOCK_EX if sys.argv[2] == 'ex' else fcntl.LOCK_SH) | fcntl.LOCK_NB)
except OSError:
    print('false')
else:
    print('true')
`;
  const out = spawnSync('python3', ['-c', code, file, mode], { encoding: 'utf8' });
  if (out.status !== 0) throw new Error(`python3 failed: ${out.stderr}`);
  return out.stdout.trim() === 'true';
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Resolves to how many ms p took; rejects if it takes longer than limitMs. */
async function timed(p: Promise<unknown>, limitMs = 20_000): Promise<number> {
  const t0 = Date.now();
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([p, new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`still waiting after ${limitMs} ms`)), limitMs)))]);
  clearTimeout(timer);
  return Date.now() - t0;
}

test('the last-writer token is laid out as the peer writes it: 64 bytes, time, counter, pid, random', (t) => {
  const before = BigInt(Date.now()) * 1_000_000n;
  const a = newLastWriterToken();
  const b = newLastWriterToken();
  const after = BigInt(Date.now() + 1) * 1_000_000n;
  t.is(a.length, LAST_WRITER_SIZE);
  t.is(LAST_WRITER_SIZE, 64);
  const ns = a.readBigUInt64LE(0);
  t.true(ns >= before && ns <= after, `time field ${ns} between ${before} and ${after}`);
  t.is(b.readBigUInt64LE(8), a.readBigUInt64LE(8) + 1n, 'the counter goes up by one');
  t.is(a.readUInt32LE(16), process.pid);
  t.false(a.subarray(20).equals(b.subarray(20)), 'the random tails differ');
});

test('in one process: readers share and count, a writer waits for the last reader, misuse throws', async (t) => {
  const file = path.join(tempDir(t), 'sub', 'a.lock');
  const lock = LockFile.get(file);
  t.is(LockFile.get(file), lock, 'one LockFile per path');
  t.true(fs.existsSync(file), 'the file and its directory are made');
  t.is(fs.statSync(path.dirname(file)).mode & 0o777, 0o700);
  t.throws(() => LockFile.get(file, { readOnly: true }), { instanceOf: LockUsageError });
  t.throws(() => lock.unlock(), { instanceOf: LockUsageError });
  t.throws(() => lock.modified(), { instanceOf: LockUsageError });

  await lock.rLock();
  await lock.rLock();
  t.true(lock.held);
  t.false(lock.locked, 'held for reading only');
  t.throws(() => lock.touch(), { instanceOf: LockUsageError });
  t.false(lock.tryLock(), 'a writer cannot join readers');
  t.false(pythonCanLock(file, 'ex'), 'another process cannot write-lock it');
  t.true(pythonCanLock(file, 'sh'), 'another process can read-lock it');

  let writerIn = false;
  const writer = lock.lock().then(() => {
    writerIn = true;
  });
  lock.unlock();
  await sleep(50);
  t.false(writerIn, 'one reader still holds it');
  t.false(pythonCanLock(file, 'ex'), 'the kernel lock stays while one reader remains');
  lock.unlock();
  await timed(writer, 5_000);
  t.true(lock.locked);
  t.false(lock.tryRLock(), 'a reader cannot join a writer');
  t.false(pythonCanLock(file, 'sh'));
  lock.unlock();
  t.true(pythonCanLock(file, 'ex'), 'the last unlock releases the kernel lock');
});

test('two of our processes exclude each other, and a SIGKILLed holder frees the lock at once', async (t) => {
  const file = path.join(tempDir(t), 'layers.lock');
  const lock = LockFile.get(file);
  const other = ourAgent(t, file);

  t.is(await other.ask('lock'), 'ok');
  t.false(lock.tryLock());
  t.false(lock.tryRLock());
  // our blocking lock waits on a worker thread: the event loop (and this test) keeps running
  let ours = false;
  const waiting = lock.lock().then(() => {
    ours = true;
  });
  await sleep(300);
  t.false(ours, 'still waiting while the other process holds it');
  t.is(await other.ask('unlock'), 'ok');
  await timed(waiting, 10_000);
  t.true(lock.locked);
  t.is(await other.ask('tryrlock'), 'false');
  lock.unlock();

  // shared with a reader elsewhere, exclusive against it
  t.is(await other.ask('rlock'), 'ok');
  t.true(lock.tryRLock());
  lock.unlock();
  t.false(lock.tryLock());

  // the holder dies: the kernel drops its lock with its last fd
  t.is(await other.ask('unlock'), 'ok');
  t.is(await other.ask('lock'), 'ok');
  t.false(lock.tryLock());
  other.child.kill('SIGKILL');
  await other.exited;
  t.true(lock.tryLock(), 'taken at once after the holder was killed');
  lock.unlock();
});

test('our locks and POSIX record locks (python3 fcntl.lockf) exclude each other, both ways', async (t) => {
  const file = path.join(tempDir(t), 'images.lock');
  const lock = LockFile.get(file);

  const ex = pythonHolder(t, file, 'ex');
  t.is(await ex.next(), 'held');
  t.false(lock.tryRLock());
  t.false(lock.tryLock());
  let ours = false;
  const waiting = lock.lock().then(() => {
    ours = true;
  });
  await sleep(300);
  t.false(ours, 'waiting while python holds its POSIX lock');
  ex.child.stdin!.end('go\n');
  await timed(waiting, 10_000);
  t.true(lock.locked);
  t.false(pythonCanLock(file, 'sh'), 'python cannot read-lock while we hold the write lock');
  t.false(pythonCanLock(file, 'ex'));

  // an OFD lock belongs to its open file description: closing another fd of the file in this
  // process leaves it (a POSIX lock would vanish here)
  fs.closeSync(fs.openSync(file, 'r'));
  t.false(pythonCanLock(file, 'ex'), 'still held after another fd of the file was closed');
  lock.unlock();
  t.true(pythonCanLock(file, 'ex'));

  const sh = pythonHolder(t, file, 'sh');
  t.is(await sh.next(), 'held');
  t.true(lock.tryRLock(), 'read locks are shared across the two kinds');
  lock.unlock();
  t.false(lock.tryLock());
  sh.child.stdin!.end('go\n');
  await sh.exited;
  t.true(lock.tryLock());
  lock.unlock();
});

test('a token written by one process is "modified" for the other, and only once', async (t) => {
  const file = path.join(tempDir(t), 'containers.lock');
  const lock = LockFile.get(file);
  const other = ourAgent(t, file);

  await lock.rLock();
  t.true(lock.modified(), 'an empty (never touched) file counts as modified');
  lock.unlock();

  t.is(await other.ask('lock'), 'ok');
  t.is(await other.ask('touch'), 'ok');
  const written = await other.ask('token');
  t.is(await other.ask('unlock'), 'ok');
  t.is(fs.readFileSync(file).toString('hex'), written, 'the file holds exactly the 64-byte token');

  await lock.rLock();
  t.true(lock.modified(), 'the other process wrote');
  t.is(lock.lastWriterToken.toString('hex'), written);
  t.false(lock.modified(), 'nothing new since');
  lock.unlock();

  // and the other way: we write, the other process sees it
  t.is(await other.ask('rlock'), 'ok');
  t.is(await other.ask('modified'), 'false', 'it saw its own token last');
  t.is(await other.ask('unlock'), 'ok');
  await lock.lock();
  lock.touch();
  t.false(lock.modified(), 'our own write is not a modification for us');
  lock.unlock();
  t.is(await other.ask('rlock'), 'ok');
  t.is(await other.ask('modified'), 'true');
  t.is(await other.ask('token'), lock.lastWriterToken.toString('hex'));
  t.is(await other.ask('unlock'), 'ok');
});

/** The peer's arguments for a vfs store in dir. */
function peerArgs(dir: string, ...args: string[]): string[] {
  return ['--graph', path.join(dir, 'graph'), '--run', path.join(dir, 'run'), '--storage-driver', 'vfs', ...args];
}

test('the peer binary and our locks exclude each other, both ways', async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'graph', 'vfs-layers', 'layers.lock');
  t.is(spawnSync(PEER, peerArgs(dir, 'layers')).status, 0, 'the peer made the store');
  const lock = LockFile.get(file);

  // the peer holds layers.lock (POSIX, exclusive) while import-layer reads its tar from a pipe
  const peer = spawn(PEER, peerArgs(dir, 'import-layer'), { stdio: ['pipe', 'pipe', 'inherit'] });
  t.teardown(() => {
    if (peer.exitCode === null) peer.kill('SIGKILL');
  });
  const peerExit = new Promise<number>((resolve) => peer.on('exit', (code) => resolve(code ?? -1)));
  let peerDone = false;
  void peerExit.then(() => (peerDone = true));
  const deadline = Date.now() + 10_000;
  while (lock.tryRLock()) {
    lock.unlock();
    if (Date.now() > deadline) t.fail('the peer never took layers.lock');
    await sleep(20);
  }
  t.false(lock.tryLock(), 'the peer holds it');
  const waiting = lock.lock();
  await sleep(300);
  peer.stdin!.end(Buffer.alloc(1024)); // an empty tar: the peer finishes and releases
  await timed(waiting, 10_000);
  t.true(lock.locked);
  t.is(await peerExit, 0);
  lock.unlock();

  // we hold layers.lock: the peer's create-layer waits for it
  await lock.lock();
  const creating = spawn(PEER, peerArgs(dir, 'create-layer'), { stdio: ['ignore', 'pipe', 'inherit'] });
  let created = '';
  creating.stdout!.setEncoding('utf8').on('data', (d: string) => (created += d));
  const createExit = new Promise<number>((resolve) => creating.on('exit', (code) => resolve(code ?? -1)));
  let createDone = false;
  void createExit.then(() => (createDone = true));
  t.teardown(() => {
    if (creating.exitCode === null) creating.kill('SIGKILL');
  });
  await sleep(1500);
  t.false(createDone, 'the peer is still waiting for our lock');
  lock.unlock();
  t.is(await createExit, 0);
  const id = created.trim();
  t.regex(id, /^[0-9a-f]{64}$/);
  const layers = JSON.parse(fs.readFileSync(path.join(dir, 'graph', 'vfs-layers', 'layers.json'), 'utf8')) as Array<{ id: string }>;
  t.true(layers.some((l) => l.id === id));
  t.true(peerDone);
});

test('a token the peer writes (create-layer) is a modification for our LockFile', async (t) => {
  const dir = tempDir(t);
  t.is(spawnSync(PEER, peerArgs(dir, 'layers')).status, 0);
  const file = path.join(dir, 'graph', 'vfs-layers', 'layers.lock');
  const lock = LockFile.get(file);
  await lock.rLock();
  t.is(fs.statSync(file).size, 0, 'the peer made the lock file but has not written a token yet');
  t.true(lock.modified());
  t.true(lock.modified(), 'an empty file stays "modified", as in the peer');
  lock.unlock();

  t.is(spawnSync(PEER, peerArgs(dir, 'create-layer')).status, 0);
  await lock.rLock();
  t.true(lock.modified());
  t.false(lock.modified(), 'nothing written since we looked');
  lock.unlock();

  const run = spawnSync(PEER, peerArgs(dir, 'create-layer'), { encoding: 'utf8' });
  t.is(run.status, 0, run.stderr);
  await lock.rLock();
  t.true(lock.modified(), 'the peer wrote a new token');
  const token = lock.lastWriterToken;
  t.is(token.length, 64);
  t.is(token.readUInt32LE(16), run.pid, 'the token carries the peer process id');
  t.deepEqual(fs.readFileSync(file).subarray(0, 64), token);
  t.false(lock.modified());
  lock.unlock();

  // our token is what the next peer reader compares against: 64 bytes at offset 0, and the
  // peer goes on reading the store
  await lock.lock();
  lock.touch();
  lock.unlock();
  t.is(fs.statSync(file).size, 64);
  const again = spawnSync(PEER, peerArgs(dir, 'layers'), { encoding: 'utf8' });
  t.is(again.status, 0, again.stderr);
  t.true(again.stdout.includes(run.stdout.trim()), 'the peer still reads the store after our touch');
});

test('a read-only lock file (additional image stores) takes only read locks', async (t) => {
  const file = path.join(tempDir(t), 'ro', 'layers.lock');
  fs.mkdirSync(path.dirname(file));
  fs.writeFileSync(file, '');
  fs.chmodSync(file, 0o444);
  const ro = LockFile.get(file, { readOnly: true });
  t.true(ro.readOnly);
  await t.throwsAsync(ro.lock(), { instanceOf: LockUsageError });
  t.throws(() => ro.tryLock(), { instanceOf: LockUsageError });
  await ro.rLock();
  t.false(pythonCanLock(file, 'ex'));
  t.true(ro.modified());
  ro.unlock();
});
