// Native batch errors carry the index of the op or segment that failed; turn them into errors
// that name the tar entry or file, keeping the system error's code (lib/errors.ts).
import { wrapError } from '../errors.ts';
import type { NativeError } from '../native.ts';
import { TarError } from './errors.ts';

export function nativeToTarError(err: unknown, items: ReadonlyArray<object>, doing: string): Error {
  const e = err as NativeError;
  if (!e || typeof e !== 'object' || typeof e.code !== 'string') return err as Error;
  const item = (typeof e.index === 'number' ? items[e.index] : undefined) as { path?: string } | undefined;
  const name = item?.path ?? e.path;
  if (e.code === 'EXDEV' && e.syscall === 'openat2') {
    return new TarError('ETARPATH', `${name}: path escapes the layer through a symlink`, name, undefined, { cause: e });
  }
  const out = wrapError(name !== undefined ? `${name}: ${doing}` : doing, e);
  if (name !== undefined) Object.assign(out, { path: name });
  return out;
}
