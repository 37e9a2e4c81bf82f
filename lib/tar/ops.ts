// One tar entry -> one native apply op. Shared by extraction (bodies read from the tar) and the
// tree copy (bodies read from the source files), so both make files, links and devices alike.
import fs from 'node:fs';
import type { ApplyOp, Sha256 } from '../native.ts';
import type { TarEntry } from './types.ts';

/** trusted.overlay.* attributes are overlayfs's own machinery (whiteouts, redirects, metacopy):
 *  never taken from a tar or a copied tree, only set by the driver itself. */
export const OVERLAY_XATTR_PREFIX = 'trusted.overlay.';

export interface BodySource {
  srcFd: number;
  /** offset of the body in srcFd; -1: read sequentially (pipes) */
  srcOffset: number;
  hash?: Sha256;
}

export function entryOp(e: TarEntry, uid: number, gid: number, body?: BodySource): ApplyOp {
  const xattrs = e.xattrs ? [...e.xattrs].filter(([k]) => !k.startsWith(OVERLAY_XATTR_PREFIX)) : undefined;
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
