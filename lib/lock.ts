// The store-wide writer lock (DESIGN.md section 5): one proper-lockfile lock directory under the
// store root around every mutation. proper-lockfile refreshes the lock's mtime while it is held
// and treats a lock older than `stale` as abandoned, so a SIGKILLed holder delays the next writer
// by at most STALE_MS. In-process callers are queued first, so one process never races itself
// for the lock directory.
import lockfile from 'proper-lockfile';
import { LayersError } from './errors.ts';

/** A lock not refreshed for this long belongs to a dead process. */
const STALE_MS = 10_000;

/** Up to ~4 minutes of waiting with backoff: enough for many writers queued behind a big import. */
const RETRIES = { retries: 300, factor: 1.3, minTimeout: 5, maxTimeout: 800, randomize: true };

export class StoreLock {
  private tail: Promise<unknown> = Promise.resolve();
  private compromised: Error | undefined;
  private held = false;

  /**
   * @param lockPath the lock directory proper-lockfile creates
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

  private async locked<T>(fn: () => Promise<T>): Promise<T> {
    let release: () => Promise<void>;
    this.compromised = undefined;
    try {
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
      if (!this.compromised) await release().catch(() => undefined);
    }
  }
}
