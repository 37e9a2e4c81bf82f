// AUFS whiteouts, the form deletions take in layer tars: '.wh.<name>' deletes <name> in its
// directory, '.wh..wh..opq' makes its directory opaque, other '.wh..wh.*' names are AUFS's own
// bookkeeping (hardlink dirs such as '.wh..wh.plnk') and carry nothing to extract.
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
