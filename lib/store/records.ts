// Layer records as containers/storage writes them in <root>/<driver>-layers/layers.json: the
// same field names, the same order, empty fields left out. Fields we do not interpret (the
// peer's toc-digest, big-data-names, ...) are kept as they are, so a store the peer made
// round-trips through ours.
import type { IdMap } from '../idmap.ts';

/** containers/storage's archive.Compression values */
export const Compression = { none: 0, bzip2: 1, gzip: 2, xz: 3, zstd: 4 } as const;

export interface LayerRecord {
  id: string;
  names?: string[];
  parent?: string;
  metadata?: string;
  mountlabel?: string;
  /** RFC 3339 time */
  created?: string;
  'compressed-diff-digest'?: string;
  'compressed-size'?: number;
  'diff-digest'?: string;
  'diff-size'?: number;
  compression?: number;
  uidset?: number[];
  gidset?: number[];
  flags?: { incomplete?: boolean; [flag: string]: unknown };
  uidmap?: IdMap[];
  gidmap?: IdMap[];
  [peerField: string]: unknown;
}

const ORDER = [
  'id',
  'names',
  'parent',
  'metadata',
  'mountlabel',
  'created',
  'compressed-diff-digest',
  'compressed-size',
  'diff-digest',
  'toc-digest',
  'diff-size',
  'compression',
  'uidset',
  'gidset',
  'flags',
  'uidmap',
  'gidmap',
];

function isEmpty(v: unknown): boolean {
  if (v === undefined || v === null || v === '' || v === 0 || v === false) return true;
  if (Array.isArray(v)) return v.length === 0;
  if (typeof v === 'object') return Object.keys(v as object).length === 0;
  return false;
}

/** The record as the peer would write it: known fields in its order, empty ones omitted (Go's omitempty). */
export function normalizeRecord(r: LayerRecord): LayerRecord {
  const out: Record<string, unknown> = {};
  const flags = r.flags ? Object.fromEntries(Object.entries(r.flags).filter(([, v]) => v !== undefined && v !== false)) : undefined;
  const src: Record<string, unknown> = { ...r, flags };
  for (const k of ORDER) if (k === 'id' || !isEmpty(src[k])) out[k] = src[k];
  for (const [k, v] of Object.entries(src)) if (!(k in out) && !ORDER.includes(k) && !isEmpty(v)) out[k] = v;
  return out as LayerRecord;
}

/** The time format of containers/storage (RFC 3339, fraction without trailing zeros). */
export function rfc3339(d = new Date()): string {
  return d.toISOString().replace(/\.?0+Z$/, 'Z');
}

export function isIncomplete(r: LayerRecord): boolean {
  return r.flags?.incomplete === true;
}

/**
 * Find a layer as containers/storage does: an exact id, then a name, then an unambiguous id
 * prefix. Undefined when none (or an ambiguous prefix) matches.
 */
export function findLayer(records: LayerRecord[], ref: string): LayerRecord | undefined {
  const byId = records.find((r) => r.id === ref);
  if (byId) return byId;
  const byName = records.find((r) => r.names?.includes(ref));
  if (byName) return byName;
  if (ref === '') return undefined;
  const byPrefix = records.filter((r) => r.id.startsWith(ref));
  return byPrefix.length === 1 ? byPrefix[0] : undefined;
}
