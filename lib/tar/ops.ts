// One tar entry -> one native apply op. Shared by extraction (bodies read from the tar) and the
// tree copy (bodies read from the source files), so both make files, links and devices alike.
import fs from 'node:fs';
import type { ApplyOp, Sha256 } from '../native.ts';
import { toHost, type IdMap } from '../idmap.ts';
import type { TarEntry } from './types.ts';
import { isOverlayXattr } from './whiteout.ts';

export interface BodySource {
  srcFd: number;
  /** offset of the body in srcFd; -1: read sequentially (pipes) */
  srcOffset: number;
  hash?: Sha256;
}

/** trusted.overlay.* attributes (overlayfs's own machinery) are never taken from a tar or a copied tree. */
export function entryOp(e: TarEntry, uid: number, gid: number, body?: BodySource): ApplyOp {
  const xattrs = e.xattrs ? [...e.xattrs].filter(([k]) => !isOverlayXattr(k)) : undefined;
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
