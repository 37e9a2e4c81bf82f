// What a layer's input becomes before the tar engine sees it: an uncompressed tar in a regular
// file. A regular uncompressed file is used as it is (the engine reads bodies at their offsets,
// reflinks where it can, and hashes in parallel). Compressed input (gzip, zstd, xz, bzip2, told
// by magic bytes) is inflated (gzip by node:zlib, zstd by the addon's libzstd, xz and bzip2 by
// their commands) into an unlinked temp file under the store; a pipe is spooled the same way, because its first bytes
// must be read to know whether it is compressed, and because extracting straight from a slow
// pipe would keep the event loop (and with it the lock's heartbeat) blocked for as long as the
// writer takes. Data moves through streams with backpressure: memory stays flat.
import fs from 'node:fs';
import path from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { Duplex, Transform, Writable, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';
import { LayersError, wrapError } from '../errors.ts';
import { native } from '../native.ts';
import { Compression } from './records.ts';

export interface LayerInput {
  /** an uncompressed tar in a regular file, read from offset 0 */
  fd: number;
  /** set when the input was compressed: what the peer records as compressed-diff-digest/-size */
  compressed?: { digest: string; size: number; compression: number };
  /** bytes of input read so far (for progress) */
  readonly bytesRead: () => number;
  close(): void;
}

type Kind = 'tar' | 'gzip' | 'zstd' | 'bzip2' | 'xz';
const MAGIC: Array<[Kind, number[]]> = [
  ['gzip', [0x1f, 0x8b]],
  ['zstd', [0x28, 0xb5, 0x2f, 0xfd]],
  ['bzip2', [0x42, 0x5a, 0x68]],
  ['xz', [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]],
];
const MAGIC_LEN = 6;

export function detectCompression(head: Buffer): Kind {
  for (const [kind, magic] of MAGIC) if (head.length >= magic.length && magic.every((b, i) => head[i] === b)) return kind;
  return 'tar';
}

/**
 * xz and bzip2 are decompressed by their own commands (the `xz` and `bzip2` packages), as the
 * peer shells out to xz: node:zlib on Node 20 has neither (zstd is the addon's libzstd). `done` settles
 * when the command has exited: an error with its stderr unless it exited 0.
 */
function commandDecompressor(kind: 'xz' | 'bzip2', what: string): { stream: Duplex; done: Promise<void> } {
  return commandFilter(kind, ['-d', '-c', '-q'], what, `bad ${kind} data: unexpected EOF or corrupt input`);
}

/** The `kind` command as a stream filter (stdin to stdout); `failure` says what its non-zero exit means. */
function commandFilter(kind: 'xz' | 'bzip2', args: string[], what: string, failure: string): { stream: Duplex; done: Promise<void> } {
  const child = spawn(kind, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr = (stderr + d).slice(-2000)));
  const done = new Promise<void>((resolve, reject) => {
    child.on('error', (err: NodeJS.ErrnoException) =>
      reject(new LayersError('ECOMPRESSION', `${what} is ${kind}-compressed and the ${kind} command cannot be run (${err.code ?? err.message}); install the ${kind} package`, { cause: err })),
    );
    child.on('close', (code, signal) => {
      if (code === 0) resolve();
      else reject(new LayersError('ECOMPRESSION', `${what}: ${failure} (${kind} ${signal ?? `exited ${code}`}: ${stderr.trim() || 'no message'})`));
    });
  });
  done.catch(() => undefined); // awaited by the caller
  // a command that stops reading (bad data) must not fail the pipeline with EPIPE before its own error is known
  child.stdin.on('error', () => undefined);
  return { stream: Duplex.from({ writable: child.stdin, readable: child.stdout }), done };
}

/** What `diff` can compress its output with (DiffOptions.compression). */
export type OutputCompression = 'gzip' | 'zstd';

/**
 * Compress the regular file `from` (read from offset 0) into fd `to` (a file or pipe, written at
 * its current position): gzip by node:zlib (streams with backpressure), zstd by the addon's
 * libzstd (native/zstd.cc: level 3, the zstd command's default, as containers/image writes zstd
 * layers; fixed buffers on a worker thread, no byte through JS). Memory stays flat. `signal`
 * stops it (zstd before its next 1 MiB chunk, with ECANCELED).
 */
export async function compressFile(from: number, to: number, kind: OutputCompression, what: string, signal?: AbortSignal): Promise<void> {
  if (kind === 'zstd') {
    const abort = abortFlag(signal);
    try {
      await native().zstdCompress(from, to, 3, abort.flag);
    } catch (err) {
      throw wrapError(`${what}: compressing it with zstd`, err);
    } finally {
      abort.done();
    }
    return;
  }
  const src = fs.createReadStream('', { fd: from, start: 0, autoClose: false, highWaterMark: 1 << 20, fs: callerOwnsFd });
  const sink = fs.createWriteStream('', { fd: to, autoClose: false, highWaterMark: 1 << 20 });
  return pipeline(src, zlib.createGzip(), sink, { signal });
}

/** The abort flag of a native zstd call (abort[0] set when signal fires); done() stops listening. */
function abortFlag(signal: AbortSignal | undefined): { flag: Int32Array; done: () => void } {
  const flag = new Int32Array(1);
  if (!signal) return { flag, done: () => undefined };
  const set = () => Atomics.store(flag, 0, 1);
  if (signal.aborted) set();
  signal.addEventListener('abort', set, { once: true });
  return { flag, done: () => signal.removeEventListener('abort', set) };
}

/** For read streams on the caller's fd: a failed pipeline destroys its streams, and a destroyed
 *  fs.ReadStream closes its fd whatever autoClose says; the caller closes it again later (EBADF,
 *  or worse, another file that got the number meanwhile). */
export const callerOwnsFd = { open: fs.open, read: fs.read, close: (_fd: number, cb: (err: NodeJS.ErrnoException | null) => void) => cb(null) };

/** Open an unlinked temp file in dir: nothing is left behind if the process dies. */
export function tempFile(dir: string, prefix = 'layer-input'): number {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const p = path.join(dir, `${prefix}-${randomBytes(8).toString('hex')}`);
  const fd = fs.openSync(p, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o600);
  fs.unlinkSync(p);
  return fd;
}

/**
 * Make fd (a tar, maybe gzip-compressed; a file, pipe or socket) into a LayerInput. `what` names
 * the input in errors; tmpDir is where temp files go (the store's own tmp dir, so they land on
 * the store's filesystem). `signal` stops the decompression (zstd before its next 1 MiB chunk).
 */
export async function prepareInput(fd: number, what: string, tmpDir: string, signal?: AbortSignal): Promise<LayerInput> {
  const st = fs.fstatSync(fd);
  let read = 0;
  if (st.isFile()) {
    const head = Buffer.alloc(MAGIC_LEN);
    const n = fs.readSync(fd, head, 0, MAGIC_LEN, 0);
    const kind = detectCompression(head.subarray(0, n));
    if (kind === 'tar') return { fd, bytesRead: () => read, close: () => undefined };
    if (kind === 'zstd') return inflateZstd(fd, 0, Buffer.alloc(0), what, tmpDir, signal);
    const src = fs.createReadStream('', { fd, start: 0, autoClose: false, highWaterMark: 1 << 20, fs: callerOwnsFd });
    return spool(src, kind, what, tmpDir, (n) => (read += n), () => read, signal);
  }
  // a pipe: read until the magic can be told (on the thread pool, so the event loop runs while a
  // slow writer takes its time), then spool what was read and the rest
  const head = await readHead(fd);
  const kind = detectCompression(head);
  if (kind === 'zstd') return inflateZstd(fd, -1, head, what, tmpDir, signal);
  async function* all() {
    yield head;
    if (head.length < MAGIC_LEN) return; // the pipe ended
    yield* fs.createReadStream('', { fd, autoClose: false, highWaterMark: 1 << 20, fs: callerOwnsFd }) as AsyncIterable<Buffer>;
  }
  return spool(all(), kind, what, tmpDir, (n) => (read += n), () => read, signal);
}

/**
 * A stream (an HTTP body, any AsyncIterable of bytes) made into a LayerInput, spooled as a pipe
 * is. zstd is inflated by the addon, which reads an fd: the compressed bytes are spooled first
 * (as they come, unhashed), then inflated from that file as a zstd file is.
 */
export async function prepareStreamInput(src: AsyncIterable<Uint8Array>, what: string, tmpDir: string, signal?: AbortSignal): Promise<LayerInput> {
  let read = 0;
  const it = src[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  const headChunks: Buffer[] = [];
  let headLen = 0;
  let done = false;
  while (headLen < MAGIC_LEN) {
    const r = await it.next();
    if (r.done) {
      done = true;
      break;
    }
    headChunks.push(r.value);
    headLen += r.value.length;
  }
  const kind = detectCompression(Buffer.concat(headChunks));
  async function* all() {
    yield* headChunks;
    if (done) return;
    for (let r = await it.next(); !r.done; r = await it.next()) yield r.value;
  }
  if (kind !== 'zstd') return spool(all(), kind, what, tmpDir, (n) => (read += n), () => read, signal);
  const raw = await spool(all(), 'tar', what, tmpDir, (n) => (read += n), () => read, signal);
  try {
    const inflated = await inflateZstd(raw.fd, 0, Buffer.alloc(0), what, tmpDir, signal);
    return { ...inflated, bytesRead: () => read };
  } finally {
    raw.close();
  }
}

/** The first MAGIC_LEN bytes of a pipe (fewer when it ends first), read from its position. */
async function readHead(fd: number): Promise<Buffer> {
  const head = Buffer.alloc(MAGIC_LEN);
  let got = 0;
  while (got < MAGIC_LEN) {
    const n = await new Promise<number>((resolve, reject) => fs.read(fd, head, got, MAGIC_LEN - got, null, (err, n) => (err ? reject(err) : resolve(n))));
    if (n === 0) break;
    got += n;
  }
  return head.subarray(0, got);
}

/**
 * zstd input inflated by the addon (libzstd, native/zstd.cc) into an unlinked temp file: read,
 * hashed and decompressed in one native pass on a worker thread, in fixed buffers (no byte
 * through JS, memory flat). `offset` 0 reads a file from its start, -1 a pipe from its position
 * after `head`, the bytes already read from it. The signal, or the CLI's cancel(), stops it
 * before its next 1 MiB chunk (ECANCELED).
 */
async function inflateZstd(fd: number, offset: number, head: Buffer, what: string, tmpDir: string, signal?: AbortSignal): Promise<LayerInput> {
  const out = tempFile(tmpDir);
  const hash = native().sha256();
  const progress = new Float64Array(1);
  const abort = abortFlag(signal);
  try {
    const { read } = await native().zstdDecompress(fd, offset, out, head, hash, progress, abort.flag);
    return {
      fd: out,
      compressed: { digest: hash.digest(), size: read, compression: Compression.zstd },
      bytesRead: () => progress[0],
      close: () => fs.closeSync(out),
    };
  } catch (err) {
    fs.closeSync(out);
    const e = err as NodeJS.ErrnoException;
    // the native message is "ECOMPRESSION: bad zstd data: <why>, zstd"; ours names the input, with the peer's "unexpected EOF" where the data ends early
    if (e.code === 'ECOMPRESSION') throw new LayersError('ECOMPRESSION', `${what}: ${e.message.replace(/^ECOMPRESSION: /, '').replace(/, zstd$/, '')}`, { cause: err });
    if (e.code === 'ECANCELED') throw wrapError(`${what}: decompressing it (zstd)`, err);
    throw wrapError(e.syscall === 'write' ? `${what}: writing its decompressed copy into ${tmpDir}` : `${what}: reading it`, err);
  } finally {
    abort.done();
  }
}

async function spool(
  src: Readable | AsyncIterable<Buffer>,
  kind: Exclude<Kind, 'zstd'>,
  what: string,
  tmpDir: string,
  count: (n: number) => void,
  bytesRead: () => number,
  signal?: AbortSignal,
): Promise<LayerInput> {
  const out = tempFile(tmpDir);
  const hash = createHash('sha256');
  const tap = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      if (kind !== 'tar') hash.update(chunk);
      count(chunk.length);
      cb(null, chunk);
    },
  });
  // our own sink: fs.WriteStream closes an fd it was given when a pipeline fails (autoClose: false
  // or not), and the caller owns this one
  const sinkFailed: { err?: NodeJS.ErrnoException } = {}; // the temp file could not be written (a full disk)
  const sink = new Writable({
    highWaterMark: 1 << 20,
    write(chunk: Buffer, _enc, cb) {
      const put = (from: number): void =>
        fs.write(out, chunk, from, chunk.length - from, null, (err, n) => {
          if (err) cb((sinkFailed.err = err));
          else if (from + n < chunk.length) put(from + n);
          else cb();
        });
      put(0);
    },
  });
  const command = kind === 'xz' || kind === 'bzip2' ? commandDecompressor(kind, what) : undefined;
  try {
    if (kind === 'gzip') await pipeline(src, tap, zlib.createGunzip(), sink, { signal });
    else if (command) await Promise.all([pipeline(src, tap, command.stream, sink, { signal }), command.done]);
    else await pipeline(src, tap, sink, { signal });
  } catch (err) {
    fs.closeSync(out);
    const { err: writeError } = sinkFailed;
    if (writeError) {
      // the errno code stays (ENOSPC, EIO); the message says which input and where it was going
      throw wrapError(`${what}: writing its ${kind === 'tar' ? 'spooled' : 'decompressed'} copy into ${tmpDir}`, writeError);
    }
    if (command) {
      // the command's own verdict names the problem better than a broken pipe
      await command.done;
      throw err;
    }
    const why = (err as Error).message;
    // "unexpected EOF": the words the peer's error has, and its tests look for
    throw kind === 'gzip' ? new LayersError('ECOMPRESSION', `${what}: bad gzip data: ${/unexpected end/i.test(why) ? 'unexpected EOF' : why}`, { cause: err }) : err;
  }
  return {
    fd: out,
    compressed: kind !== 'tar' ? { digest: `sha256:${hash.digest('hex')}`, size: bytesRead(), compression: Compression[kind] } : undefined,
    bytesRead,
    close: () => fs.closeSync(out),
  };
}
