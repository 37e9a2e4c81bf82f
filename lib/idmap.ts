// Id mappings (docs/architecture.md, "Id mappings"): lists of {containerID, hostID, size} ranges, as in
// /proc/<pid>/uid_map, one list for uids and one for gids. Field names follow containers/storage.

import fs from 'node:fs';
import { native } from './native.ts';

export interface IdMap {
  container_id: number;
  host_id: number;
  size: number;
}

export interface IdMappings {
  uidmap: IdMap[];
  gidmap: IdMap[];
}

/** The id the kernel shows for an id outside a user namespace's ranges. */
export const OVERFLOW_ID = 65534;

export class IdMapError extends Error {
  readonly code = 'EIDMAP';
  constructor(message: string) {
    super(message);
    this.name = 'IdMapError';
  }
}

export function isIdentity(m: IdMappings | undefined): boolean {
  return !m || (m.uidmap.length === 0 && m.gidmap.length === 0);
}

export function sameMappings(a: IdMappings | undefined, b: IdMappings | undefined): boolean {
  if (isIdentity(a) || isIdentity(b)) return isIdentity(a) && isIdentity(b);
  const eq = (x: IdMap[], y: IdMap[]) =>
    x.length === y.length &&
    x.every((r, i) => r.container_id === y[i].container_id && r.host_id === y[i].host_id && r.size === y[i].size);
  return eq(a!.uidmap, b!.uidmap) && eq(a!.gidmap, b!.gidmap);
}

/** container id -> host id, or undefined when no range holds it */
export function toHost(map: IdMap[], id: number): number | undefined {
  if (map.length === 0) return id;
  for (const r of map) if (id >= r.container_id && id < r.container_id + r.size) return r.host_id + (id - r.container_id);
  return undefined;
}

/** host id -> container id, or undefined when no range holds it */
export function toContainer(map: IdMap[], id: number): number | undefined {
  if (map.length === 0) return id;
  for (const r of map) if (id >= r.host_id && id < r.host_id + r.size) return r.container_id + (id - r.host_id);
  return undefined;
}

/** The whole id space mapped to itself: what an empty list of ranges means. */
const IDENTITY_RANGE: IdMap = { container_id: 0, host_id: 0, size: 2 ** 32 - 1 };

/**
 * The ranges that show ids stored on disk through `disk` (container id c stored as disk(c)) as
 * the ids of `view` (c shown as view(c)): disk(c) -> view(c) for every c both hold, as an
 * idmapped mount's user namespace takes them (docs/images-and-containers.md, "Idmapped mounts").
 * An empty list when every id shows as itself (nothing to map).
 */
export function composeMap(disk: IdMap[], view: IdMap[]): IdMap[] {
  const d = disk.length ? disk : [IDENTITY_RANGE];
  const v = view.length ? view : [IDENTITY_RANGE];
  const out: IdMap[] = [];
  for (const a of d)
    for (const b of v) {
      const lo = Math.max(a.container_id, b.container_id);
      const hi = Math.min(a.container_id + a.size, b.container_id + b.size);
      if (lo < hi) out.push({ container_id: a.host_id + (lo - a.container_id), host_id: b.host_id + (lo - b.container_id), size: hi - lo });
    }
  out.sort((x, y) => x.container_id - y.container_id);
  // merge ranges that continue each other, so an identity comes out as one range
  const merged: IdMap[] = [];
  for (const r of out) {
    const last = merged[merged.length - 1];
    if (last && last.container_id + last.size === r.container_id && last.host_id + last.size === r.host_id) last.size += r.size;
    else merged.push({ ...r });
  }
  // every id the disk side holds shows as itself (disk and view the same mappings): nothing to map
  if (merged.length > 0 && merged.every((r) => r.container_id === r.host_id)) return [];
  return completeBijection(merged);
}

/**
 * The ranges, with every id neither side uses mapped too (the free disk ids, in order, to the
 * free shown ids): a directory of the path to a lower (the home, l/, owned by root) must show as
 * some id for root to pass it, since the kernel grants CAP_DAC_OVERRIDE only on an inode whose
 * owner the mount maps.
 */
function completeBijection(ranges: IdMap[]): IdMap[] {
  const free = (taken: Array<[number, number]>): Array<[number, number]> => {
    const out: Array<[number, number]> = [];
    let at = 0;
    for (const [lo, hi] of taken.sort((a, b) => a[0] - b[0])) {
      if (lo > at) out.push([at, lo]);
      at = Math.max(at, hi);
    }
    if (at < IDENTITY_RANGE.size) out.push([at, IDENTITY_RANGE.size]);
    return out;
  };
  const inside = free(ranges.map((r) => [r.container_id, r.container_id + r.size]));
  const outside = free(ranges.map((r) => [r.host_id, r.host_id + r.size]));
  const out = [...ranges];
  let [i, o] = [0, 0];
  while (i < inside.length && o < outside.length) {
    const n = Math.min(inside[i][1] - inside[i][0], outside[o][1] - outside[o][0]);
    out.push({ container_id: inside[i][0], host_id: outside[o][0], size: n });
    inside[i][0] += n;
    outside[o][0] += n;
    if (inside[i][0] === inside[i][1]) i++;
    if (outside[o][0] === outside[o][1]) o++;
  }
  return out.sort((x, y) => x.container_id - y.container_id);
}

/** composeMap for uids and gids; undefined when nothing needs mapping. */
export function composeMappings(disk: IdMappings | undefined, view: IdMappings | undefined): IdMappings | undefined {
  const uidmap = composeMap(disk?.uidmap ?? [], view?.uidmap ?? []);
  const gidmap = composeMap(disk?.gidmap ?? [], view?.gidmap ?? []);
  if (uidmap.length === 0 && gidmap.length === 0) return undefined;
  // an empty list means the identity here, as procMapText writes it
  return { uidmap, gidmap };
}

/** A pair of functions mapping (uid, gid) for one entry; the name is used in the error. */
export interface OwnerMapper {
  (uid: number, gid: number, name: string): [number, number];
}

/** container ids in a tar -> host ids on disk; an id outside every range is an error naming the file */
export function hostMapper(m: IdMappings | undefined): OwnerMapper | undefined {
  if (isIdentity(m)) return undefined;
  return (uid, gid, name) => {
    const u = toHost(m!.uidmap, uid);
    const g = toHost(m!.gidmap, gid);
    if (u === undefined) throw new IdMapError(`${name}: uid ${uid} is outside the id mappings`);
    if (g === undefined) throw new IdMapError(`${name}: gid ${gid} is outside the id mappings`);
    return [u, g];
  };
}

/** host ids on disk -> container ids in a tar; an id outside every range is an error naming the file */
export function containerMapper(m: IdMappings | undefined): OwnerMapper | undefined {
  if (isIdentity(m)) return undefined;
  return (uid, gid, name) => {
    const u = toContainer(m!.uidmap, uid);
    const g = toContainer(m!.gidmap, gid);
    if (u === undefined) throw new IdMapError(`${name}: uid ${uid} is outside the id mappings`);
    if (g === undefined) throw new IdMapError(`${name}: gid ${gid} is outside the id mappings`);
    return [u, g];
  };
}

/** Parse an id map flag: "0:100000:65536[,1:...]" or the peer's "0:100000:1000:1000:300000:64536" (containerID:hostID:size in threes). */
export function parseIdMap(spec: string): IdMap[] {
  // Ranges are joined by ',' (ours) or by ':' in threes (containers/storage's ParseIDMap:
  // "0:100000:1000:1000:300000:64536"); each field a decimal uint32, none empty.
  const out: IdMap[] = [];
  for (const part of spec.split(',')) {
    if (part.trim() === '') continue;
    const f = part.split(':').map((x) => x.trim());
    const bad = () => new IdMapError(`bad id mapping "${part}": want containerID:hostID:size[:containerID:hostID:size...]`);
    if (f.length === 0 || f.length % 3 !== 0 || f.some((x) => !/^[0-9]+$/.test(x))) throw bad();
    for (let i = 0; i < f.length; i += 3) {
      const [c, h, n] = [Number(f[i]), Number(f[i + 1]), Number(f[i + 2])];
      if (n === 0 || c + n > 2 ** 32 || h + n > 2 ** 32) throw bad();
      out.push({ container_id: c, host_id: h, size: n });
    }
  }
  return out;
}

/** The text of /proc/PID/uid_map (or gid_map) for a list of ranges; an empty list maps 0..2^32-2 to itself. */
export function procMapText(map: IdMap[]): string {
  if (map.length === 0) return '0 0 4294967295\n';
  return map.map((r) => `${r.container_id} ${r.host_id} ${r.size}\n`).join('');
}

/**
 * Mount source at target with the mappings attached (docs/images-and-containers.md, "Idmapped
 * mounts"): a file owned by container id c on disk shows as its host id, and a host id written
 * through the mount lands on disk as its container id. The user namespace carrying the maps lives
 * only until the mount holds it.
 */
export function mountIdmapped(source: string, target: string, m: IdMappings): void {
  const fd = native().createUserns(procMapText(m.uidmap), procMapText(m.gidmap));
  try {
    native().mountIdmapped(source, target, fd);
  } finally {
    fs.closeSync(fd);
  }
}
