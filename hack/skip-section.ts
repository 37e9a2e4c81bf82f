// Check (issue 17): extracting a small section that follows a 1 GiB one reads none of the big
// section's bodies: the bytes this process reads (rchar of /proc/self/io) are counted around the
// extraction. tests/tar/sections.test.ts does the same with 256 MiB.
//   node --import tsx hack/skip-section.ts [--mib N]
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { extractTar } from '../lib/tar/extract.ts';
import { TarAppender } from '../lib/tar/sections.ts';
import { numOpt } from './bench-lib.ts';

const mib = numOpt('--mib', 1024);
const rchar = () => Number(/^rchar: (\d+)$/m.exec(fs.readFileSync('/proc/self/io', 'utf8'))![1]);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'skip-section-'));
try {
  fs.mkdirSync(path.join(dir, 'big'));
  const chunk = Buffer.alloc(1 << 20, 0x5a);
  const fd = fs.openSync(path.join(dir, 'big', 'image'), 'w');
  for (let i = 0; i < mib; i++) fs.writeSync(fd, chunk); // real data, no holes
  fs.closeSync(fd);
  fs.mkdirSync(path.join(dir, 'small'));
  fs.writeFileSync(path.join(dir, 'small', 'config.json'), '{"ok":true}\n');
  const archive = path.join(dir, 'a.tar');
  const out = TarAppender.open(archive);
  await out.addTree(path.join(dir, 'big'), 'big');
  await out.addTree(path.join(dir, 'small'), 'small');
  await out.close();
  fs.mkdirSync(path.join(dir, 'out'));
  const afd = fs.openSync(archive, 'r');
  const before = rchar();
  const t0 = process.hrtime.bigint();
  await extractTar(afd, path.join(dir, 'out'), { whiteouts: 'keep', section: 'small', sectionDigest: false });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  const read = rchar() - before;
  fs.closeSync(afd);
  console.log(`archive ${(fs.statSync(archive).size / 2 ** 20).toFixed(0)} MiB; extracting the small section read ${read} bytes in ${ms.toFixed(1)} ms`);
  if (read >= 1 << 20) process.exitCode = 1;
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
