// Record files are replaced, never rewritten in place: a reader (or a process started after a
// crash) sees the old file or the new one, whole. The temp file lives in the same directory so
// rename(2) is atomic; the directory is fsynced so the rename itself survives a power cut.
// Each step runs on libuv's thread pool (fs.promises), so the event loop runs while the disk
// syncs (docs/api.md, "Record writes and the event loop"); the caller awaits the whole chain
// before its next step, which keeps the crash ordering of lib/store/store.ts.
import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { cleanupFailed } from './errors.ts';

/**
 * A replacement for `file`, written through `fd` to a temp file in the same directory, then
 * renamed into place by commit() (fsync, rename, fsync of the directory) or dropped by abort().
 * Nothing appears at `file` before commit(); a failed commit drops the temp file too.
 */
export class AtomicFile {
  private closed = false;

  private constructor(
    readonly file: string,
    readonly tmp: string,
    private readonly fh: fs.promises.FileHandle,
  ) {}

  static async create(file: string, mode = 0o600): Promise<AtomicFile> {
    const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
    return new AtomicFile(file, tmp, await fs.promises.open(tmp, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, mode));
  }

  get fd(): number {
    return this.fh.fd;
  }

  async write(data: string | Buffer): Promise<void> {
    await this.fh.writeFile(data);
  }

  async commit(): Promise<void> {
    try {
      await this.fh.sync();
      this.closed = true;
      await this.fh.close();
      await fs.promises.rename(this.tmp, this.file);
    } catch (err) {
      await this.abort();
      throw err;
    }
    const dh = await fs.promises.open(path.dirname(this.file), fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
    try {
      await dh.sync();
    } finally {
      await dh.close();
    }
  }

  async abort(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      await this.fh.close().catch((e: unknown) => cleanupFailed(`closing ${this.tmp}`, e));
    }
    await fs.promises.rm(this.tmp, { force: true }).catch((e: unknown) => cleanupFailed(`removing ${this.tmp}`, e));
  }
}

/** Replace file with data: temp file in the same dir, write, fsync, rename, fsync of the dir. */
export async function writeFileAtomic(file: string, data: string | Buffer, mode = 0o600): Promise<void> {
  const out = await AtomicFile.create(file, mode);
  try {
    await out.write(data);
  } catch (err) {
    await out.abort();
    throw err;
  }
  await out.commit();
}

/** Write value as one line of JSON (as containers/storage does), atomically. The text is made at the call: later changes to value are not written. */
export function writeJsonAtomic(file: string, value: unknown, mode = 0o600): Promise<void> {
  return writeFileAtomic(file, JSON.stringify(value), mode);
}

/** Parse a JSON file; `missing` when it does not exist (a fresh store). */
export function readJsonFile<T>(file: string, missing: T): T {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return missing;
    throw err;
  }
  // a zero-length file holds no records (nothing was ever written to it)
  if (text.trim() === '') return missing;
  return JSON.parse(text) as T;
}
