// AUFS whiteouts, the form deletions take in layer tars.
export const WHITEOUT_PREFIX = '.wh.';
export const WHITEOUT_META_PREFIX = '.wh..wh.';
export const OPAQUE_WHITEOUT = '.wh..wh..opq';

export type Whiteout = { kind: 'opaque' } | { kind: 'whiteout'; target: string } | { kind: 'meta' };

/** What a base name means as a whiteout, or undefined for an ordinary name. */
export function parseWhiteout(base: string): Whiteout | undefined {
  if (!base.startsWith(WHITEOUT_PREFIX)) return undefined;
  if (base === OPAQUE_WHITEOUT) return { kind: 'opaque' };
  if (base.startsWith(WHITEOUT_META_PREFIX)) return { kind: 'meta' }; // e.g. .wh..wh.plnk: AUFS bookkeeping
  const target = base.slice(WHITEOUT_PREFIX.length);
  if (target === '' || target === '.' || target === '..') return undefined;
  return { kind: 'whiteout', target };
}

function join(dir: string, name: string): string {
  return dir === '.' || dir === '' ? name : `${dir}/${name}`;
}

/** 'a/b' -> 'a/.wh.b' */
export function whiteoutName(rel: string): string {
  const i = rel.lastIndexOf('/');
  return i < 0 ? WHITEOUT_PREFIX + rel : `${rel.slice(0, i)}/${WHITEOUT_PREFIX}${rel.slice(i + 1)}`;
}

/** 'a' -> 'a/.wh..wh..opq' */
export function opaqueName(dir: string): string {
  return join(dir, OPAQUE_WHITEOUT);
}
