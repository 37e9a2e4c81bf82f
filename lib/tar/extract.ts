// Extract an uncompressed tar from a file descriptor into a directory (DESIGN.md section 4).
import type { IdMappings } from '../idmap.ts';

export interface ExtractOptions {
  idMappings?: IdMappings;
  whiteouts: 'delete' | 'overlay' | 'keep';
}

export interface ExtractResult {
  /** bytes of file bodies written */
  size: number;
  /** bytes of tar read, end blocks included */
  tarSize: number;
  /** 'sha256:<hex>' of the tar bytes read */
  digest: string;
  entries: number;
  /** distinct owners seen (host ids after mapping), sorted */
  uids: number[];
  gids: number[];
}

export async function extractTar(inFd: number, root: string, opts: ExtractOptions): Promise<ExtractResult> {
  throw new Error(`extractTar(${inFd}, ${root}, ${opts.whiteouts}): not implemented yet`);
}
