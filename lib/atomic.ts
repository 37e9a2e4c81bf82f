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

/** Replace file with data: temp file in the same dir, write, fsync, rename, fsync of the dir. */
export async function writeFileAtomic(file: string, data: string | Buffer, mode = 0o600): Promise<void> {
  const dir = path.dirname(file);
  const tmp = path.join(dir, `.${path.basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
  const dropTmp = () => fs.promises.rm(tmp, { force: true }).catch((e: unknown) => cleanupFailed(`removing ${tmp}`, e));
  const fh = await fs.promises.open(tmp, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, mode);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } catch (err) {
    await fh.close().catch((e: unknown) => cleanupFailed(`closing ${tmp}`, e));
    await dropTmp();
    throw err;
  }
  await fh.close();
  try {
    await fs.promises.rename(tmp, file);
  } catch (err) {
    await dropTmp();
    throw err;
  }
  const dh = await fs.promises.open(dir, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
  try {
    await dh.sync();
  } finally {
    await dh.close();
  }
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
