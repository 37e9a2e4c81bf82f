// containers/storage's lock file protocol (pkg/lockfile, v1.43), so that `layers` and the peer
// (containers-storage, podman, skopeo, buildah) can share one store (docs/sharing.md, "Locks").
//
// A lock file is an ordinary file. Holding it means holding a whole-file fcntl record lock on it:
// shared for readers, exclusive for writers. Its first 64 bytes are a "last writer" token: a
// writer that changed what the lock protects writes a fresh token (touch()); a reader compares the
// token with the last one it saw (modified()) to know whether to reload.
//
// The peer takes POSIX record locks (F_SETLKW). We take open-file-description locks (F_OFD_*),
// which conflict with those, and which, unlike POSIX locks, are not dropped when any other fd of
// the same file is closed somewhere in the process (a POSIX lock is, which would silently unlock
// a store when some unrelated code opens and closes layers.lock).
//
// Within one process, as in the peer, one LockFile per path (LockFile.get) counts its holders:
// the kernel lock is taken by the first and released (its fd closed) by the last. Readers share
// the in-process lock, writers are serialized by it, so the kernel lock is only taken when no
// other holder in the process has it.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { LayersError } from './errors.ts';
import { native } from './native.ts';

/** The token's size: the peer compares exactly this many bytes (lastWriterIDSize). */
export const LAST_WRITER_SIZE = 64;

let tokenCounter = 0n;

/**
 * A new last-writer token, laid out as the peer's newLastWriterID(): bytes 0-8 the time in
 * nanoseconds since the epoch, 8-16 a per-process counter, 16-20 the pid (all little-endian),
 * 20-64 random. Only its difference from every other token matters; the layout is kept so a
 * reader of a lock file can tell who wrote it.
 */
export function newLastWriterToken(): Buffer {
  const token = Buffer.alloc(LAST_WRITER_SIZE);
  const nowNs = BigInt(Date.now()) * 1_000_000n + (process.hrtime.bigint() % 1_000_000n);
  tokenCounter += 1n;
  token.writeBigUInt64LE(BigInt.asUintN(64, nowNs), 0);
  token.writeBigUInt64LE(BigInt.asUintN(64, tokenCounter), 8);
  token.writeUInt32LE(process.pid >>> 0, 16);
  crypto.randomFillSync(token, 20, LAST_WRITER_SIZE - 20);
  return token;
}

/** Misuse of a lock (the peer panics in these cases): unlocking one not held, touching without
 *  the write lock, asking for a path read-only that is open read-write. Code 'ELOCK'. */
export class LockUsageError extends LayersError {
  constructor(message: string) {
    super('ELOCK', message);
    this.name = 'LockUsageError';
  }
}

type Waiter = { write: boolean; grant: () => void };

/** The in-process reader/writer lock (the peer's rwMutex): FIFO, so a waiting writer is not starved by readers. */
class ProcessRwLock {
  private readers = 0;
  private writer = false;
  private readonly queue: Waiter[] = [];

  acquire(write: boolean): Promise<void> {
    if (this.tryAcquire(write)) return Promise.resolve();
    return new Promise((resolve) => this.queue.push({ write, grant: resolve }));
  }

  /** Taken at once or not at all; never jumps a queued waiter. */
  tryAcquire(write: boolean): boolean {
    if (this.queue.length > 0 || this.writer || (write && this.readers > 0)) return false;
    if (write) this.writer = true;
    else this.readers += 1;
    return true;
  }

  release(write: boolean): void {
    if (write) this.writer = false;
    else this.readers -= 1;
    while (this.queue.length > 0 && !this.writer) {
      const next = this.queue[0]!;
      if (next.write && this.readers > 0) break;
      this.queue.shift();
      if (next.write) this.writer = true;
      else this.readers += 1;
      next.grant();
      if (next.write) break;
    }
  }
}

const registry = new Map<string, LockFile>();

/**
 * Whether this process holds a write lock and waits for no other: an operation may be changing a
 * store, and a signal should let it unwind rather than end the process (docs/cli.md, "Signals").
 */
export function writingUnderLock(): boolean {
  const locks = [...registry.values()];
  return locks.some((l) => l.locked) && !locks.some((l) => l.waiting);
}

/** Opens the lock file as the peer's openLock() does: created 0644, its directory made (0700) if missing. */
function openLockFile(file: string, readOnly: boolean): number {
  const flags = (readOnly ? fs.constants.O_RDONLY : fs.constants.O_RDWR) | fs.constants.O_CREAT;
  try {
    return fs.openSync(file, flags, 0o644); // libuv adds O_CLOEXEC
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    return fs.openSync(file, flags, 0o644);
  }
}

export class LockFile {
  /** the fd whose open file description holds the kernel lock, while any in-process holder has it */
  private fd: number | undefined;
  /** the kernel lock being taken for the first holder; later readers wait for it instead of taking their own */
  private acquiring: Promise<void> | undefined;
  private counter = 0;
  private lockType: 'r' | 'w' = 'r';
  private readonly rw = new ProcessRwLock();
  /** the last-writer token as of our last touch() or modified(); starts as a fresh one, so the first modified() says true */
  private lastWriter: Buffer = newLastWriterToken();

  private constructor(
    /** absolute path of the lock file */
    readonly path: string,
    /** opened O_RDONLY and only ever read-locked (the peer's GetROLockfile, for additional image stores) */
    readonly readOnly: boolean,
  ) {}

  /**
   * The process's one LockFile for path (the peer's GetLockfile / GetROLockfile): the file is
   * created (and its directory) if missing. Asking for a path again returns the same object, which
   * may be held already; asking for it read-only when it was opened read-write, or the reverse, throws.
   */
  static get(file: string, opts: { readOnly?: boolean } = {}): LockFile {
    const abs = path.resolve(file);
    const readOnly = opts.readOnly ?? false;
    const known = registry.get(abs);
    if (known) {
      if (known.readOnly !== readOnly) {
        throw new LockUsageError(`lock ${JSON.stringify(abs)} is not a ${readOnly ? 'read-only' : 'read-write'} lock`);
      }
      return known;
    }
    fs.closeSync(openLockFile(abs, readOnly)); // fail here, not at the first lock, if it cannot be opened
    const lock = new LockFile(abs, readOnly);
    registry.set(abs, lock);
    return lock;
  }

  /** Exclusive: waits for in-process holders, then for other processes (on a worker thread). */
  async lock(): Promise<void> {
    if (this.readOnly) throw new LockUsageError(`can't take write lock on read-only lock file ${this.path}`);
    await this.rw.acquire(true);
    await this.hold('w', true);
  }

  /** Shared: any number of readers in this process and others; excludes every writer. */
  async rLock(): Promise<void> {
    await this.rw.acquire(false);
    await this.hold('r', false);
  }

  /** lock() without waiting: false when any holder, here or in another process, is in the way. */
  tryLock(): boolean {
    if (this.readOnly) throw new LockUsageError(`can't take write lock on read-only lock file ${this.path}`);
    return this.tryHold('w');
  }

  /** rLock() without waiting: false while a writer holds it, here or in another process. */
  tryRLock(): boolean {
    return this.tryHold('r');
  }

  /** Releases one hold; the last one closes the fd, which releases the kernel lock. */
  unlock(): void {
    if (this.counter === 0) throw new LockUsageError(`calling unlock on unlocked lock ${this.path}`);
    this.counter -= 1;
    const write = this.lockType === 'w';
    if (this.counter === 0) {
      const fd = this.fd!;
      this.fd = undefined;
      fs.closeSync(fd);
    }
    this.rw.release(write);
  }

  /** Held for writing by this process (the peer's Locked()). */
  get locked(): boolean {
    return this.counter > 0 && this.lockType === 'w';
  }

  /** The kernel lock is being waited for (on a worker thread, which nothing can interrupt). */
  get waiting(): boolean {
    return this.acquiring !== undefined;
  }

  /** Held at all by this process. */
  get held(): boolean {
    return this.counter > 0;
  }

  /** Records, for everyone sharing the lock, that we were the last writer: a fresh token at offset 0. Needs the write lock. */
  touch(): void {
    if (!this.locked) throw new LockUsageError(`attempted to update last-writer in lockfile ${this.path} without the write lock`);
    const token = newLastWriterToken();
    const n = fs.writeSync(this.fd!, token, 0, token.length, 0);
    if (n !== token.length) {
      throw new LayersError('ENOSPC', `short write of the last-writer token to ${this.path}`);
    }
    this.lastWriter = token;
  }

  /**
   * Whether someone else wrote since our last touch() or modified() (and then remembers the token
   * read). Needs the lock (either kind). A file shorter than a token (new, or written by a tool
   * that never touched it) counts as modified, as in the peer.
   */
  modified(): boolean {
    if (this.counter === 0) throw new LockUsageError(`attempted to check last-writer in lockfile ${this.path} without locking it first`);
    const current = Buffer.alloc(LAST_WRITER_SIZE);
    const n = fs.readSync(this.fd!, current, 0, current.length, 0);
    if (n !== current.length) return true;
    const changed = !current.equals(this.lastWriter);
    this.lastWriter = current;
    return changed;
  }

  /** Whether the file's mtime is after `when` (the peer's TouchedSince(), used on storage.lock). Needs the lock. */
  touchedSince(when: Date): boolean {
    if (this.counter === 0) throw new LockUsageError(`attempted to stat lockfile ${this.path} without locking it first`);
    try {
      const st = fs.fstatSync(this.fd!, { bigint: true });
      return BigInt(when.getTime()) * 1_000_000n < st.mtimeNs;
    } catch {
      return true;
    }
  }

  /** The token as of our last touch() or modified(). */
  get lastWriterToken(): Buffer {
    return Buffer.from(this.lastWriter);
  }

  private async hold(type: 'r' | 'w', write: boolean): Promise<void> {
    try {
      if (this.fd === undefined) {
        // The first holder takes the kernel lock; readers arriving meanwhile wait for that same lock.
        this.acquiring ??= this.takeKernelLock(type).finally(() => {
          this.acquiring = undefined;
        });
        await this.acquiring;
      }
    } catch (err) {
      this.rw.release(write);
      throw err;
    }
    this.lockType = type;
    this.counter += 1;
  }

  private async takeKernelLock(type: 'r' | 'w'): Promise<void> {
    const fd = openLockFile(this.path, this.readOnly);
    try {
      await native().ofdLock(fd, type);
    } catch (err) {
      fs.closeSync(fd);
      throw err;
    }
    this.fd = fd;
  }

  private tryHold(type: 'r' | 'w'): boolean {
    const write = type === 'w';
    if (!this.rw.tryAcquire(write)) return false;
    if (this.fd === undefined) {
      if (this.acquiring) {
        this.rw.release(write); // a reader is still waiting for the kernel lock
        return false;
      }
      const fd = openLockFile(this.path, this.readOnly);
      let taken = false;
      try {
        taken = native().ofdTryLock(fd, type);
      } finally {
        if (!taken) {
          fs.closeSync(fd);
          this.rw.release(write);
        }
      }
      if (!taken) return false;
      this.fd = fd;
    }
    this.lockType = type;
    this.counter += 1;
    return true;
  }
}
