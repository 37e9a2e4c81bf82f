// Run the tar engine on its own, as a process: used by the benchmark and the memory test.
//   node --import tsx hack/tar.ts create DIR OUT.tar [--align]
//   node --import tsx hack/tar.ts extract IN.tar DIR
// Prints one JSON line: milliseconds, body bytes by copy method, peak RSS in bytes, and with
// node --expose-gc the memory still held after a full GC (what the engine kept, not garbage).
import fs from 'node:fs';
import { treeItems, writeTar } from '../lib/tar/write.ts';
import { extractTar } from '../lib/tar/extract.ts';

const [cmd, a, b, flag] = process.argv.slice(2);
const t0 = process.hrtime.bigint();
let bytes: Record<string, number | undefined> = {};
if (cmd === 'create') {
  const fd = fs.openSync(b, 'w');
  const r = await writeTar(a, treeItems(a), fd, { outOffset: 0, align: flag === '--align' ? 4096 : undefined });
  fs.closeSync(fd);
  bytes = r.bytes;
} else if (cmd === 'extract') {
  const fd = fs.openSync(a, 'r');
  const r = await extractTar(fd, b, { whiteouts: 'keep' });
  fs.closeSync(fd);
  bytes = { body: r.size };
} else {
  console.error('usage: hack/tar.ts create DIR OUT.tar [--align] | extract IN.tar DIR');
  process.exit(2);
}
const ms = Number(process.hrtime.bigint() - t0) / 1e6;
const gc = (globalThis as { gc?: () => void }).gc;
let retained: number | undefined;
if (gc) {
  // twice, with a turn of the event loop between: buffers whose memory is external are freed
  // by callbacks that run after the collection that found them dead
  gc();
  await new Promise((resolve) => setImmediate(resolve));
  gc();
  const m = process.memoryUsage();
  retained = m.heapUsed + m.external;
}
console.log(JSON.stringify({ ms, bytes, maxRSS: process.resourceUsage().maxRSS * 1024, retained }));
