// Native batch errors carry the index of the op or segment that failed; turn them into errors
// that name the tar entry or file, with a stable code.
import type { NativeError } from '../native.ts';
import { TarError } from './errors.ts';

export function nativeToTarError(err: unknown, items: ReadonlyArray<object>, doing: string): Error {
  const e = err as NativeError;
  if (!e || typeof e !== 'object' || typeof e.code !== 'string') return err as Error;
  const item = (typeof e.index === "number" ? items[e.index] : undefined) as { path?: string } | undefined;
  const name = item?.path ?? e.path;
  if (e.code === 'EXDEV' && e.syscall === 'openat2') {
    return Object.assign(new TarError('ETARPATH', `${name}: path escapes the layer through a symlink`, name), { cause: e });
  }
  const where = name !== undefined ? `${name}: ` : '';
  const out = new Error(`${where}${doing}: ${e.message}`, { cause: e });
  return Object.assign(out, { code: e.code, errno: e.errno, syscall: e.syscall, path: name });
}
