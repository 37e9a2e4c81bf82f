// Where tar headers are read from. Bodies never pass through here: a FileSource skips them
// (the native side copies them from their offsets), a PipeSource is told how far a native
// splice went. Both count the position so every entry knows where its header and body are.
import fs from 'node:fs';
import { TarError } from './errors.ts';

const BLOCK = 512;

export interface BlockSource {
  /** bytes of the tar consumed so far */
  readonly position: number;
  /** total size of the input when known (a regular file), so headers that lie about sizes are caught */
  readonly size: number | undefined;
  /** the next 512-byte block in a buffer the source reuses: valid until the next readBlock();
   *  shorter only at the end of the input. This is how headers are read without allocating. */
  readBlock(): Buffer;
  /** exactly n bytes (a fresh buffer the caller may keep) or ETARTRUNCATED naming `what` */
  read(n: number, what?: string): Buffer;
  /** up to n bytes (a fresh buffer); shorter only at the end of the input */
  readUpTo(n: number): Buffer;
  /** pass over n bytes (ETARTRUNCATED naming `what` when the input ends first) */
  skip(n: number, what?: string): void;
  /** n bytes were consumed by someone else (a native splice of a body from a pipe) */
  advance(n: number): void;
}

// small: bodies are skipped, so each refill after a body mostly serves one header (a 64 KiB
// window copied ~40x more than it used on a tar of 22 KB files); 8 KiB still batches tiny files
const WINDOW = 8 << 10;

function truncated(what: string, at: number, end: number, wanted: number): TarError {
  return new TarError('ETARTRUNCATED', `${what}: unexpected EOF: the tar ends at byte ${end}, inside it (wanted ${wanted} bytes at byte ${at})`, what, at);
}

/** What both sources do alike, over the one primitive each has: `fill` copies up to `len`
 *  bytes from the current position into `out` and advances the position. */
abstract class Source {
  position = 0;
  abstract readonly size: number | undefined;
  private readonly header = Buffer.allocUnsafe(BLOCK);

  protected abstract fill(out: Buffer, len: number): number;

  readBlock(): Buffer {
    const got = this.fill(this.header, BLOCK);
    return got === BLOCK ? this.header : this.header.subarray(0, got);
  }

  readUpTo(n: number): Buffer {
    const out = Buffer.allocUnsafe(this.size === undefined ? n : Math.max(0, Math.min(n, this.size - this.position)));
    const got = this.fill(out, out.length);
    return got === out.length ? out : out.subarray(0, got);
  }

  read(n: number, what = 'header'): Buffer {
    const at = this.position;
    const b = this.readUpTo(n);
    if (b.length < n) throw truncated(what, at, at + b.length, n);
    return b;
  }

  advance(n: number): void {
    this.position += n;
  }
}

/** A tar in a regular file: positional reads through a small read-ahead window (headers only). */
export class FileSource extends Source implements BlockSource {
  readonly size: number;
  private readonly win: Buffer;
  private winStart = 0;
  private winLen = 0;

  /** `window`: the read-ahead's size (disassembleTar, which also wants the bytes between
   *  members through range(), takes a larger one) */
  constructor(
    private readonly fd: number,
    start = 0,
    window = WINDOW,
  ) {
    super();
    this.position = start;
    this.size = fs.fstatSync(fd).size;
    this.win = Buffer.allocUnsafe(window);
  }

  /**
   * Bytes [from, to) of the file, a fresh buffer, through the same window (refilled at `from`
   * when they are not all in it, so the headers read next come from it too); the position does
   * not move. ETARTRUNCATED when the file ends first.
   */
  range(from: number, to: number): Buffer {
    if (from >= this.winStart && to <= this.winStart + this.winLen) return Buffer.from(this.win.subarray(from - this.winStart, to - this.winStart));
    const into = to - from <= this.win.length ? this.win : Buffer.allocUnsafe(to - from);
    const want = into === this.win ? Math.min(this.win.length, this.size - from) : to - from;
    let got = 0;
    while (got < to - from) {
      const n = fs.readSync(this.fd, into, got, want - got, from + got);
      if (n === 0) throw new TarError('ETARTRUNCATED', `the tar ends at byte ${from + got}, inside a header`, undefined, from + got);
      got += n;
    }
    if (into !== this.win) return into;
    this.winStart = from;
    this.winLen = got;
    return Buffer.from(this.win.subarray(0, to - from));
  }

  /** Make the window start at `from` unless it holds it already (the next reads start there). */
  prefetch(from: number): void {
    if (from < this.winStart || from >= this.winStart + this.winLen) this.range(from, Math.min(from + 1, this.size));
  }

  /** copy up to `len` bytes at the current position into `out`, through the window */
  protected fill(out: Buffer, len: number): number {
    let got = 0;
    while (got < len) {
      const pos = this.position + got;
      if (pos < this.winStart || pos >= this.winStart + this.winLen) {
        if (pos >= this.size) break;
        // bodies are skipped, so refilling at the wanted position reads headers, not data
        this.winStart = pos;
        this.winLen = fs.readSync(this.fd, this.win, 0, this.win.length, pos);
        if (this.winLen === 0) break;
      }
      const from = pos - this.winStart;
      const take = Math.min(len - got, this.winLen - from);
      this.win.copy(out, got, from, from + take);
      got += take;
    }
    this.position += got;
    return got;
  }

  skip(n: number, what = 'entry'): void {
    if (this.position + n > this.size) throw truncated(what, this.position, this.size, n);
    this.position += n;
  }
}

// a non-blocking fd with nothing in it yet: sleep this long before trying again
const EAGAIN_SLEEP_MS = 1;
const sleeper = new Int32Array(new SharedArrayBuffer(4));

/** A tar coming through a pipe or socket: sequential reads, nothing read ahead (bodies are
 *  spliced by the native side straight from the fd, so the fd must stand at each body). */
export class PipeSource extends Source implements BlockSource {
  readonly size = undefined;
  /** sees every byte this source reads itself (headers, padding, skipped bytes), in order,
   *  in a buffer that is reused after the call: hash or copy it there */
  private readonly onBytes?: (b: Buffer) => void;
  private readonly scratch = Buffer.allocUnsafe(WINDOW);

  constructor(
    private readonly fd: number,
    opts: { onBytes?: (b: Buffer) => void } = {},
  ) {
    super();
    this.onBytes = opts.onBytes;
  }

  protected fill(buf: Buffer, len: number): number {
    let got = 0;
    while (got < len) {
      let n: number;
      try {
        n = fs.readSync(this.fd, buf, got, len - got, null);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EAGAIN') {
          Atomics.wait(sleeper, 0, 0, EAGAIN_SLEEP_MS);
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

  skip(n: number, what = 'entry'): void {
    const at = this.position;
    let left = n;
    while (left > 0) {
      const got = this.fill(this.scratch, Math.min(left, this.scratch.length));
      if (got === 0) throw truncated(what, at, this.position, n);
      left -= got;
    }
  }
}
