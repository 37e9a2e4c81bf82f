// The direct Diff of an overlay layer (the overlay driver's fast path over the naive differ): its
// diff dir already holds exactly its changes against its nearest lower, in overlayfs's form.
// Written as a tar it only needs the whiteouts turned back into the AUFS form layer tars use, by
// the converter in lib/tar/whiteout.ts: a char 0/0 device <dir>/<name> becomes '<dir>/.wh.<name>'
// and a directory with trusted.overlay.opaque=y is followed by '<dir>/.wh..wh..opq'.
import fs from 'node:fs';
import path from 'node:path';
import { containerMapper } from '../../lib/idmap.ts';
import { LayersError } from '../../lib/errors.ts';
import { walkTree } from '../../lib/tar/tree.ts';
import { decodeName, fsPath } from '../../lib/tar/names.ts';
import {
  isOverlayOpaque,
  isOverlayWhiteout,
  isOverlayXattr,
  opaqueEntry,
  OVERLAY_METACOPY_XATTR,
  OVERLAY_REDIRECT_XATTR,
  whiteoutEntry,
} from '../../lib/tar/whiteout.ts';
import { nodeItem, writeTar, type TarItem } from '../../lib/tar/write.ts';
import type { Change, DiffOptions } from '../driver.ts';

/** Tar items for an overlay diff dir, whiteouts in AUFS form (as the peer writes them) and no trusted.overlay.* xattrs. */
export function* overlayDiffItems(diffDir: string, opts: DiffOptions = {}): Generator<TarItem> {
  const mapOwner = containerMapper(opts.idMappings);
  const seen = new Map<string, string>();
  for (const node of walkTree(diffDir)) {
    const item = nodeItem(node, seen, mapOwner);
    if (!item) continue;
    const e = item.entry;
    if (isOverlayWhiteout(node)) {
      // owner and time of the device; an empty 0600 file, as the peer makes it
      yield { entry: whiteoutEntry(node.rel, { mode: 0o600, uid: e.uid, gid: e.gid, mtime: e.mtime }) };
      continue;
    }
    // a metacopy upper (a peer that mounted with metacopy=on) holds metadata only: its data is in a lower
    if (e.type === 'file' && node.xattrs?.has(OVERLAY_METACOPY_XATTR))
      throw new LayersError('EDRIVER', `overlay: ${path.join(diffDir, node.rel)} is a metacopy file whose data lives in a lower layer; diffs of metacopy layers are not supported`);
    if (e.xattrs) {
      const kept = [...e.xattrs].filter(([k]) => !isOverlayXattr(k));
      e.xattrs = kept.length ? new Map(kept) : undefined;
    }
    yield item;
    // the marker takes the directory's owner and permission bits; no time, as the peer writes it
    if (isOverlayOpaque(node)) yield { entry: opaqueEntry(node.rel, { mode: e.mode & 0o777, uid: e.uid, gid: e.gid, mtime: { sec: 0, nsec: 0 } }) };
  }
}

export async function writeOverlayDiff(diffDir: string, fd: number, opts: DiffOptions = {}): Promise<void> {
  await writeTar(diffDir, overlayDiffItems(diffDir, opts), fd, { sparse: opts.sparse });
}

/**
 * The change list the direct Diff stands for, against the parent's full tree `base` (undefined
 * for a base layer): a whiteout is a Delete, what the parent also has is a Modify, the rest an
 * Add; an opaque directory deletes what the parent had in it and the layer does not.
 */
export function overlayChanges(diffDir: string, base: string | undefined): Change[] {
  const out: Change[] = [];
  // directories the parent has as real directories: only below them is a lookup in base meaningful
  const baseDirs = new Set<string>(['.']);
  for (const node of walkTree(diffDir)) {
    const p = '/' + node.rel;
    if (isOverlayWhiteout(node)) {
      out.push({ path: p, kind: 'Delete' });
      continue;
    }
    const old = base !== undefined && baseDirs.has(path.posix.dirname(node.rel)) ? fs.lstatSync(fsPath(path.join(base, node.rel)), { throwIfNoEntry: false }) : undefined;
    out.push({ path: p, kind: old ? 'Modify' : 'Add' });
    if (!old?.isDirectory() || !node.st.isDirectory()) continue;
    baseDirs.add(node.rel);
    if (!isOverlayOpaque(node)) continue;
    const own = new Set(childNames(path.join(diffDir, node.rel)));
    for (const name of childNames(path.join(base!, node.rel))) if (!own.has(name)) out.push({ path: `${p}/${name}`, kind: 'Delete' });
  }
  return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/** a directory's children, names as bytes (lib/tar/names.ts) */
function childNames(dir: string): string[] {
  return fs.readdirSync(fsPath(dir), { encoding: 'buffer' }).map((b) => decodeName(b));
}

/**
 * Whether an upper dir holds what only a mount with metacopy=on (which implies redirect_dir=on)
 * makes: a metacopy file (its data is in a lower) or a redirected directory (renamed; its
 * contents are found under the old name in the lowers). The direct Diff cannot write either.
 */
export function hasMetacopyOrRedirect(diffDir: string): boolean {
  for (const node of walkTree(diffDir)) if (node.xattrs?.has(OVERLAY_METACOPY_XATTR) || node.xattrs?.has(OVERLAY_REDIRECT_XATTR)) return true;
  return false;
}
