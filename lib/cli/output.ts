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

interface Shown {
  bytes?: number;
  totalBytes?: number;
}

const mb = (n: number) => `${(n / 1e6).toFixed(1)} MB`;

/** "label: 120.0 MB of 300.0 MB, 40%, 85.2 MB/s, 1.4s" (what is known of it) */
export function progressText(label: string, p: Shown, seconds: number): string {
  const parts: string[] = [];
  if (p.bytes !== undefined) {
    parts.push(p.totalBytes ? `${mb(p.bytes)} of ${mb(p.totalBytes)}, ${Math.floor((100 * p.bytes) / p.totalBytes)}%` : mb(p.bytes));
    if (seconds > 0) parts.push(`${mb(p.bytes / seconds)}/s`);
  }
  parts.push(`${seconds.toFixed(1)}s`);
  return `${label}: ${parts.join(', ')}`;
}

/**
 * The progress line on stderr every 250 ms while work runs, when stderr is a terminal: the
 * latest of `current()` (bytes done, total when known), the rate and the time.
 */
function progress(label: string, current: () => Shown): () => void {
  if (!process.stderr.isTTY) return () => undefined;
  const t0 = Date.now();
  const timer = setInterval(() => process.stderr.write(`\r\x1b[K${progressText(label, current(), (Date.now() - t0) / 1000)}`), 250);
  timer.unref();
  return () => {
    clearInterval(timer);
    process.stderr.write('\r\x1b[K');
  };
}

/** Run work with the progress line; `bytes` is polled for the bytes done so far, when they can be known. */
export async function withProgress<T>(label: string, work: Promise<T>, bytes?: () => number | undefined): Promise<T> {
  const stop = progress(label, () => ({ bytes: bytes?.() }));
  try {
    return await work;
  } finally {
    stop();
  }
}

/** Run work, giving it the onProgress callback of the API (docs/api.md), with the progress line showing what it reports. */
export async function withReportedProgress<T>(label: string, totalBytes: number | undefined, work: (onProgress: (p: Shown) => void) => Promise<T>): Promise<T> {
  let latest: Shown = { bytes: 0, totalBytes };
  const stop = progress(label, () => latest);
  try {
    return await work((p) => (latest = { bytes: p.bytes, totalBytes: p.totalBytes ?? totalBytes }));
  } finally {
    stop();
  }
}
