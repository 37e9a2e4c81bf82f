// Errors of the tar engine: a stable code, the entry they concern, and where in the tar. Part of
// the one error family (lib/errors.ts).
import { LayersError, type TarErrorCode } from '../errors.ts';

export type { TarErrorCode };

export class TarError extends LayersError {
  declare readonly code: TarErrorCode;
  constructor(
    code: TarErrorCode,
    message: string,
    readonly entry?: string,
    readonly offset?: number,
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
    this.name = 'TarError';
  }
}
