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

/** a fifo with `cat` on the other end: it writes `from` into it, or reads it into `to`;
 *  killed when the test ends if it is still waiting on the fifo */
export function fifoWithCat(t: { teardown(fn: () => void): void }, dir: string, name: string, opts: { from: string } | { to: string }): { fifo: string; done: Promise<number>; child: ChildProcess } {
  const fifo = path.join(dir, name);
  execFileSync('mkfifo', [fifo]);
  const cmd = 'from' in opts ? `exec cat "$1" > "$2"` : `exec cat "$2" > "$1"`;
  const child = spawn('sh', ['-c', cmd, 'sh', 'from' in opts ? opts.from : opts.to, fifo], { stdio: 'ignore' });
  const done = new Promise<number>((resolve) => child.once('exit', (code) => resolve(code ?? -1)));
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill();
  });
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

// Tests in a file run concurrently in one process and fd numbers are reused at once, so a
// teardown must never close a number that was closed early and handed to another test since.
const owners = new Map<number, { open: boolean }>();

/** an fd closed when the test ends, unless closeEarly closed it first */
export function fdOf(t: { teardown(fn: () => void): void }, p: string, flags: string | number, mode?: number): number {
  const fd = fs.openSync(p, flags, mode);
  const owner = { open: true };
  owners.set(fd, owner);
  t.teardown(() => {
    if (!owner.open) return;
    owner.open = false;
    if (owners.get(fd) === owner) owners.delete(fd);
    fs.closeSync(fd);
  });
  return fd;
}

/** close an fdOf fd now (a pipe's writer, so the reader sees EOF) */
export function closeEarly(fd: number): void {
  const owner = owners.get(fd);
  if (!owner?.open) throw new Error(`closeEarly: fd ${fd} is not an open fdOf fd`);
  owner.open = false;
  owners.delete(fd);
  fs.closeSync(fd);
}
