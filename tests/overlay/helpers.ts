// What the overlay tests share: a driver on a loop filesystem of its own (its mounts released
// before the filesystem goes), tars of trees made with GNU tar, and tars read back by tar-stream
// (not our codec), streamed so that big diffs do not sit in memory.
import type { ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import tarStream from 'tar-stream';
import { OverlayDriver } from '../../drivers/overlay/index.ts';
import { loopFs } from '../fixtures/fs.ts';

export const KINDS = ['ext4', 'xfs'] as const;
export type Kind = (typeof KINDS)[number];

export const map = (host: number) => ({
  uidmap: [{ container_id: 0, host_id: host, size: 65536 }],
  gidmap: [{ container_id: 0, host_id: host, size: 65536 }],
});

export interface Env {
  base: string;
  d: OverlayDriver;
}

/** A driver on a fresh loop filesystem (with a run root there when runHome), its mounts released by a teardown. */
export function setup(t: ExecutionContext, kind: Kind, size = 512 << 20, opts: { runHome?: boolean } = {}): Env {
  const base = loopFs(t, kind, size);
  const d = new OverlayDriver(path.join(base, 'root', 'overlay'), opts.runHome ? path.join(base, 'run', 'overlay') : undefined);
  t.teardown(() => d.cleanup());
  return { base, d };
}

/** A tar of a tree made by fill, written next to the store: PAX, so ns times and xattrs are in it. */
export function tarOf(env: Env, name: string, fill: (dir: string) => void): string {
  const dir = path.join(env.base, `${name}-src`);
  fs.mkdirSync(dir);
  fill(dir);
  const out = path.join(env.base, `${name}.tar`);
  execFileSync('tar', ['--format=posix', '--xattrs', '--xattrs-include=*', '--numeric-owner', '-C', dir, '-cf', out, '.']);
  return out;
}

export async function apply(d: OverlayDriver, id: string, tar: string): Promise<void> {
  const fd = fs.openSync(tar, 'r');
  try {
    await d.applyDiff(id, undefined, fd);
  } finally {
    fs.closeSync(fd);
  }
}

export async function diffTo(env: Env, id: string, parent: string | undefined, name: string, opts: Parameters<OverlayDriver['diff']>[3] = {}): Promise<string> {
  const out = path.join(env.base, name);
  const fd = fs.openSync(out, 'w');
  try {
    await env.d.diff(id, parent, fd, opts);
  } finally {
    fs.closeSync(fd);
  }
  return out;
}

/** Every header field of an entry, the PAX records and a hash of the body. */
export interface TarEntryFacts {
  name: string;
  type: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: string;
  linkname: string | null | undefined;
  devmajor: number | undefined;
  devminor: number | undefined;
  pax: Record<string, string>;
  sha256: string;
}

/** The entries of a tar file as tar-stream reads them, in order. */
export async function tarFacts(file: string): Promise<TarEntryFacts[]> {
  const out: TarEntryFacts[] = [];
  const ex = tarStream.extract();
  ex.on('entry', (h, stream, next) => {
    const hash = createHash('sha256');
    stream.on('data', (b: unknown) => void hash.update(b as Buffer));
    stream.on('end', () => {
      const pax = (h.pax ?? {}) as Record<string, string>;
      out.push({
        name: h.name.replace(/^\.\//, '').replace(/\/$/, ''),
        type: h.type ?? 'file',
        mode: h.mode ?? 0,
        uid: h.uid ?? 0,
        gid: h.gid ?? 0,
        size: h.size ?? 0,
        mtime: pax.mtime ?? String((h.mtime?.getTime() ?? 0) / 1000),
        linkname: h.linkname,
        devmajor: h.devmajor,
        devminor: h.devminor,
        pax,
        sha256: hash.digest('hex'),
      });
      next();
    });
  });
  await new Promise<void>((resolve, reject) => {
    const src = fs.createReadStream(file);
    src.on('error', reject);
    ex.on('error', reject);
    ex.on('finish', resolve);
    src.pipe(ex);
  });
  return out;
}

/** [name, type, mode] of every entry of a tar, read by tar-stream. */
export async function tarEntries(file: string): Promise<Array<[string, string, number]>> {
  return (await tarFacts(file)).map((e) => [e.name, e.type, e.mode]);
}

/** The xattr overlayfs puts on an upper file whose body is still in a lower (metacopy=on). */
export const METACOPY_XATTR = 'trusted.overlay.metacopy';

/** uid, gid and path of everything below dir, by find(1) (not the code under test). */
export function owners(dir: string): Array<[number, number, string]> {
  const out = execFileSync('find', [dir, '-mindepth', '1', '-printf', '%U %G %P\\0'], { encoding: 'utf8', maxBuffer: 1 << 30 });
  return out
    .split('\0')
    .filter(Boolean)
    .map((l) => {
      const [u, g, ...rest] = l.split(' ');
      return [Number(u), Number(g), rest.join(' ')];
    });
}

/** Regular files below dir with their st_blocks, by find(1). */
export function fileBlocks(dir: string): Array<[string, number]> {
  const out = execFileSync('find', [dir, '-type', 'f', '-printf', '%b %p\\0'], { encoding: 'utf8', maxBuffer: 1 << 30 });
  return out
    .split('\0')
    .filter(Boolean)
    .map((l) => {
      const i = l.indexOf(' ');
      return [l.slice(i + 1), Number(l.slice(0, i))];
    });
}

/** Data extents of the files as FIEMAP reports them (filefrag; xattr blocks are not data). */
export function dataExtents(files: string[]): number {
  let n = 0;
  for (let i = 0; i < files.length; i += 2000) {
    const out = execFileSync('filefrag', files.slice(i, i + 2000), { encoding: 'utf8', maxBuffer: 1 << 28 });
    for (const m of out.matchAll(/: (\d+) extents? found$/gm)) n += Number(m[1]);
  }
  return n;
}

/** Whether two trees hold the same names and contents (diff -r, which compares no metadata). */
export function sameContents(a: string, b: string): boolean {
  try {
    execFileSync('diff', ['-r', '--no-dereference', '-q', a, b], { stdio: 'pipe' });
    return true;
  } catch {
    return false;
  }
}
