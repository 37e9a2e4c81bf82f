// Errors of the tar engine: a stable code, the entry they concern, and where in the tar.
export type TarErrorCode = 'ETARFORMAT' | 'ETARTRUNCATED' | 'ETARPATH' | 'ETARTOOBIG';

export class TarError extends Error {
  constructor(
    readonly code: TarErrorCode,
    message: string,
    readonly entry?: string,
    readonly offset?: number,
  ) {
    super(message);
    this.name = 'TarError';
  }
}
