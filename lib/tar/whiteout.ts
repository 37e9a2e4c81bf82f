// AUFS whiteouts, the form deletions take in layer tars: '.wh.<name>' deletes <name> in its
// directory, '.wh..wh..opq' makes its directory opaque, other '.wh..wh.*' names are AUFS's own
// bookkeeping (hardlink dirs such as '.wh..wh.plnk') and carry nothing to extract.
import fs from 'node:fs';
import type { ApplyOp } from '../native.ts';
import type { TreeNode } from './tree.ts';
import type { TarEntry } from './types.ts';

export const WHITEOUT_PREFIX = '.wh.';
export const WHITEOUT_META_PREFIX = '.wh..wh.';
export const OPAQUE_WHITEOUT = '.wh..wh..opq';

export type Whiteout =
  /** `dir` is to hide what lower layers have in it */
  | { kind: 'opaque'; dir: string }
  /** `target` (a path in the same directory as the whiteout) is deleted */
  | { kind: 'whiteout'; target: string }
  /** AUFS bookkeeping: skip the entry */
  | { kind: 'meta' };

/**
 * What a normalized entry name (or a bare base name) means as a whiteout, or undefined for an
 * ordinary name. Paths come back in the same form as `name`: relative, '.' for the root.
 */
export function parseWhiteout(name: string): Whiteout | undefined {
  const slash = name.lastIndexOf('/');
  // cheap test first: almost no names are whiteouts
  if (!name.startsWith(WHITEOUT_PREFIX, slash + 1)) return undefined;
  const base = slash < 0 ? name : name.slice(slash + 1);
  const dir = slash < 0 ? '.' : name.slice(0, slash);
  if (base === OPAQUE_WHITEOUT) return { kind: 'opaque', dir };
  if (base.startsWith(WHITEOUT_META_PREFIX)) return { kind: 'meta' };
  const target = base.slice(WHITEOUT_PREFIX.length);
  // '.wh.', '.wh..' and '.wh...' would delete the directory itself or its parent: not whiteouts
  if (target === '' || target === '.' || target === '..') return undefined;
  return { kind: 'whiteout', target: join(dir, target) };
}

function join(dir: string, name: string): string {
  return dir === '.' || dir === '' ? name : `${dir}/${name}`;
}

/** 'a/b' -> 'a/.wh.b' */
export function whiteoutName(path: string): string {
  const i = path.lastIndexOf('/');
  return i < 0 ? WHITEOUT_PREFIX + path : `${path.slice(0, i)}/${WHITEOUT_PREFIX}${path.slice(i + 1)}`;
}

/** 'a' -> 'a/.wh..wh..opq', '.' -> '.wh..wh..opq' */
export function opaqueName(dir: string): string {
  return join(dir, OPAQUE_WHITEOUT);
}

// ---- The overlayfs form of the same deletions, and the one converter between the two forms ----
//
// overlayfs marks a deletion in an upper dir as a char 0/0 device of the deleted name, and an
// opaque directory with trusted.overlay.opaque=y. tar -> overlay happens when the overlay driver
// applies a layer into its diff dir (extract.ts, whiteouts: 'overlay'); overlay -> tar when it
// writes a diff straight from that dir (drivers/overlay/diff.ts).

/** overlayfs's own xattrs (whiteouts, redirects, metacopy, origin, ...): never taken from a tar nor
 *  carried to another inode, only set by overlayfs or by the converter below. */
export const OVERLAY_XATTR_PREFIX = 'trusted.overlay.';
/** 'y' on a directory: what lower layers have in it is hidden */
export const OVERLAY_OPAQUE_XATTR = `${OVERLAY_XATTR_PREFIX}opaque`;
/** on an upper file holding metadata only: its data is in a lower */
export const OVERLAY_METACOPY_XATTR = `${OVERLAY_XATTR_PREFIX}metacopy`;
/** on a renamed upper directory: its contents are found in the lowers under this name */
export const OVERLAY_REDIRECT_XATTR = `${OVERLAY_XATTR_PREFIX}redirect`;

export function isOverlayXattr(name: string): boolean {
  return name.startsWith(OVERLAY_XATTR_PREFIX);
}

/** tar -> overlay: the xattr that makes a directory opaque */
export function overlayOpaqueXattr(): [string, Buffer] {
  return [OVERLAY_OPAQUE_XATTR, Buffer.from('y')];
}

/** tar -> overlay: the char 0/0 device that hides `target` */
export function overlayWhiteoutOp(target: string, uid: number, gid: number, e: Pick<TarEntry, 'mtime' | 'atime'>): ApplyOp {
  return { op: 'mknod', path: target, mode: fs.constants.S_IFCHR, major: 0, minor: 0, uid, gid, mtime: e.mtime, atime: e.atime };
}

/** overlay -> tar: whether an upper-dir node is a whiteout (a char 0/0 device) */
export function isOverlayWhiteout(node: TreeNode): boolean {
  return node.st.isCharacterDevice() && node.st.rdev === 0n;
}

/** overlay -> tar: whether an upper-dir node is an opaque directory */
export function isOverlayOpaque(node: TreeNode): boolean {
  return node.st.isDirectory() && node.xattrs?.get(OVERLAY_OPAQUE_XATTR)?.toString() === 'y';
}

/** The tar entry of a whiteout for `path`: an empty file (owner, mode and time as the writer chooses). */
export function whiteoutEntry(path: string, meta: Pick<TarEntry, 'mode' | 'uid' | 'gid' | 'mtime'>): TarEntry {
  return { name: whiteoutName(path), type: 'file', size: 0, ...meta };
}

/** The tar entry marking directory `dir` opaque: an empty file after the directory's own entry. */
export function opaqueEntry(dir: string, meta: Pick<TarEntry, 'mode' | 'uid' | 'gid' | 'mtime'>): TarEntry {
  return { name: opaqueName(dir), type: 'file', size: 0, ...meta };
}
