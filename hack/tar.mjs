// Run the tar engine on its own, as a process: used by the benchmark and the memory test.
//   node hack/tar.mjs create DIR OUT.tar [--align]       the engine as the package ships it (dist/)
//   node hack/tar.mjs extract IN.tar DIR
//   LAYERS_SOURCES=1 node --import tsx hack/tar.mjs ...  the TypeScript sources instead
// Prints one JSON line: milliseconds, body bytes by copy method, peak RSS in bytes, and with
// node --expose-gc the memory still held after a full GC (what the engine kept, not garbage).
// JavaScript, not TypeScript: the memory test measures the engine, not the development loader
// (tsx alone takes ~37 MB of RSS, a quarter of the 150 MB bound; docs/performance.md, "Memory").
import fs from 'node:fs';

const lib = (name) => (process.env.LAYERS_SOURCES === '1' ? `../lib/tar/${name}.ts` : `../dist/lib/tar/${name}.js`);
const { treeItems, writeTar } = await import(lib('write'));
const { extractTar } = await import(lib('extract'));

const [cmd, a, b, flag] = process.argv.slice(2);
const t0 = process.hrtime.bigint();
let bytes = {};
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
  console.error('usage: hack/tar.mjs create DIR OUT.tar [--align] | extract IN.tar DIR');
  process.exit(2);
}
const ms = Number(process.hrtime.bigint() - t0) / 1e6;
let retained;
if (globalThis.gc) {
  // twice, with a turn of the event loop between: buffers whose memory is external are freed
  // by callbacks that run after the collection that found them dead
  globalThis.gc();
  await new Promise((resolve) => setImmediate(resolve));
  globalThis.gc();
  const m = process.memoryUsage();
  retained = m.heapUsed + m.external;
}
console.log(JSON.stringify({ ms, bytes, maxRSS: process.resourceUsage().maxRSS * 1024, retained }));
