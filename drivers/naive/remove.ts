// Removing a layer's tree: shared by every driver, and free of the native addon so that drivers
// can remove a layer without loading it.
import fs from 'node:fs';
import path from 'node:path';

/**
 * rm -r that also gets through directories without write permission (a base layer's root is
 * 0555; an unprivileged owner cannot unlink inside it until it is made writable).
 */
export function removeTree(dir: string): void {
  try {
    fs.rmSync(dir, { recursive: true, force: true });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EACCES' && code !== 'EPERM') throw err;
    makeDirsWritable(dir);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function makeDirsWritable(dir: string): void {
  const st = fs.lstatSync(dir);
  if (!st.isDirectory()) return;
  fs.chmodSync(dir, (st.mode & 0o7777) | 0o700);
  for (const name of fs.readdirSync(dir)) makeDirsWritable(path.join(dir, name));
}
