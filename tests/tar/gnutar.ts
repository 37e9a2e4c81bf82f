// Helpers for the header codec tests: GNU tar as an independent writer and reader, getfattr
// for xattr bytes, and small tools to list a tar with our reader and to forge bad headers.
import type { ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import tarStream from 'tar-stream';
import { END_OF_ARCHIVE, encodeHeader, padding, readEntry, sparseMapBlock } from '../../lib/tar/header.ts';
import { FileSource, type BlockSource } from '../../lib/tar/source.ts';
import type { ReadEntry, TarEntry } from '../../lib/tar/types.ts';
import { tempStore } from '../fixtures/store.ts';
import { differences, snapshot } from '../fuzz/compare.ts';

export function run(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

export function gnuTar(args: string[]): string {
  return run('tar', args);
}

/** every entry of a tar file, read with our codec (bodies skipped, never read) */
export function readAll(file: string): ReadEntry[] {
  const fd = fs.openSync(file, 'r');
  try {
    return readSource(new FileSource(fd));
  } finally {
    fs.closeSync(fd);
  }
}

export function readSource(src: BlockSource): ReadEntry[] {
  const out: ReadEntry[] = [];
  for (let e = readEntry(src); e; e = readEntry(src)) {
    out.push(e);
    src.skip(e.size + padding(e.size));
  }
  return out;
}

/** the `size` bytes at `dataOffset`: what the tar stores as the entry's body */
export function storedBody(file: string, e: ReadEntry): Buffer {
  const fd = fs.openSync(file, 'r');
  try {
    const b = Buffer.alloc(e.size);
    let got = 0;
    while (got < e.size) {
      const n = fs.readSync(fd, b, got, e.size - got, e.dataOffset + got);
      if (n === 0) break;
      got += n;
    }
    return b.subarray(0, got);
  } finally {
    fs.closeSync(fd);
  }
}

/** a sparse entry's file rebuilt from its map and stored data segments */
export function unsparse(e: ReadEntry, stored: Buffer): Buffer {
  const out = Buffer.alloc(e.sparse!.realSize);
  let at = 0;
  for (const s of e.sparse!.map) {
    stored.copy(out, s.offset, at, at + s.length);
    at += s.length;
  }
  return out;
}

/** xattrs of a path (not followed) with their raw bytes, as getfattr reports them */
export function getXattrs(p: string): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  const text = run('getfattr', ['-h', '-d', '-m', '-', '-e', 'hex', '--absolute-names', p]);
  for (const line of text.split('\n')) {
    const m = /^([^#=][^=]*)=0x([0-9a-f]*)$/.exec(line);
    if (m) out.set(m[1], Buffer.from(m[2], 'hex'));
  }
  return out;
}

export function setXattr(p: string, name: string, value: Buffer): void {
  run('setfattr', ['-h', '-n', name, '-v', '0x' + value.toString('hex'), p]);
}

/** an entry with its body, as a test builds it */
export interface Item {
  entry: TarEntry;
  body?: Buffer;
}

/** encode items into a tar file: headers, sparse maps, bodies, padding, end blocks */
export function writeTarFile(file: string, items: Item[], align?: number): void {
  const parts: Buffer[] = [];
  let offset = 0;
  const add = (b: Buffer) => {
    parts.push(b);
    offset += b.length;
  };
  for (const { entry, body } of items) {
    add(encodeHeader(entry, align ? { alignTo: { offset, block: align } } : undefined));
    let stored = 0;
    if (entry.sparse) {
      const map = sparseMapBlock(entry.sparse);
      add(map);
      stored += map.length;
    }
    if (body) {
      if (body.length !== entry.size) throw new Error(`${entry.name}: body of ${body.length} bytes for size ${entry.size}`);
      add(body);
      stored += body.length;
    }
    add(Buffer.alloc(padding(stored)));
  }
  add(END_OF_ARCHIVE);
  fs.writeFileSync(file, Buffer.concat(parts));
}

/** name, type and size of each entry, as tar-stream reads the tar */
export async function tarStreamList(file: string): Promise<Array<{ name: string; type: string; size: number }>> {
  const out: Array<{ name: string; type: string; size: number }> = [];
  const ex = tarStream.extract();
  const done = new Promise<void>((resolve, reject) => {
    ex.on('entry', (h, stream, next) => {
      out.push({ name: h.name, type: String(h.type), size: h.size ?? 0 });
      stream.on('end', () => next());
      stream.resume();
    });
    ex.on('finish', () => resolve());
    ex.on('error', reject);
  });
  Readable.from([fs.readFileSync(file)]).pipe(ex);
  await done;
  return out;
}

/** tar-stream's type name for ours */
export const TAR_STREAM_TYPE: Record<TarEntry['type'], string> = {
  file: 'file',
  hardlink: 'link',
  symlink: 'symlink',
  char: 'character-device',
  block: 'block-device',
  dir: 'directory',
  fifo: 'fifo',
};

/** Linux dev_t -> major/minor (glibc's encoding) */
export function major(rdev: bigint): number {
  return Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn));
}
export function minor(rdev: bigint): number {
  return Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn));
}

/** recompute a header block's checksum after a test edited it */
export function fixChecksum(block: Buffer): Buffer {
  block.fill(0x20, 148, 156);
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += block[i];
  block.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'latin1');
  return block;
}

/** a raw PAX extended header ('x' or 'g') holding these records, exactly as given */
export function paxBlocks(records: Array<[string, Buffer | string]>, type: 'x' | 'g' = 'x', headerName = 'PaxHeaders/x'): Buffer {
  const recs = records.map(([k, v]) => {
    const value = typeof v === 'string' ? Buffer.from(v) : v;
    const rest = Buffer.byteLength(` ${k}=`) + value.length + 1;
    let len = rest + 1;
    while (String(len).length + rest !== len) len = String(len).length + rest;
    return Buffer.concat([Buffer.from(`${len} ${k}=`), value, Buffer.from('\n')]);
  });
  const data = Buffer.concat(recs);
  const header = encodeHeader({ name: headerName, type: 'file', mode: 0o644, uid: 0, gid: 0, size: data.length, mtime: { sec: 0, nsec: 0 } });
  header[156] = type.charCodeAt(0);
  fixChecksum(header);
  return Buffer.concat([header, data, Buffer.alloc(padding(data.length))]);
}

/** every file below dir (relative names), for comparing two extracted trees */
export function listTree(dir: string): string[] {
  const out: string[] = [];
  const walk = (rel: string) => {
    for (const name of fs.readdirSync(path.join(dir, rel)).sort()) {
      const r = rel ? `${rel}/${name}` : name;
      out.push(r);
      if (fs.lstatSync(path.join(dir, r)).isDirectory()) walk(r);
    }
  };
  walk('');
  return out;
}

/** import the tar with both tools; both trees, after asserting they are the same */
export async function bothTrees(t: ExecutionContext, bytes: Buffer): Promise<string[]> {
  const s = tempStore(t);
  const tar = path.join(s.dir, 'x.tar');
  fs.writeFileSync(tar, Buffer.concat([bytes, END_OF_ARCHIVE]));
  const ours = await s.cli(['import-layer', '-f', tar]);
  t.is(ours.code, 0, ours.stderr);
  const peer = s.peer(['import-layer', '-f', tar]);
  t.is(peer.code, 0, peer.stderr);
  const dirs = [ours.stdout, peer.stdout].map((out) => path.join(s.root, 'vfs', 'dir', out.split('\n')[0]));
  t.deepEqual(differences(snapshot(dirs[0], { times: true }), snapshot(dirs[1], { times: true })), []);
  return dirs;
}
