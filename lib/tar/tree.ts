// The one walk of a directory tree: depth-first, parents before children, names in sorted
// order (so a tree always gives the same tar), lstat with nanosecond times, xattrs with raw
// bytes. The tar writer, the two-tree diff, the tree copy and the chown walk all use it.
import fs from 'node:fs';
import path from 'node:path';
import { native } from '../native.ts';
import type { OwnerMapper } from '../idmap.ts';
import type { EntryType, TarEntry } from './types.ts';

export interface TreeNode {
  /** path relative to the walked root, '.' for the root itself */
  rel: string;
  st: fs.BigIntStats;
  /** raw xattrs, when asked for and present */
  xattrs?: Map<string, Buffer>;
  /** symlink target */
  link?: string;
}

const NS = 1_000_000_000n;

export function readXattrs(abs: string): Map<string, Buffer> | undefined {
  const names = native.llistxattr(abs);
  if (names.length === 0) return undefined;
  const out = new Map<string, Buffer>();
  for (const name of names.sort()) {
    const v = native.lgetxattr(abs, name);
    if (v !== undefined) out.set(name, v);
  }
  return out;
}

/** Stat one path of a tree (undefined when it does not exist). */
export function statNode(root: string, rel: string, withXattrs = true): TreeNode | undefined {
  const abs = rel === '.' ? root : path.join(root, rel);
  let st: fs.BigIntStats;
  try {
    st = fs.lstatSync(abs, { bigint: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENOTDIR') return undefined;
    throw err;
  }
  const node: TreeNode = { rel, st };
  if (withXattrs) node.xattrs = readXattrs(abs);
  if (st.isSymbolicLink()) node.link = fs.readlinkSync(abs);
  return node;
}

/** Sorted children names of a directory of the tree. */
export function childNames(root: string, rel: string): string[] {
  return fs.readdirSync(rel === '.' ? root : path.join(root, rel)).sort();
}

export function joinRel(dir: string, name: string): string {
  return dir === '.' ? name : `${dir}/${name}`;
}

/** Every node of the tree below root (root included when includeRoot), parents first. */
export function* walkTree(root: string, opts: { xattrs?: boolean; includeRoot?: boolean } = {}): Generator<TreeNode> {
  const withXattrs = opts.xattrs ?? true;
  const top = statNode(root, '.', withXattrs);
  if (!top) throw Object.assign(new Error(`ENOENT: no such directory '${root}'`), { code: 'ENOENT', path: root });
  if (opts.includeRoot) yield top;
  yield* walkBelow(root, '.', withXattrs);
}

export function* walkBelow(root: string, dir: string, withXattrs = true): Generator<TreeNode> {
  for (const name of childNames(root, dir)) {
    const node = statNode(root, joinRel(dir, name), withXattrs);
    if (!node) continue; // removed while we walked
    yield node;
    if (node.st.isDirectory()) yield* walkBelow(root, node.rel, withXattrs);
  }
}

export function entryType(st: fs.BigIntStats): EntryType | undefined {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'dir';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isCharacterDevice()) return 'char';
  if (st.isBlockDevice()) return 'block';
  if (st.isFIFO()) return 'fifo';
  return undefined; // sockets cannot be put in a tar
}

export function major(rdev: bigint): number {
  return Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn));
}
export function minor(rdev: bigint): number {
  return Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn));
}

/** The tar entry for a node, owners mapped to container ids when a mapper is given. */
export function entryFromNode(node: TreeNode, mapOwner?: OwnerMapper): TarEntry | undefined {
  const { st } = node;
  const type = entryType(st);
  if (!type) return undefined;
  let uid = Number(st.uid);
  let gid = Number(st.gid);
  if (mapOwner) [uid, gid] = mapOwner(uid, gid, node.rel);
  const e: TarEntry = {
    name: node.rel,
    type,
    mode: Number(st.mode & 0o7777n),
    uid,
    gid,
    size: type === 'file' ? Number(st.size) : 0,
    mtime: { sec: Number(st.mtimeNs / NS), nsec: Number(st.mtimeNs % NS) },
  };
  if (type === 'symlink') e.linkname = node.link;
  if (type === 'char' || type === 'block') {
    e.devmajor = major(st.rdev);
    e.devminor = minor(st.rdev);
  }
  if (node.xattrs?.size) e.xattrs = node.xattrs;
  return e;
}

/** Key that identifies a file across hardlinks. */
export function inodeKey(st: fs.BigIntStats): string {
  return `${st.dev}:${st.ino}`;
}
