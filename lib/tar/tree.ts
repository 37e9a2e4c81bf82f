// The one walk of a directory tree: depth-first, parents before children, names in sorted
// order (so a tree always gives the same tar), lstat with nanosecond times, xattrs with raw
// bytes. The tar writer, the two-tree diff, the tree copy and the chown walk all use it.
import fs from 'node:fs';
import path from 'node:path';
import { native, type ScanEntry } from '../native.ts';
import type { OwnerMapper } from '../idmap.ts';
import type { EntryType, TarEntry } from './types.ts';
import { decodeName, encodeName, fsPath, hasSurrogates } from './names.ts';

/** The part of fs.BigIntStats the walk provides (from one native scan per directory). */
export type NodeStat = Pick<
  fs.BigIntStats,
  'mode' | 'uid' | 'gid' | 'size' | 'mtimeNs' | 'rdev' | 'nlink' | 'ino' | 'dev'
  | 'isFile' | 'isDirectory' | 'isSymbolicLink' | 'isCharacterDevice' | 'isBlockDevice' | 'isFIFO' | 'isSocket'
>;

const S_IFMT = 0o170000;
const NS_PER_SEC = 1_000_000_000n;

/** A scanDir entry seen as stat fields. The bigint fields are made when read: the tar writer
 *  reads the raw numbers (`entry`) instead, which spares ~10 BigInts per file. */
class ScanStat implements NodeStat {
  constructor(readonly entry: ScanEntry) {}
  get mode() {
    return BigInt(this.entry[1]);
  }
  get uid() {
    return BigInt(this.entry[2]);
  }
  get gid() {
    return BigInt(this.entry[3]);
  }
  get size() {
    return BigInt(this.entry[4]);
  }
  get mtimeNs() {
    return BigInt(this.entry[5]) * NS_PER_SEC + BigInt(this.entry[6]);
  }
  get rdev() {
    return BigInt(this.entry[7]);
  }
  get nlink() {
    return BigInt(this.entry[8]);
  }
  get ino() {
    return BigInt(this.entry[9]);
  }
  get dev() {
    return BigInt(this.entry[10]);
  }
  private is(type: number): boolean {
    return (this.entry[1] & S_IFMT) === type;
  }
  isFile() {
    return this.is(fs.constants.S_IFREG);
  }
  isDirectory() {
    return this.is(fs.constants.S_IFDIR);
  }
  isSymbolicLink() {
    return this.is(fs.constants.S_IFLNK);
  }
  isCharacterDevice() {
    return this.is(fs.constants.S_IFCHR);
  }
  isBlockDevice() {
    return this.is(fs.constants.S_IFBLK);
  }
  isFIFO() {
    return this.is(fs.constants.S_IFIFO);
  }
  isSocket() {
    return this.is(fs.constants.S_IFSOCK);
  }
}

/** Whether a node's file has more than one name (a hardlink), without making a BigInt for scanned nodes. */
export function hasLinks(st: NodeStat): boolean {
  return st instanceof ScanStat ? st.entry[8] > 1 : st.nlink > 1n;
}

export interface TreeNode {
  /** path relative to the walked root, '.' for the root itself */
  rel: string;
  st: NodeStat;
  /** raw xattrs, when asked for and present */
  xattrs?: Map<string, Buffer>;
  /** symlink target */
  link?: string;
}


export function readXattrs(abs: string): Map<string, Buffer> | undefined {
  const names = native().llistxattr(abs);
  if (names.length === 0) return undefined;
  const out = new Map<string, Buffer>();
  for (const name of names.sort()) {
    const v = native().lgetxattr(abs, name);
    if (v !== undefined) out.set(name, v);
  }
  return out;
}

/** Stat one path of a tree (undefined when it does not exist). */
export function statNode(root: string, rel: string, withXattrs = true): TreeNode | undefined {
  const abs = rel === '.' ? root : path.join(root, rel);
  let st: fs.BigIntStats;
  try {
    st = fs.lstatSync(fsPath(abs), { bigint: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENOTDIR') return undefined;
    throw err;
  }
  const node: TreeNode = { rel, st };
  if (withXattrs) node.xattrs = readXattrs(abs);
  if (st.isSymbolicLink()) node.link = decodeName(fs.readlinkSync(fsPath(abs), { encoding: 'buffer' }));
  return node;
}

/** a name from the addon: bytes that are not UTF-8 come as a Buffer (native/names.h) */
function nameOf(n: string | Buffer): string {
  return typeof n === 'string' ? n : decodeName(n);
}

/** The children of a directory of the tree, sorted by name: one native call for all of them. */
export function childNodes(root: string, rel: string, withXattrs = true): TreeNode[] {
  return native().scanDir(rel === '.' ? root : path.join(root, rel), withXattrs).map((e) => {
    const node: TreeNode = { rel: joinRel(rel, nameOf(e[0])), st: new ScanStat(e) };
    if (e[11] !== undefined) node.link = nameOf(e[11]);
    if (e[12] !== undefined) node.xattrs = new Map(e[12].map(([k, v]) => [nameOf(k), v]));
    return node;
  });
}

/** Name order of the walk: byte order, as scanDir sorts. JS's own < compares UTF-16 units, which
 *  differs only when a name holds characters beyond U+FFFF or bytes that are not UTF-8 (names.ts). */
export function compareNames(a: string, b: string): number {
  if (a === b) return 0;
  if (hasSurrogates(a) || hasSurrogates(b)) return Buffer.compare(encodeName(a), encodeName(b));
  return a < b ? -1 : 1;
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
  for (const node of childNodes(root, dir, withXattrs)) {
    yield node;
    if (node.st.isDirectory()) yield* walkBelow(root, node.rel, withXattrs);
  }
}

export function entryType(st: NodeStat): EntryType | undefined {
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
  // scanned nodes: the numbers as scanDir gave them, no BigInt round trip (one per field per file)
  const raw = st instanceof ScanStat ? st.entry : undefined;
  let uid = raw ? raw[2] : Number(st.uid);
  let gid = raw ? raw[3] : Number(st.gid);
  if (mapOwner) [uid, gid] = mapOwner(uid, gid, node.rel);
  const e: TarEntry = {
    name: node.rel,
    type,
    mode: raw ? raw[1] & 0o7777 : Number(st.mode & 0o7777n),
    uid,
    gid,
    size: type === 'file' ? (raw ? raw[4] : Number(st.size)) : 0,
    mtime: raw ? { sec: raw[5], nsec: raw[6] } : { sec: Number(st.mtimeNs / NS_PER_SEC), nsec: Number(st.mtimeNs % NS_PER_SEC) },
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
export function inodeKey(st: NodeStat): string {
  return `${st.dev}:${st.ino}`;
}
