// The one error family of the library and the CLI (docs/architecture.md, "Errors"). Every error
// we raise is a LayersError, or a subclass of it: TarError (lib/tar/errors.ts) for a bad or
// hostile tar, NativeError (lib/native.ts) for a system call that failed in the addon. `code` is
// stable and is what callers and the CLI branch on; the message names the layer, entry or file
// concerned and says why. Context is added by wrapping (`wrapError`: a new error whose `cause` is
// the old one), never by rewriting an existing error's message.

/** Codes of the store, the drivers and the CLI. */
export type StoreErrorCode =
  /** no layer has this id, name or id prefix */
  | 'ELAYERUNKNOWN'
  /** the layer is mounted, or used by an image or a container */
  | 'ELAYERINUSE'
  /** no image has this id, name or id prefix */
  | 'EIMAGEUNKNOWN'
  /** no container has this id, name or id prefix */
  | 'ECONTAINERUNKNOWN'
  /** the layer, image or container has no data item of this name */
  | 'EBIGDATAUNKNOWN'
  /** the image is used by containers */
  | 'EIMAGEINUSE'
  /** a layer, image or container id is taken */
  | 'EIDINUSE'
  /** the layer has child layers */
  | 'ELAYERHASCHILDREN'
  /** the layer is not mounted, and what was asked needs its mount point */
  | 'ENOTMOUNTED'
  /** a name is taken by another record of the same kind */
  | 'ENAMEINUSE'
  /** bad arguments: unknown command or flag, missing argument, bad value */
  | 'EUSAGE'
  /** the layer input cannot be opened or read */
  | 'EINPUT'
  /** the layer input is compressed in a format we cannot read */
  | 'ECOMPRESSION'
  /** no such graph driver, or the driver cannot work here */
  | 'EDRIVER'
  /** the store-wide lock could not be taken, or was lost while held */
  | 'ELOCK'
  /** the native addon is not built or cannot be loaded */
  | 'ENATIVE'
  /** a layer's files no longer match the tar-split record they were applied from */
  | 'ELAYERCHANGED'
  /** the layer or image belongs to an additional (read-only) image store */
  | 'EREADONLY'
  /** the input's digest is not the one the caller said it must have */
  | 'EDIGEST'
  /** the caller's AbortSignal stopped the operation */
  | 'EABORTED';

/** Codes of the tar engine: a malformed header, a tar that ends early, a name that would land
 *  outside the layer, a value too large to encode. */
export type TarErrorCode = 'ETARFORMAT' | 'ETARTRUNCATED' | 'ETARPATH' | 'ETARTOOBIG';

/** A failed system call in the addon or in Node: the errno's name ('ENOENT', 'EXDEV', 'ENOSPC',
 *  ...), or one of the addon's own two ('ETARTRUNCATED' and 'ESHRANK', both errno ENODATA). */
export type SystemErrorCode = `E${Uppercase<string>}`;

export type ErrorCode = StoreErrorCode | TarErrorCode | SystemErrorCode;

export class LayersError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'LayersError';
    this.code = code;
  }
}

export function isLayersError(err: unknown, code?: ErrorCode): err is LayersError {
  return err instanceof LayersError && (code === undefined || err.code === code);
}

/** The code of any error: ours, Node's (`err.code`), or undefined. */
export function errorCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/**
 * `cause` with context in front: a new LayersError whose message is "<context>: <cause's
 * message>" and whose `cause` is the original, with the original's code unless another is given
 * (so ENOSPC stays ENOSPC however many layers of context it passes through).
 */
export function wrapError(context: string, cause: unknown, code?: StoreErrorCode | TarErrorCode): LayersError {
  const why = cause instanceof Error ? cause.message : String(cause);
  const kept = code ?? (errorCode(cause) as ErrorCode | undefined) ?? 'EINPUT';
  const out = new LayersError(kept, `${context}: ${why}`, { cause });
  // keep what a caller may branch on besides the code: errno, syscall, path, a tar entry, ...
  if (cause !== null && typeof cause === 'object')
    for (const [k, v] of Object.entries(cause)) if (!(k in out) && k !== 'name') Object.assign(out, { [k]: v });
  return out;
}

/**
 * Text safe to show on a terminal: C0 and C1 control characters and DEL (which could move the
 * cursor, retitle or recolour the terminal) as \xNN, backslashes doubled so the escaping can be
 * told from a name that contains one. Names from a tar or a layer reach messages through here.
 * A byte of a name that is not UTF-8 (a lone U+DC80..U+DCFF: lib/tar/names.ts) is shown as
 * \xNN too, the byte itself.
 */
export function printable(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\\\x00-\x1f\x7f-\x9f]|(?<![\uD800-\uDBFF])[\uDC80-\uDCFF]/g, (c) =>
    c === '\\' ? '\\\\' : `\\x${(c.charCodeAt(0) & 0xff).toString(16).padStart(2, '0')}`,
  );
}

/** Failures that came before anything was written (input refused at its first bytes): what
 *  they were to change is as it was, so a caller need not undo anything. */
const nothingWritten = new WeakSet<object>();

export function markNothingWritten(err: unknown): unknown {
  if (err instanceof Error) nothingWritten.add(err);
  return err;
}

/** Whether err, or an error it wraps, was marked by markNothingWritten. */
export function wroteNothing(err: unknown): boolean {
  for (let e = err; e instanceof Error; e = e.cause) if (nothingWritten.has(e)) return true;
  return false;
}

let debugOut: ((line: string) => void) | undefined =
  process.env.LAYERS_DEBUG ? (line) => process.stderr.write(line + '\n') : undefined;

/** Where debug lines go: the CLI's --debug sends them to stderr; LAYERS_DEBUG=1 does the same for
 *  library callers; undefined silences them. */
export function setDebugOutput(out: ((line: string) => void) | undefined): void {
  debugOut = out;
}

/**
 * A cleanup that failed while something else was already failing (removing a half-made layer,
 * unmounting a probe, releasing a lock): the first error is the one reported, but this one is
 * not swallowed silently — it is logged when debugging is on.
 */
export function cleanupFailed(what: string, err: unknown): void {
  debugOut?.(printable(`layers: cleanup: ${what}: ${err instanceof Error ? err.message : String(err)}`));
}
