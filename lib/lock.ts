// The store-wide writer lock (docs/on-disk-format.md, "Writes, locking and recovery"): one proper-lockfile lock directory under the
// store root around every mutation, with a kernel lock beside it that says whether its holder
// is alive.
//
// proper-lockfile alone knows a holder is dead only when the directory's mtime stops being
// refreshed (STALE_MS), so every writer after a SIGKILL waited that long. Each holder therefore
// also holds flock(2) on `<lock>.holder` for as long as it holds the directory, taking the flock
// first. The kernel drops a flock when its holder dies, so a process that gets the flock knows
// that no live process holds the directory: if it is there, a dead holder left it, and it is
// removed at once. proper-lockfile still takes the directory, refreshes it while held and
// reports a lock lost while held (the directory removed or replaced under us).
// In-process callers are queued first, so one process never races itself for either lock.
import fs from 'node:fs';
import lockfile from 'proper-lockfile';
import { cleanupFailed, LayersError } from './errors.ts';
import { AddonMissingError, native } from './native.ts';

/** A lock directory not refreshed for this long belongs to a dead process (the fallback rule). */
const STALE_MS = 10_000;

/** Up to ~4 minutes of waiting with backoff: enough for many writers queued behind a big import. */
const RETRIES = { retries: 300, factor: 1.3, minTimeout: 5, maxTimeout: 800, randomize: true };

/** How long to wait for the holder flock, in all: the same budget as the directory's retries. */
const HOLDER_WAIT_MS = 4 * 60_000;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export class StoreLock {
  private tail: Promise<unknown> = Promise.resolve();
  private compromised: Error | undefined;
  private held = false;

  /**
   * @param lockPath the lock directory proper-lockfile creates; the holder file is lockPath + '.holder'
   * @param reload called each time the lock is taken, before fn: another process may have
   *   changed the records since we last read them
   */
  constructor(
    readonly lockPath: string,
    private readonly reload: () => void | Promise<void>,
  ) {}

  /** Run fn holding the lock (queued behind this process's other holders). */
  withLock<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.tail.then(() => this.locked(fn));
    this.tail = run.catch(() => undefined);
    return run;
  }

  /** Throws when the lock was lost while held: records must not be written then. */
  assertHeld(): void {
    if (this.compromised)
      throw new LayersError('ELOCK', `lost the store lock ${this.lockPath} while holding it: ${this.compromised.message}`, {
        cause: this.compromised,
      });
    if (!this.held) throw new LayersError('ELOCK', `writing the store without holding its lock ${this.lockPath}`);
  }

  /** Take the holder flock (waiting with backoff while a live process has it); returns its fd,
   *  whose closing releases it. Our pid is written in the file, for the message of a waiter. */
  private async takeHolder(): Promise<number> {
    const file = this.lockPath + '.holder';
    let fd: number;
    try {
      fd = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o600);
    } catch (err) {
      throw new LayersError('ELOCK', `cannot open the store lock ${file}: ${(err as Error).message}`, { cause: err });
    }
    try {
      const deadline = Date.now() + HOLDER_WAIT_MS;
      for (let delay = RETRIES.minTimeout; !native().tryLockExclusive(fd); delay = Math.min(delay * RETRIES.factor, RETRIES.maxTimeout)) {
        if (Date.now() > deadline) {
          const holder = fs.readFileSync(file, 'utf8').trim();
          throw new LayersError('ELOCK', `the store lock ${file} is still held${holder ? ` by process ${holder}` : ''} after ${HOLDER_WAIT_MS / 1000} s`);
        }
        await sleep(delay * (1 + Math.random()));
      }
      fs.ftruncateSync(fd, 0);
      fs.writeSync(fd, `${process.pid}\n`, 0);
      return fd;
    } catch (err) {
      fs.closeSync(fd);
      if (err instanceof LayersError || err instanceof AddonMissingError) throw err;
      throw new LayersError('ELOCK', `cannot lock ${file}: ${(err as Error).message}`, { cause: err });
    }
  }

  private async locked<T>(fn: () => Promise<T>): Promise<T> {
    let release: () => Promise<void>;
    this.compromised = undefined;
    const holder = await this.takeHolder();
    try {
      // holding the flock, no live holder of ours has the directory: one left there is a dead one's
      fs.rmSync(this.lockPath, { recursive: true, force: true });
      release = await lockfile.lock(this.lockPath, {
        realpath: false,
        lockfilePath: this.lockPath,
        stale: STALE_MS,
        retries: RETRIES,
        // the default handler throws from a timer and kills the process; record it instead, so
        // the operation fails with an error at its next write and when it ends
        onCompromised: (err) => {
          this.compromised = err;
        },
      });
    } catch (err) {
      fs.closeSync(holder);
      if (err instanceof LayersError || err instanceof AddonMissingError) throw err;
      throw new LayersError('ELOCK', `cannot take the store lock ${this.lockPath}: ${(err as Error).message}`, { cause: err });
    }
    this.held = true;
    try {
      await this.reload();
      const result = await fn();
      this.assertHeld();
      return result;
    } finally {
      this.held = false;
      if (!this.compromised) await release().catch((e) => cleanupFailed(`releasing the store lock ${this.lockPath}`, e));
      fs.closeSync(holder);
    }
  }
}
