// Rechunk plans (docs/rechunk.md): which of an image's files go to which new layer, and in what
// order. Pure: the inventory of the flattened tree goes in, a plan comes out; the store part
// (lib/rechunk/rechunk.ts) walks the tree and makes the layers.
//
// The heuristic, in short (docs/rechunk.md, "The heuristic"): hardlinked names are one unit; the
// biggest files (BIG_FILE_BYTES and up) get a layer each, using up to half the budget; the rest is
// grouped by package (dpkg's *.list files) or else by directory, a directory bigger than its share
// split by its subdirectories; groups are packed largest first into the emptiest layer. With a
// previous image, files keep the layer index they had there.
import { LayersError } from '../errors.ts';
import { compareNames } from '../tar/tree.ts';

/** The plan format (docs/rechunk.md, "Plan files"): layers bottom first, paths in tar order. */
export interface RechunkPlan {
  version: 1;
  /** mtimes later than this (seconds since the epoch) are written as this */
  sourceDateEpoch?: number;
  layers: PlanLayer[];
}

export interface PlanLayer {
  /** the layer's files (non-directories and empty directories), relative to the root, in tar
   *  order; the directories above each are added before it, once per layer */
  paths: string[];
  /** what the heuristic put here (package names, directories, "big:<path>"); informational */
  groups?: string[];
  /** bytes of file data; informational */
  bytes?: number;
}

/** One leaf of the flattened tree: a non-directory or an empty directory. */
export interface Leaf {
  path: string;
  /** file size; 0 for the rest */
  size: number;
  /** set for files with more than one name: names with the same key are one unit */
  inode?: string;
}

export interface HeuristicInput {
  /** the leaves, in walk order (sorted by name, parents first) */
  leaves: Leaf[];
  maxLayers: number;
  /** path -> package that owns it (dpkg's lists), when the image has a package database */
  owners?: Map<string, string>;
  /** path -> layer index it had in the previous image (--like) */
  like?: Map<string, number>;
  sourceDateEpoch?: number;
}

/** Files this big or bigger get a layer of their own while the budget for them lasts. */
export const BIG_FILE_BYTES = 4 << 20;

/** Hardlinked names, kept together. */
interface Unit {
  paths: string[];
  bytes: number;
}

/** A file's weight for packing: its data, in tar blocks, plus a header. */
const weight = (size: number) => Math.ceil(size / 512) * 512 + 512;

function units(leaves: Leaf[]): Unit[] {
  const out: Unit[] = [];
  const byInode = new Map<string, Unit>();
  for (const l of leaves) {
    const same = l.inode !== undefined ? byInode.get(l.inode) : undefined;
    if (same) {
      same.paths.push(l.path);
      continue;
    }
    const u = { paths: [l.path], bytes: weight(l.size) };
    out.push(u);
    if (l.inode !== undefined) byInode.set(l.inode, u);
  }
  return out;
}

const sumBytes = (us: Unit[]) => us.reduce((n, u) => n + u.bytes, 0);

/**
 * Units grouped by directory: a directory's units are one group while they weigh no more than
 * target; a heavier one is split into its subdirectories (each a group or split again) and the
 * files directly in it (one group, keyed by the directory).
 */
export function directoryGroups(us: Unit[], target: number): Map<string, Unit[]> {
  const out = new Map<string, Unit[]>();
  const visit = (members: Unit[], depth: number, key: string) => {
    if (sumBytes(members) <= target) {
      out.set(key || '/', members);
      return;
    }
    const sub = new Map<string, Unit[]>();
    const here: Unit[] = [];
    for (const u of members) {
      const parts = u.paths[0].split('/');
      if (parts.length <= depth + 1) here.push(u);
      else {
        const k = parts.slice(0, depth + 1).join('/');
        const list = sub.get(k);
        if (list) list.push(u);
        else sub.set(k, [u]);
      }
    }
    if (here.length > 0) out.set(key || '/', here);
    for (const [k, list] of sub) visit(list, depth + 1, k);
  };
  visit(us, 0, '');
  return out;
}

/** Bins filled largest group first, each into the lightest bin (lowest index on a tie). */
function pack(groups: Array<[string, Unit[]]>, bins: number): Array<{ groups: string[]; units: Unit[]; bytes: number }> {
  const out = Array.from({ length: bins }, () => ({ groups: [] as string[], units: [] as Unit[], bytes: 0 }));
  const sized = groups.map(([key, us]) => ({ key, us, bytes: sumBytes(us) }));
  sized.sort((a, b) => b.bytes - a.bytes || compareNames(a.key, b.key));
  for (const g of sized) {
    let best = 0;
    for (let i = 1; i < bins; i++) if (out[i].bytes < out[best].bytes) best = i;
    out[best].groups.push(g.key);
    out[best].units.push(...g.us);
    out[best].bytes += g.bytes;
  }
  return out;
}

function layerOf(bin: { groups: string[]; units: Unit[] }): PlanLayer {
  const paths = bin.units.flatMap((u) => u.paths).sort(compareNames);
  return { paths, groups: [...bin.groups].sort(compareNames), bytes: sumBytes(bin.units) };
}

/** Groups of units: by owning package where known, else by directory (split down to target). */
function groupUnits(us: Unit[], owners: Map<string, string> | undefined, target: number): Array<[string, Unit[]]> {
  const byPackage = new Map<string, Unit[]>();
  const unowned: Unit[] = [];
  for (const u of us) {
    const pkg = owners?.get(u.paths[0]);
    if (pkg === undefined) unowned.push(u);
    else {
      const key = `pkg:${pkg}`;
      const list = byPackage.get(key);
      if (list) list.push(u);
      else byPackage.set(key, [u]);
    }
  }
  return [...byPackage, ...directoryGroups(unowned, target)];
}

/** The plan the heuristic makes (docs/rechunk.md, "The heuristic"). */
export function planLayers(input: HeuristicInput): RechunkPlan {
  const { maxLayers } = input;
  if (!Number.isInteger(maxLayers) || maxLayers < 1) throw new LayersError('EUSAGE', `max layers must be a whole number of at least 1, not ${maxLayers}`);
  const all = units(input.leaves);
  const layers = input.like ? keepLayers(all, input) : freshLayers(all, input);
  return { version: 1, ...(input.sourceDateEpoch !== undefined && { sourceDateEpoch: input.sourceDateEpoch }), layers: layers.filter((l) => l.paths.length > 0) };
}

function freshLayers(all: Unit[], input: HeuristicInput): PlanLayer[] {
  const { maxLayers } = input;
  const big = all.filter((u) => u.bytes >= BIG_FILE_BYTES).sort((a, b) => b.bytes - a.bytes || compareNames(a.paths[0], b.paths[0]));
  const own = big.slice(0, Math.floor(maxLayers / 2));
  const ownSet = new Set(own);
  const rest = all.filter((u) => !ownSet.has(u));
  const bins = maxLayers - own.length;
  const groups = groupUnits(rest, input.owners, sumBytes(rest) / bins);
  const packed = pack(groups, Math.min(bins, groups.length));
  // big files first (bottom layers): they change least often
  return [...own.map((u) => ({ paths: [...u.paths].sort(compareNames), groups: [`big:${u.paths[0]}`], bytes: u.bytes })), ...packed.map(layerOf)];
}

/**
 * --like: a unit found in the previous image keeps its layer index (the last layer when the
 * budget is smaller now); a new unit goes to the layer holding most of its package, else of the
 * nearest directory above it with known files, else to the lightest layer.
 */
function keepLayers(all: Unit[], input: HeuristicInput): PlanLayer[] {
  const like = input.like!;
  let had = 1;
  for (const i of like.values()) had = Math.max(had, i + 1);
  const n = Math.min(input.maxLayers, had);
  const bins = Array.from({ length: input.maxLayers }, () => ({ groups: [] as string[], units: [] as Unit[], bytes: 0 }));
  const fresh: Unit[] = [];
  for (const u of all) {
    const prev = u.paths.map((p) => like.get(p)).find((i) => i !== undefined);
    if (prev === undefined) fresh.push(u);
    else {
      const bin = bins[Math.min(prev, n - 1)];
      bin.units.push(u);
      bin.bytes += u.bytes;
    }
  }
  if (fresh.length > 0) {
    // where the known units are, by package and by each directory above them
    const home = new Map<string, Map<number, number>>();
    const count = (key: string, i: number, bytes: number) => {
      const m = home.get(key) ?? new Map<number, number>();
      m.set(i, (m.get(i) ?? 0) + bytes);
      home.set(key, m);
    };
    const keysOf = (p: string) => {
      const keys = input.owners?.has(p) ? [`pkg:${input.owners.get(p)}`] : [];
      for (let d = p.lastIndexOf('/'); d > 0; d = p.lastIndexOf('/', d - 1)) keys.push(p.slice(0, d));
      return keys;
    };
    bins.forEach((b, i) => b.units.forEach((u) => keysOf(u.paths[0]).forEach((k) => count(k, i, u.bytes))));
    for (const u of fresh) {
      // the package, else the nearest directory with known files: the layer holding most of it
      const m = keysOf(u.paths[0]).map((k) => home.get(k)).find((x) => x !== undefined);
      let best = -1;
      if (m) for (const [i, bytes] of [...m].sort((a, b) => a[0] - b[0])) if (best < 0 || bytes > m.get(best)!) best = i;
      if (best < 0) {
        best = 0;
        for (let i = 1; i < n; i++) if (bins[i].bytes < bins[best].bytes) best = i;
      }
      bins[best].units.push(u);
      bins[best].bytes += u.bytes;
    }
  }
  return bins.map(layerOf);
}

/**
 * Check a plan against the tree: every leaf exactly once, every path in the tree, no more layers
 * than allowed. `isDir` says whether a path of the tree is a directory (undefined: not in the tree).
 */
export function checkPlan(plan: unknown, leaves: Leaf[], isDir: (p: string) => boolean | undefined, maxLayers: number | undefined, source: string): RechunkPlan {
  const bad = (why: string) => new LayersError('EINPUT', `${source}: ${why}`);
  const p = plan as RechunkPlan;
  if (typeof p !== 'object' || p === null || p.version !== 1 || !Array.isArray(p.layers)) throw bad('not a rechunk plan (want {"version": 1, "layers": [{"paths": [...]}, ...]})');
  if (p.sourceDateEpoch !== undefined && !(Number.isInteger(p.sourceDateEpoch) && p.sourceDateEpoch >= 0)) throw bad(`sourceDateEpoch ${JSON.stringify(p.sourceDateEpoch)} is not a whole number of seconds`);
  if (p.layers.length === 0) throw bad('the plan has no layers');
  if (maxLayers !== undefined && p.layers.length > maxLayers) throw bad(`the plan has ${p.layers.length} layers, more than the ${maxLayers} allowed`);
  const seen = new Set<string>();
  p.layers.forEach((l, i) => {
    if (!l || !Array.isArray(l.paths) || l.paths.length === 0) throw bad(`layer ${i} has no paths`);
    for (const raw of l.paths) {
      if (typeof raw !== 'string') throw bad(`layer ${i}: ${JSON.stringify(raw)} is not a path`);
      const path = normalizePath(raw);
      if (isDir(path) === undefined) throw bad(`layer ${i}: ${raw} is not in the image`);
      if (seen.has(path)) throw bad(`layer ${i}: ${raw} is in the plan twice`);
      seen.add(path);
    }
  });
  const missing = leaves.filter((l) => !seen.has(l.path));
  if (missing.length > 0) throw bad(`${missing.length} path(s) of the image are in no layer: ${missing.slice(0, 5).map((l) => l.path).join(', ')}${missing.length > 5 ? ', ...' : ''}`);
  return { version: 1, ...(p.sourceDateEpoch !== undefined && { sourceDateEpoch: p.sourceDateEpoch }), layers: p.layers.map((l) => ({ ...l, paths: l.paths.map(normalizePath) })) };
}

/** A path as the plan may spell it ('/usr/bin/x', './usr/bin/x', 'usr/bin/x/') made relative. */
export function normalizePath(p: string): string {
  const s = p.replace(/^(\.?\/)+/, '').replace(/\/+$/, '');
  return s === '' ? '.' : s;
}
