// Rechunk an image (docs/rechunk.md, "How a layer is made"): a new image whose flattened tree is
// the image's, regrouped into at most N layers by a plan (plan.ts). Each new layer's files are
// cloned straight from the source files into it by the tree copy's engine (whole files, so
// btrfs and xfs share every block), then its tar (plan order, deterministic headers, bodies
// 4 KiB-aligned so they are clones too) is written to a temp file only to be hashed and recorded
// as the layer's tar-split, so `diff` gives back exactly the bytes whose digest the layer records.
import fs from 'node:fs';
import path from 'node:path';
import { cleanupFailed, LayersError, wrapError } from '../errors.ts';
import { containerMapper, type OwnerMapper } from '../idmap.ts';
import { findLayer, mappingsOf, type StoreContext } from '../store/context.ts';
import { createImage } from '../store/images.ts';
import { tempFile } from '../store/input.ts';
import { changes, checkAborted, completeLayer, makeLayer as makeLayerDir, mount, recordNewLayer, removeLayer, unmount } from '../store/layers.ts';
import { applyRecording } from '../store/tar-split-file.ts';
import { copyItems } from '../../drivers/trees.ts';
import { native } from '../native.ts';
import { Compression } from '../store/records.ts';
import type { ImageRecord, LayerRecord } from '../store/records.ts';
import { tarSplitPath } from '../store/tar-split-file.ts';
import { readTarSplit } from '../tar/tar-split.ts';
import { fsPath } from '../tar/names.ts';
import { inodeKey, hasLinks, statNode, walkTree, type TreeNode } from '../tar/tree.ts';
import { parseWhiteout } from '../tar/whiteout.ts';
import { nodeItem, writeTar, type TarItem } from '../tar/write.ts';
import { checkPlan, normalizePath, planLayers, type Leaf, type RechunkPlan } from './plan.ts';

export type { PlanLayer, RechunkPlan } from './plan.ts';
export { BIG_FILE_BYTES } from './plan.ts';

export interface RechunkOptions {
  /** aborting fails the rechunk with EABORTED between layers; the layers made so far are removed */
  signal?: AbortSignal;
  /** at most this many layers (required unless a plan is given; a plan must fit it when both are) */
  maxLayers?: number;
  /** names of the new image */
  names?: string[];
  /** a previous image (id, name or id prefix): files keep the layer index they had in it */
  like?: string;
  /** an explicit plan (docs/rechunk.md, "Plan files") instead of the heuristic; `planSource` names it in errors */
  plan?: unknown;
  planSource?: string;
  /** mtimes later than this (seconds) are written as this; a plan's own value wins */
  sourceDateEpoch?: number;
  /** only work out the plan: nothing is made */
  dryRun?: boolean;
}

export interface RechunkResult<L = LayerRecord, I = ImageRecord> {
  plan: RechunkPlan;
  /** the new image (not with dryRun) */
  image?: I;
  /** its layers, bottom first (not with dryRun) */
  layers: L[];
}

/** Tar bodies of a block or more start on multiples of this, so btrfs and xfs can reflink them
 *  out of the source files and into the new layer (write.ts, align). */
const REFLINK_ALIGN = 4096;

/** The flattened tree of a mounted image: every node by path, and its leaves in walk order. */
interface Inventory {
  root: string;
  nodes: Map<string, TreeNode>;
  leaves: Leaf[];
  /** where a file's data is, absolute (see bodyFinder) */
  bodyOf: (rel: string) => string;
}

function inventory(root: string, bodyOf: (rel: string) => string): Inventory {
  const nodes = new Map<string, TreeNode>();
  const leaves: Leaf[] = [];
  const top = statNode(root, '.')!;
  nodes.set('.', top);
  let last: TreeNode | undefined;
  const flushDir = (dir: TreeNode | undefined, next: TreeNode | undefined) => {
    // a directory is a leaf when the node after it is not inside it
    if (dir?.st.isDirectory() && !(next && next.rel.startsWith(`${dir.rel}/`))) leaves.push({ path: dir.rel, size: 0 });
  };
  for (const node of walkTree(root)) {
    flushDir(last, node);
    nodes.set(node.rel, node);
    if (!node.st.isDirectory()) {
      const file = node.st.isFile();
      leaves.push({ path: node.rel, size: file ? Number(node.st.size) : 0, ...(file && hasLinks(node.st) && { inode: inodeKey(node.st) }) });
    }
    last = node;
  }
  flushDir(last, undefined);
  return { root, nodes, leaves, bodyOf };
}

/**
 * Where the data of a file of the flattened tree is. On overlay, not the merged view: overlayfs
 * does not pass a clone on to another filesystem (FICLONE and copy_file_range from the mount to
 * the store's filesystem fail with EXDEV, then copy), so a body is read from the diff directory of
 * the highest layer of the image that has the file, which is the one the mount shows.
 */
function bodyFinder(ctx: StoreContext, chain: LayerRecord[], root: string): (rel: string) => string {
  if (ctx.driver.name !== 'overlay') return (rel) => path.join(root, rel);
  const dirs = chain.map((l) => ctx.driver.layerDir(l.id)).reverse();
  return (rel) => {
    for (const dir of dirs) {
      const p = path.join(dir, rel);
      const st = fs.lstatSync(fsPath(p), { throwIfNoEntry: false });
      if (st?.isFile()) return p;
      if (st) break; // a whiteout or another kind of node hides what is below: the merged view decides
    }
    return path.join(root, rel);
  };
}

/** Which package owns each path, from dpkg's lists (var/lib/dpkg/info/<package>.list), when the image has them. */
function dpkgOwners(root: string): Map<string, string> | undefined {
  const info = path.join(root, 'var/lib/dpkg/info');
  let lists: string[];
  try {
    lists = fs.readdirSync(info).filter((n) => n.endsWith('.list')).sort();
  } catch {
    return undefined;
  }
  const owners = new Map<string, string>();
  for (const name of lists) {
    const pkg = name.slice(0, -'.list'.length);
    for (const line of fs.readFileSync(path.join(info, name), 'utf8').split('\n')) {
      const p = normalizePath(line);
      // a path two packages list (a shared directory, a diverted file) stays with the first
      if (p !== '.' && !owners.has(p)) owners.set(p, pkg);
    }
  }
  return owners;
}

/** The layers of an image, bottom first. */
function chainOf(ctx: StoreContext, image: ImageRecord): LayerRecord[] {
  const chain: LayerRecord[] = [];
  for (let id = image.layer; id !== undefined; id = ctx.layers.get(id)?.parent) chain.unshift(findLayer(ctx, id));
  return chain;
}

/**
 * path -> the index of the highest layer of the image that has it, whiteouts resolved (from the
 * layers' tar-split records, else their changes).
 */
async function layerIndexes(ctx: StoreContext, image: ImageRecord): Promise<Map<string, number>> {
  const index = new Map<string, number>();
  const dropBelow = (target: string) => {
    for (const p of index.keys()) if (p === target || p.startsWith(`${target}/`)) index.delete(p);
  };
  for (const [i, layer] of chainOf(ctx, image).entries()) {
    const names: string[] = [];
    const record = tarSplitPath(ctx, layer.id);
    if (fs.existsSync(record)) {
      for await (const e of readTarSplit(record)) if (e.type === 'file') names.push(normalizePath(e.name));
    } else for (const c of await changes(ctx, layer.id)) names.push((c.kind === 'Delete' ? '\0' : '') + normalizePath(c.path));
    const kept: string[] = [];
    for (const name of names) {
      const wh = name.startsWith('\0') ? { kind: 'whiteout' as const, target: name.slice(1) } : parseWhiteout(name);
      if (!wh) kept.push(name);
      else if (wh.kind === 'whiteout') dropBelow(wh.target);
      else if (wh.kind === 'opaque') for (const p of [...index.keys()]) if (p.startsWith(`${wh.dir}/`)) index.delete(p);
    }
    for (const name of kept) index.set(name, i);
  }
  return index;
}

/**
 * The items of one new layer, in plan order: the root, then each path with the directories above
 * it first (once), later names of a file already in the layer as hardlinks. Owners in container
 * ids; mtimes clamped to the epoch when given.
 */
function* layerItems(inv: Inventory, paths: string[], epoch: number | undefined, mapOwner: OwnerMapper | undefined): Generator<TarItem> {
  const done = new Set<string>();
  const seen = new Map<string, string>();
  const item = (rel: string): TarItem | undefined => {
    done.add(rel);
    const it = nodeItem(inv.nodes.get(rel)!, seen, mapOwner);
    // bodies by absolute path: the tar is written with / as its root
    if (it?.bodyPath !== undefined) it.bodyPath = inv.bodyOf(rel).slice(1);
    if (it && epoch !== undefined && it.entry.mtime.sec >= epoch) it.entry = { ...it.entry, mtime: { sec: epoch, nsec: 0 } };
    return it;
  };
  const root = item('.')!;
  yield root;
  for (const rel of paths) {
    const parts = rel.split('/');
    for (let i = 1; i < parts.length; i++) {
      const dir = parts.slice(0, i).join('/');
      if (!done.has(dir)) yield item(dir)!;
    }
    if (done.has(rel)) continue; // a directory named by the plan and already written above a file
    const it = item(rel);
    if (it) yield it;
  }
}

/** Rechunk the image `ref` (docs/rechunk.md). */
export async function rechunk(ctx: StoreContext, ref: string, opts: RechunkOptions): Promise<RechunkResult> {
  const image = ctx.images.find(ref);
  if (image.layer === undefined) throw new LayersError('EUSAGE', `image ${image.id} has no layers to rechunk`);
  if (opts.plan === undefined && opts.maxLayers === undefined) throw new LayersError('EUSAGE', 'rechunk needs a maximum number of layers or a plan');
  const top = findLayer(ctx, image.layer);
  const like = opts.like !== undefined ? await layerIndexes(ctx, ctx.images.find(opts.like)) : undefined;
  const root = await mount(ctx, top.id, { readOnly: true });
  try {
    const inv = inventory(root, bodyFinder(ctx, chainOf(ctx, image), root));
    const plan =
      opts.plan !== undefined
        ? checkPlan(opts.plan, inv.leaves, (p) => inv.nodes.get(p)?.st.isDirectory(), opts.maxLayers, opts.planSource ?? 'the plan')
        : planLayers({ leaves: inv.leaves, maxLayers: opts.maxLayers!, owners: dpkgOwners(root), like, sourceDateEpoch: opts.sourceDateEpoch });
    if (plan.sourceDateEpoch === undefined && opts.sourceDateEpoch !== undefined) plan.sourceDateEpoch = opts.sourceDateEpoch;
    if (opts.dryRun) return { plan, layers: [] };
    const made = await makeLayers(ctx, inv, plan, top, opts);
    try {
      checkAborted(opts.signal, `rechunk of ${ref}`);
      const created = await createImage(ctx, { layer: made[made.length - 1].id, names: opts.names });
      return { plan, image: created, layers: made };
    } catch (err) {
      await removeLayers(ctx, made);
      throw err;
    }
  } finally {
    await unmount(ctx, top.id, false);
  }
}

async function removeLayers(ctx: StoreContext, made: LayerRecord[]): Promise<void> {
  for (const rec of [...made].reverse()) await removeLayer(ctx, rec).catch((e) => cleanupFailed(`removing the rechunked layer ${rec.id}`, e));
}

/** One new layer per plan layer, each a child of the one before; on failure none is left. */
async function makeLayers(ctx: StoreContext, inv: Inventory, plan: RechunkPlan, top: LayerRecord, opts: RechunkOptions): Promise<LayerRecord[]> {
  const made: LayerRecord[] = [];
  try {
    for (const [i, layer] of plan.layers.entries()) {
      checkAborted(opts.signal, `rechunk of ${top.id}`);
      try {
        made.push(await makeLayer(ctx, inv, layer.paths, plan.sourceDateEpoch, top, made[made.length - 1]));
      } catch (err) {
        throw wrapError(`making new layer ${i}`, err);
      }
    }
  } catch (err) {
    await removeLayers(ctx, made);
    throw err;
  }
  return made;
}

/**
 * One new layer: its files cloned straight from the source files into the layer's directory
 * (the tree copy's engine: whole files, so btrfs and xfs share every block, the last one too),
 * then its tar written to a temp file (bodies cloned out of the same files, 4 KiB-aligned) only
 * to be hashed and recorded as the layer's tar-split, so `diff` gives back those bytes. The
 * record gets what an import of that tar records (layers.ts, applyInto): digests, sizes, owners.
 */
async function makeLayer(ctx: StoreContext, inv: Inventory, paths: string[], epoch: number | undefined, top: LayerRecord, parent: LayerRecord | undefined): Promise<LayerRecord> {
  const mappings = mappingsOf(top);
  const rec = await recordNewLayer(ctx, { parent: parent?.id, ...mappings });
  const fd = tempFile(ctx.tmpDir, 'rechunk');
  try {
    await makeLayerDir(ctx, rec, parent, {});
    // on disk: host ids, as the source has them; in the tar: container ids
    await copyItems('/', layerItems(inv, paths, epoch, undefined), ctx.driver.layerDir(rec.id));
    const uids = new Set<number>();
    const gids = new Set<number>();
    const mapOwner = containerMapper(mappings);
    const items = function* () {
      for (const item of layerItems(inv, paths, epoch, mapOwner)) {
        uids.add(item.entry.uid);
        gids.add(item.entry.gid);
        yield item;
      }
    };
    // never sparse: a sparse entry depends on where the filesystem keeps holes, and the layer's
    // digest must depend only on the tree (docs/rechunk.md, "The tar of a layer")
    await writeTar('/', items(), fd, { align: REFLINK_ALIGN, alignMinBody: REFLINK_ALIGN, sparse: false });
    const hash = native().sha256();
    const { result } = await applyRecording(tarSplitPath(ctx, rec.id), fd, (recordFd) => native().hashTar(fd, hash, recordFd));
    const digest = hash.digest();
    rec['diff-digest'] = digest;
    rec['diff-size'] = result.size;
    rec.uidset = [...uids].sort((a, b) => a - b);
    rec.gidset = [...gids].sort((a, b) => a - b);
    rec['compressed-diff-digest'] = digest;
    rec['compressed-size'] = result.size;
    rec.compression = Compression.none;
  } catch (err) {
    await removeLayer(ctx, rec).catch((e) => cleanupFailed(`removing the half-made layer ${rec.id}`, e));
    throw err;
  } finally {
    fs.closeSync(fd);
  }
  await completeLayer(ctx, rec);
  return rec;
}
