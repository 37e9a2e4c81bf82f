// How commands print: stdout as written, one JSON document for --json, the peer's lines for a
// new record, and progress on a terminal while a long import or diff runs.
import type { Globals } from './command.ts';

export const out = (s: string) => void process.stdout.write(s);
export const printJson = (v: unknown) => out(JSON.stringify(v) + '\n');

/** What the peer prints for a new layer, image or container: its id, then each name after a tab. */
export function printCreated(g: Globals, rec: { id: string; names?: string[] }): void {
  if (g.json) return printJson(rec);
  out(`${rec.id}\n`);
  for (const n of rec.names ?? []) out(`\t${n}\n`);
}

/**
 * "\rimporting layer.tar (300.0 MB): 4.2s" on stderr every 250 ms while work runs, when stderr is
 * a terminal. `bytes` is polled for the size so far, when it can be known.
 */
function progress(label: string, bytes?: () => number | undefined): () => void {
  if (!process.stderr.isTTY) return () => undefined;
  const t0 = Date.now();
  const timer = setInterval(() => {
    const b = bytes?.();
    const size = b === undefined ? '' : ` (${(b / 1e6).toFixed(1)} MB)`;
    process.stderr.write(`\r${label}${size}: ${((Date.now() - t0) / 1000).toFixed(1)}s`);
  }, 250);
  timer.unref();
  return () => {
    clearInterval(timer);
    process.stderr.write('\r\x1b[K');
  };
}

export async function withProgress<T>(label: string, work: Promise<T>, bytes?: () => number | undefined): Promise<T> {
  const stop = progress(label, bytes);
  try {
    return await work;
  } finally {
    stop();
  }
}
