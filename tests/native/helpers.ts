// Shared by the native addon tests: random data, digests, fifos driven by a child process,
// and how much of a file shares its extents (a reflink/clone took no new space).
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

export function randomFile(p: string, size: number): Buffer {
  const data = randomBytes(size);
  fs.writeFileSync(p, data);
  return data;
}

/** sha256 as the sha256sum tool computes it, in our 'sha256:<hex>' form */
export function sha256sum(p: string): string {
  return 'sha256:' + execFileSync('sha256sum', [p], { encoding: 'utf8' }).split(' ')[0];
}

export function sha256(b: Buffer): string {
  return 'sha256:' + createHash('sha256').update(b).digest('hex');
}

/** a fifo with `cat` on the other end: it writes `from` into it, or reads it into `to` */
export function fifoWithCat(dir: string, name: string, opts: { from: string } | { to: string }): { fifo: string; done: Promise<number>; child: ChildProcess } {
  const fifo = path.join(dir, name);
  execFileSync('mkfifo', [fifo]);
  const cmd = 'from' in opts ? `exec cat "$1" > "$2"` : `exec cat "$2" > "$1"`;
  const child = spawn('sh', ['-c', cmd, 'sh', 'from' in opts ? opts.from : opts.to, fifo], { stdio: 'ignore' });
  const done = new Promise<number>((resolve) => child.once('exit', (code) => resolve(code ?? -1)));
  return { fifo, done, child };
}

/** bytes of the file in extents the filesystem reports as shared (FIEMAP via filefrag) */
export function sharedBytes(p: string): number {
  const out = execFileSync('filefrag', ['-s', '-v', '-b1', p], { encoding: 'utf8' });
  let shared = 0;
  for (const line of out.split('\n')) {
    // " ext: logical_offset: physical_offset: length: expected: flags:"
    const m = /^\s*\d+:\s*\d+\.\.\s*\d+:\s*\d+\.\.\s*\d+:\s*(\d+):.*shared/.exec(line);
    if (m) shared += Number(m[1]);
  }
  return shared;
}

export function fdOf(t: { teardown(fn: () => void): void }, p: string, flags: string | number, mode?: number): number {
  const fd = fs.openSync(p, flags, mode);
  t.teardown(() => {
    try {
      fs.closeSync(fd);
    } catch {
      /* already closed by the test */
    }
  });
  return fd;
}
