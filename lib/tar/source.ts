// Where tar headers are read from. Bodies never pass through here: a FileSource skips them
// (the native side copies them from their offsets), a PipeSource is told how far a native
// splice went. Both count the position so every entry knows where its header and body are.
import fs from 'node:fs';
import { TarError } from './errors.ts';

export interface BlockSource {
  /** bytes of the tar consumed so far */
  readonly position: number;
  /** total size of the input when known (a regular file) */
  readonly size: number | undefined;
  /** exactly n bytes (a fresh buffer) or ETARTRUNCATED naming `what` */
  read(n: number, what?: string): Buffer;
  /** up to n bytes; shorter only at the end of the input */
  readUpTo(n: number): Buffer;
  /** pass over n bytes */
  skip(n: number, what?: string): void;
  /** n bytes were consumed by someone else (a native splice of a body from a pipe) */
  advance(n: number): void;
  /** PAX global ('g') records, which apply to every later entry of this tar */
  globals: Map<string, Buffer>;
}

const WINDOW = 64 << 10;

/** A tar in a regular file: positional reads through a small read-ahead window (headers only). */
export class FileSource implements BlockSource {
  position: number;
  readonly size: number;
  globals = new Map<string, Buffer>();
  private win = Buffer.allocUnsafe(WINDOW);
  private winStart = 0;
  private winLen = 0;

  constructor(
    private readonly fd: number,
    start = 0,
  ) {
    this.position = start;
    this.size = fs.fstatSync(fd).size;
  }

  readUpTo(n: number): Buffer {
    const out = Buffer.allocUnsafe(Math.max(0, Math.min(n, this.size - this.position)));
    let got = 0;
    while (got < out.length) {
      const pos = this.position + got;
      if (pos < this.winStart || pos >= this.winStart + this.winLen) {
        this.winStart = pos;
        this.winLen = fs.readSync(this.fd, this.win, 0, WINDOW, pos);
        if (this.winLen === 0) break;
      }
      const from = pos - this.winStart;
      const take = Math.min(out.length - got, this.winLen - from);
      this.win.copy(out, got, from, from + take);
      got += take;
    }
    this.position += got;
    return got === out.length ? out : out.subarray(0, got);
  }

  read(n: number, what = 'header'): Buffer {
    const at = this.position;
    const b = this.readUpTo(n);
    if (b.length < n) throw new TarError('ETARTRUNCATED', `${what}: the tar ends at byte ${at + b.length}, inside it (wanted ${n} bytes at ${at})`, what, at);
    return b;
  }

  skip(n: number, what = 'entry'): void {
    if (this.position + n > this.size) {
      throw new TarError('ETARTRUNCATED', `${what}: the tar ends at byte ${this.size}, ${this.position + n - this.size} bytes short`, what, this.position);
    }
    this.position += n;
  }

  advance(n: number): void {
    this.position += n;
  }
}

/** A tar coming through a pipe or socket: sequential reads, nothing read ahead (bodies are
 *  spliced by the native side straight from the fd, so the fd must stand at each body). */
export class PipeSource implements BlockSource {
  position = 0;
  readonly size = undefined;
  globals = new Map<string, Buffer>();
  private readonly onBytes?: (b: Buffer) => void;
  private scratch = Buffer.allocUnsafe(WINDOW);

  constructor(
    private readonly fd: number,
    opts: { onBytes?: (b: Buffer) => void } = {},
  ) {
    this.onBytes = opts.onBytes;
  }

  private readInto(buf: Buffer, len: number): number {
    let got = 0;
    while (got < len) {
      let n: number;
      try {
        n = fs.readSync(this.fd, buf, got, len - got, null);
      } catch (err) {
        // a non-blocking fd with nothing yet: wait a little, it is still coming
        if ((err as NodeJS.ErrnoException).code === 'EAGAIN') {
          Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1);
          continue;
        }
        throw err;
      }
      if (n === 0) break;
      got += n;
    }
    if (got > 0) this.onBytes?.(buf.subarray(0, got));
    this.position += got;
    return got;
  }

  readUpTo(n: number): Buffer {
    const out = Buffer.allocUnsafe(n);
    const got = this.readInto(out, n);
    return got === n ? out : out.subarray(0, got);
  }

  read(n: number, what = 'header'): Buffer {
    const at = this.position;
    const b = this.readUpTo(n);
    if (b.length < n) throw new TarError('ETARTRUNCATED', `${what}: the tar ends at byte ${at + b.length}, inside it (wanted ${n} bytes at ${at})`, what, at);
    return b;
  }

  skip(n: number, what = 'entry'): void {
    let left = n;
    while (left > 0) {
      const got = this.readInto(this.scratch, Math.min(left, this.scratch.length));
      if (got === 0) throw new TarError('ETARTRUNCATED', `${what}: the tar ends at byte ${this.position}, ${left} bytes short`, what, this.position);
      left -= got;
    }
  }

  advance(n: number): void {
    this.position += n;
  }
}
