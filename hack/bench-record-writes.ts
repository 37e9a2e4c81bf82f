// How long record writes block the event loop (docs/api.md, "Record writes and the event loop"):
// a store of --layers layers (100), then --writes (100) calls that each replace layers.json once
// (setNames), one after another, while perf_hooks.monitorEventLoopDelay samples the loop every
// millisecond. Its max is the longest time the loop could not run a timer; a daemon's other
// requests wait that long. The store is in a temp dir on the machine's disk (real fsyncs).
//
//   node --import tsx hack/bench-record-writes.ts [--layers N] [--writes N]
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { openStore } from '../lib/index.ts';
import { median, numOpt } from './bench-lib.ts';

const layerCount = numOpt('--layers', 100);
const writes = numOpt('--writes', 100);
const base = fs.mkdtempSync(path.join(os.tmpdir(), 'layers-bench-records-'));
try {
  const store = await openStore({ root: path.join(base, 'root'), runroot: path.join(base, 'run'), driver: 'vfs' });
  const ids: string[] = [];
  for (let i = 0; i < layerCount; i++) ids.push((await store.createLayer({ names: [`layer-${i}`] })).id);
  const file = path.join(base, 'root', 'vfs-layers', 'layers.json');

  const h = monitorEventLoopDelay({ resolution: 1 });
  const perWrite: number[] = [];
  h.enable();
  const t0 = performance.now();
  for (let i = 0; i < writes; i++) {
    const t = performance.now();
    await store.setNames(ids[i % ids.length]!, [`layer-${i % ids.length}`, `w${i}`]);
    perWrite.push(performance.now() - t);
  }
  const total = performance.now() - t0;
  h.disable();
  await store.close();

  const ms = (ns: number) => (ns / 1e6).toFixed(1);
  console.log(`layers.json: ${layerCount} layers, ${fs.statSync(file).size} bytes; ${writes} writes in ${total.toFixed(0)} ms (median ${median(perWrite).toFixed(1)} ms a write)`);
  console.log(`event-loop delay: p50 ${ms(h.percentile(50))} ms, p90 ${ms(h.percentile(90))} ms, p99 ${ms(h.percentile(99))} ms, max ${ms(h.max)} ms`);
} finally {
  fs.rmSync(base, { recursive: true, force: true });
}
