// Layer, image and container records as containers/storage writes them (<driver>-layers/
// layers.json, <driver>-images/images.json, <driver>-containers/containers.json): the
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
  /** named blobs stored beside the record in <driver>-layers/<id>/ (no sizes or digests, as the peer's) */
  'big-data-names'?: string[];
  [peerField: string]: unknown;
}

/** Field order of containers/storage's Layer struct (its JSON tags), which writes them in this order. */
export const LAYER_FIELDS = [
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
  'big-data-names',
];

/** An image as containers/storage writes it in <root>/<driver>-images/images.json. */
export interface ImageRecord {
  id: string;
  digest?: string;
  digests?: string[];
  names?: string[];
  'names-history'?: string[];
  /** the top layer */
  layer?: string;
  /** id-shifted copies of the top layer, made for containers with other id mappings */
  'mapped-layers'?: string[];
  metadata?: string;
  /** named blobs stored beside the record in <driver>-images/<id>/ */
  'big-data-names'?: string[];
  'big-data-sizes'?: Record<string, number>;
  'big-data-digests'?: Record<string, string>;
  created?: string;
  /** ours: `incomplete` marks an image whose removal started (finished by the next writer) */
  flags?: { incomplete?: boolean; [flag: string]: unknown };
  [peerField: string]: unknown;
}

export const IMAGE_FIELDS = [
  'id',
  'digest',
  'digests',
  'names',
  'names-history',
  'layer',
  'mapped-layers',
  'metadata',
  'big-data-names',
  'big-data-sizes',
  'big-data-digests',
  'created',
  'flags',
];

/** A container as containers/storage writes it in <root>/<driver>-containers/containers.json. */
export interface ContainerRecord {
  id: string;
  names?: string[];
  image: string;
  /** the container's read-write layer */
  layer: string;
  metadata?: string;
  'big-data-names'?: string[];
  'big-data-sizes'?: Record<string, number>;
  'big-data-digests'?: Record<string, string>;
  created?: string;
  uidmap?: IdMap[];
  gidmap?: IdMap[];
  /** the peer keeps MountLabel and ProcessLabel here */
  flags?: { [flag: string]: unknown };
  [peerField: string]: unknown;
}

export const CONTAINER_FIELDS = [
  'id',
  'names',
  'image',
  'layer',
  'metadata',
  'big-data-names',
  'big-data-sizes',
  'big-data-digests',
  'created',
  'uidmap',
  'gidmap',
  'flags',
];

/** What every record has: an id, names, and flags (`incomplete` among them). */
export interface AnyRecord {
  id: string;
  names?: string[];
  flags?: { [flag: string]: unknown };
  [field: string]: unknown;
}

/** A record that can hold data items: a layer's has only the names, an image's and a container's sizes and digests too. */
export interface BigDataRecord extends AnyRecord {
  'big-data-names'?: string[];
  'big-data-sizes'?: Record<string, number>;
  'big-data-digests'?: Record<string, string>;
}

function isEmpty(v: unknown): boolean {
  if (v === undefined || v === null || v === '' || v === 0 || v === false) return true;
  if (Array.isArray(v)) return v.length === 0;
  if (typeof v === 'object') return Object.keys(v as object).length === 0;
  return false;
}

/** The record as the peer would write it: known fields in its order, empty ones omitted (Go's omitempty). */
export function normalize<T extends AnyRecord>(r: T, fields: readonly string[]): T {
  const out: Record<string, unknown> = {};
  const flags = r.flags ? Object.fromEntries(Object.entries(r.flags).filter(([, v]) => v !== undefined && v !== false)) : undefined;
  const src: Record<string, unknown> = { ...r, flags };
  for (const k of fields) if (k === 'id' || !isEmpty(src[k])) out[k] = src[k];
  for (const [k, v] of Object.entries(src)) if (!(k in out) && !fields.includes(k) && !isEmpty(v)) out[k] = v;
  return out as T;
}

export function normalizeRecord(r: LayerRecord): LayerRecord {
  return normalize(r, LAYER_FIELDS);
}

/** The time format of containers/storage (RFC 3339, fraction without trailing zeros). */
export function rfc3339(d = new Date()): string {
  return d.toISOString().replace(/\.?0+Z$/, 'Z');
}

export function isIncomplete(r: AnyRecord): boolean {
  return r.flags?.incomplete === true;
}

/** The record whose id or one of whose names is ref. */
export function findExact<T extends AnyRecord>(records: T[], ref: string): T | undefined {
  return records.find((r) => r.id === ref) ?? records.find((r) => r.names?.includes(ref));
}

/** The one record whose id starts with ref (undefined when none or several do). */
export function findByPrefix<T extends AnyRecord>(records: T[], ref: string): T | undefined {
  if (ref === '') return undefined;
  const byPrefix = records.filter((r) => r.id.startsWith(ref));
  return byPrefix.length === 1 ? byPrefix[0] : undefined;
}

/**
 * Find a record as containers/storage does: an exact id, then a name, then an unambiguous id
 * prefix. Undefined when none (or an ambiguous prefix) matches.
 */
export function findRecord<T extends AnyRecord>(records: T[], ref: string): T | undefined {
  return findExact(records, ref) ?? findByPrefix(records, ref);
}

/** Data items whose key starts so are manifests: their digests are the image's too (the peer's ImageDigestManifestBigDataNamePrefix). */
export const MANIFEST_KEY_PREFIX = 'manifest';

/**
 * The image's digests as the peer works them out (images.go, recomputeDigests): `digest` first,
 * then any recorded `digests`, then the digest of each manifest data item, each once. The peer
 * keeps this list in memory only; `digest` on disk is the first manifest's when none was given.
 */
export function imageDigests(image: ImageRecord): string[] {
  const manifests = (image['big-data-names'] ?? []).filter((n) => n.startsWith(MANIFEST_KEY_PREFIX)).map((n) => image['big-data-digests']?.[n]);
  return [...new Set([image.digest, ...(image.digests ?? []), ...manifests].filter((d): d is string => !!d))];
}

// ---- camelCase views (docs/api.md, "Records") ----
// The API's typed views of the records, in the names of the peer's Go structs (Layer.UncompressedDigest,
// Image.TopLayer, Container.LayerID, ...). The records themselves keep the peer's JSON field names:
// they are what the files hold and what the CLI's --json prints.

export interface Layer {
  id: string;
  names: string[];
  parent?: string;
  metadata?: string;
  mountLabel?: string;
  created?: string;
  /** digest and size of the input as given (the tar itself when it was not compressed) */
  compressedDigest?: string;
  compressedSize?: number;
  /** digest and size of the tar (diff-digest, diff-size) */
  uncompressedDigest?: string;
  uncompressedSize?: number;
  /** containers/storage's archive.Compression value (see Compression) */
  compression: number;
  uids: number[];
  gids: number[];
  uidMap: IdMap[];
  gidMap: IdMap[];
  bigDataNames: string[];
}

export interface Image {
  id: string;
  digest?: string;
  digests: string[];
  names: string[];
  namesHistory: string[];
  topLayer?: string;
  mappedTopLayers: string[];
  metadata?: string;
  bigDataNames: string[];
  bigDataSizes: Record<string, number>;
  bigDataDigests: Record<string, string>;
  created?: string;
}

export interface Container {
  id: string;
  names: string[];
  imageId: string;
  layerId: string;
  metadata?: string;
  bigDataNames: string[];
  bigDataSizes: Record<string, number>;
  bigDataDigests: Record<string, string>;
  created?: string;
  uidMap: IdMap[];
  gidMap: IdMap[];
  /** the peer's MountLabel, ProcessLabel, ... */
  flags: Record<string, unknown>;
}

/** Only the fields that are set: a view has no `key: undefined` (exactOptionalPropertyTypes callers). */
function defined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

export function toLayer(r: LayerRecord): Layer {
  return defined({
    id: r.id,
    names: [...(r.names ?? [])],
    parent: r.parent,
    metadata: r.metadata,
    mountLabel: r.mountlabel,
    created: r.created,
    compressedDigest: r['compressed-diff-digest'],
    compressedSize: r['compressed-size'],
    uncompressedDigest: r['diff-digest'],
    uncompressedSize: r['diff-size'],
    compression: r.compression ?? Compression.none,
    uids: [...(r.uidset ?? [])],
    gids: [...(r.gidset ?? [])],
    uidMap: structuredClone(r.uidmap ?? []),
    gidMap: structuredClone(r.gidmap ?? []),
    bigDataNames: [...(r['big-data-names'] ?? [])],
  });
}

export function toImage(r: ImageRecord): Image {
  return defined({
    id: r.id,
    digest: r.digest,
    digests: imageDigests(r),
    names: [...(r.names ?? [])],
    namesHistory: [...(r['names-history'] ?? [])],
    topLayer: r.layer,
    mappedTopLayers: [...(r['mapped-layers'] ?? [])],
    metadata: r.metadata,
    bigDataNames: [...(r['big-data-names'] ?? [])],
    bigDataSizes: { ...r['big-data-sizes'] },
    bigDataDigests: { ...r['big-data-digests'] },
    created: r.created,
  });
}

export function toContainer(r: ContainerRecord): Container {
  return defined({
    id: r.id,
    names: [...(r.names ?? [])],
    imageId: r.image,
    layerId: r.layer,
    metadata: r.metadata,
    bigDataNames: [...(r['big-data-names'] ?? [])],
    bigDataSizes: { ...r['big-data-sizes'] },
    bigDataDigests: { ...r['big-data-digests'] },
    created: r.created,
    uidMap: structuredClone(r.uidmap ?? []),
    gidMap: structuredClone(r.gidmap ?? []),
    flags: structuredClone(r.flags ?? {}),
  });
}

/**
 * How records leave the store (docs/api.md, "Records"): each is a copy, so callers cannot change
 * the tables. The API's `Store` gives the camelCase views (VIEWS); the CLI's gives the records in
 * the peer's field order (PEER_RECORDS), as layers.json holds them and `--json` prints them.
 */
export interface RecordFace<L, I, C> {
  layer(r: LayerRecord): L;
  image(r: ImageRecord): I;
  container(r: ContainerRecord): C;
}

export const VIEWS: RecordFace<Layer, Image, Container> = { layer: toLayer, image: toImage, container: toContainer };

export const PEER_RECORDS: RecordFace<LayerRecord, ImageRecord, ContainerRecord> = {
  layer: (r) => structuredClone(normalizeRecord(r)),
  image: (r) => structuredClone(normalize(r, IMAGE_FIELDS)),
  container: (r) => structuredClone(normalize(r, CONTAINER_FIELDS)),
};
