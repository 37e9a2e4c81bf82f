// One tar entry -> one native apply op. Shared by extraction (bodies read from the tar) and the
// tree copy (bodies read from the source files), so both make files, links and devices alike.
import fs from 'node:fs';
import type { ApplyOp, Sha256, Timespec } from '../native.ts';
import { toHost, type IdMap } from '../idmap.ts';
import type { TarEntry } from './types.ts';
import { isOverlayXattr } from './whiteout.ts';

export interface BodySource {
  srcFd: number;
  /** offset of the body in srcFd; -1: read sequentially (pipes) */
  srcOffset: number;
  hash?: Sha256;
}

/** By default trusted.overlay.* attributes (overlayfs's own machinery) are not taken from a copied
 *  tree; extraction passes the peer's rule instead (peerXattr). */
export function entryOp(e: TarEntry, uid: number, gid: number, body?: BodySource, keepXattr: (name: string) => boolean = (k) => !isOverlayXattr(k)): ApplyOp {
  const xattrs = e.xattrs ? [...e.xattrs].filter(([k]) => keepXattr(k)) : undefined;
  const times = { mtime: e.mtime, atime: e.atime };
  switch (e.type) {
    case 'file':
      if (!body) throw new Error(`${e.name}: a file entry needs a body source`);
      return { op: 'file', path: e.name, mode: e.mode, uid, gid, ...times, xattrs, ...body, size: e.size, sparse: e.sparse };
    case 'dir':
      return { op: 'dir', path: e.name, mode: e.mode, uid, gid, xattrs };
    case 'symlink':
      return { op: 'symlink', path: e.name, target: e.linkname ?? '', uid, gid, ...times, xattrs };
    case 'hardlink':
      return { op: 'hardlink', path: e.name, target: e.linkname ?? '' };
    case 'char':
    case 'block':
    case 'fifo': {
      const type = e.type === 'char' ? fs.constants.S_IFCHR : e.type === 'block' ? fs.constants.S_IFBLK : fs.constants.S_IFIFO;
      return { op: 'mknod', path: e.name, mode: type | e.mode, major: e.devmajor ?? 0, minor: e.devminor ?? 0, uid, gid, ...times, xattrs };
    }
  }
}

/** Largest time Go's time.UnixNano holds (2^63-1 ns, in 2262): the peer's system.Chtimes bound. */
const MAX_NS = 2n ** 63n - 1n;

function outsideGoChtimes(t: Timespec): boolean {
  return t.sec < 0 || (t.sec >= 9223372036 && BigInt(t.sec) * 1_000_000_000n + BigInt(t.nsec) > MAX_NS);
}

const EPOCH: Timespec = { sec: 0, nsec: 0 };

/**
 * The times the peer gives an entry (docs/tar-engine.md, "One tree", K5): the access time is never
 * before the modification time (a tar without one gets the modification time), and on anything
 * but a symlink a time before 1970 or past 2262 is set as 0, as Go's system.Chtimes does.
 */
export function peerTimes(e: TarEntry): { mtime: Timespec; atime: Timespec } {
  const later = (a: Timespec, b: Timespec) => a.sec > b.sec || (a.sec === b.sec && a.nsec >= b.nsec);
  const atime = e.atime && later(e.atime, e.mtime) ? e.atime : e.mtime;
  if (e.type === 'symlink') return { mtime: e.mtime, atime };
  return { mtime: outsideGoChtimes(e.mtime) ? EPOCH : e.mtime, atime: outsideGoChtimes(atime) ? EPOCH : atime };
}

/**
 * Which xattrs of a tar entry are set (K6): `security.selinux` never (the peer's xattrsToIgnore:
 * the label is the host's business); overlayfs's own `trusted.overlay.*` only where they are plain
 * data, on the full-tree drivers, as the peer keeps them there (on overlay they would steer the
 * mount: dropped, as before).
 */
export function peerXattr(overlay: boolean): (name: string) => boolean {
  return (k) => k !== 'security.selinux' && !(overlay && isOverlayXattr(k));
}

/**
 * For ignore_chown_errors (extraction and tree copies alike): an owner the process cannot give,
 * an id outside its user namespace (chown fails with EINVAL), becomes the process's own id, what
 * the file has when the chown is skipped, as the peer leaves it.
 */
export function givableOwners(): (uid: number, gid: number) => [number, number] {
  const uids = namespaceMap('uid_map');
  const gids = namespaceMap('gid_map');
  return (uid, gid) => [toHost(uids, uid) === undefined ? process.geteuid!() : uid, toHost(gids, gid) === undefined ? process.getegid!() : gid];
}

/** The ranges of ids that exist in this process's user namespace ('<inside> <outside> <count>' lines). */
function namespaceMap(file: 'uid_map' | 'gid_map'): IdMap[] {
  return fs
    .readFileSync(`/proc/self/${file}`, 'utf8')
    .trim()
    .split('\n')
    .map((line) => line.trim().split(/\s+/).map(Number))
    .map(([inside, outside, size]) => ({ container_id: inside, host_id: outside, size }));
}
