// Layers (docs/on-disk-format.md, "layers.json" and "Writes, locking and recovery"): create,
// import (apply a tar), diff/changes/size, mount and unmount, and removal, over the layer table
// and the driver. A layer's record is saved incomplete before the driver makes anything and
// completed last; removal marks it incomplete before its data goes, so a crash at any point
// leaves an incomplete record the next writer removes (repair.ts).
import fs from 'node:fs';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';
import type { Change, MountOptions } from '../../drivers/driver.ts';
import { cleanupFailed, LayersError, markNothingWritten, wrapError, wroteNothing } from '../errors.ts';
import { sameMappings, toContainer, type IdMap } from '../idmap.ts';
import { findLayer, mappingsOf, resolveRef, saveMounts, type StoreContext } from './context.ts';
import { prepareInput, tempFile } from './input.ts';
import { Compression, isIncomplete, rfc3339, type LayerRecord } from './records.ts';
import { applyRecording, assembleLayerTar, layerTarSplit, tarSplitPath } from './tar-split-file.ts';
import { layerUsers, whyLayerStays, type Going, type LayerUsers, type StoreGraph } from './removal.ts';

export interface CreateLayerOptions {
  /** default: 64 random hex digits */
  id?: string;
  /** parent layer id, name or id prefix */
  parent?: string;
  names?: string[];
  metadata?: string;
  mountLabel?: string;
  uidmap?: IdMap[];
  gidmap?: IdMap[];
  /** per-layer driver options (btrfs: size=); a key the driver does not take is refused before anything is made */
  storageOpt?: Record<string, string>;
}

/** A tar to apply: an open file descriptor (file, pipe or socket) or a file path. */
export type DiffInput = number | string;

export interface DiffOptions {
  /** compare with this layer instead of the parent */
  reference?: string;
  /** compress the output (the peer's diff --gzip) */
  compression?: 'gzip';
  /** files with holes as PAX 1.0 sparse entries (ours, GNU tar's --sparse) */
  sparse?: boolean;
}

// ---- records ----

/** A new layer record, its id and names reserved, saved incomplete before anything else is made for it. */
export function recordNewLayer(ctx: StoreContext, fields: Partial<LayerRecord>): LayerRecord {
  const { id, names } = ctx.layers.reserve(fields.id, fields.names);
  const rec: LayerRecord = { ...fields, id, names, created: rfc3339(), flags: { incomplete: true } };
  ctx.layers.push(rec);
  ctx.layers.save();
  return rec;
}

export function completeLayer(ctx: StoreContext, rec: LayerRecord): void {
  delete rec.flags!.incomplete;
  ctx.layers.save();
}

/** Mark the layer incomplete (saved), unless it is already. */
export function markIncomplete(ctx: StoreContext, rec: LayerRecord): void {
  if (isIncomplete(rec)) return;
  rec.flags = { ...rec.flags, incomplete: true };
  ctx.layers.save();
}

/** Mark incomplete, unmount (every user), remove the data, then the record. Checks nothing: the caller decided it may go. */
export async function removeLayer(ctx: StoreContext, r: LayerRecord): Promise<void> {
  ctx.layers.assertOwn(r, 'removed');
  markIncomplete(ctx, r);
  if (ctx.mounts.count(r.id) > 0) {
    await ctx.driver.unmount(r.id);
    ctx.mounts.drop(r.id);
    saveMounts(ctx);
  }
  await ctx.driver.remove(r.id);
  fs.rmSync(tarSplitPath(ctx, r.id), { force: true });
  fs.rmSync(path.join(ctx.layersDir, r.id), { recursive: true, force: true });
  ctx.layers.drop(r);
  ctx.layers.save();
}

// ---- may this layer go ----

/** Layers whose files stand on this one though their records name another parent (the driver knows). */
async function hiddenDependents(ctx: StoreContext, id: string): Promise<string[]> {
  const found = (await ctx.driver.dependents?.(id)) ?? [];
  return found.filter((d) => d !== id && ctx.layers.get(d) !== undefined && ctx.layers.get(d)!.parent !== id);
}

/** The records as removal.ts reads them, with the driver's hidden dependents of the layers `ids` and the mount counts. */
export async function storeGraph(ctx: StoreContext, ids: string[]): Promise<StoreGraph> {
  const hidden = new Map<string, string[]>();
  for (const id of ids) hidden.set(id, await hiddenDependents(ctx, id));
  return {
    layers: ctx.layers.records,
    images: ctx.images.records,
    containers: ctx.containers.records,
    hidden,
    mounts: new Map(ctx.mounts.all().map((m) => [m.id, m.count])),
  };
}

/** Everything that keeps layer `id` (removal.ts's layerUsers over this store), leaving out what is going. */
export async function usersOf(ctx: StoreContext, id: string, going?: Going): Promise<LayerUsers> {
  return layerUsers(await storeGraph(ctx, [id]), id, going);
}

// ---- create and import ----

/** Per-layer driver options must be ones the driver takes: refused before any record is made. */
export function checkLayerOptions(ctx: StoreContext, storageOpt: Record<string, string> | undefined): void {
  const { driver } = ctx;
  for (const key of Object.keys(storageOpt ?? {}))
    if (!driver.layerOptions.includes(key)) {
      const takes = driver.layerOptions.length ? `it takes ${driver.layerOptions.join(', ')}` : 'it takes none';
      throw new LayersError('EUSAGE', `${driver.name}: no per-layer option "${key}" (${takes})`);
    }
}

/** Create a layer (a child of opts.parent when given), and apply `input` to it when given. */
export async function createLayer(ctx: StoreContext, opts: CreateLayerOptions, input?: DiffInput): Promise<LayerRecord> {
  checkLayerOptions(ctx, opts.storageOpt);
  const parent = opts.parent !== undefined ? findLayer(ctx, opts.parent, 'parent layer') : undefined;
  const mappings = { uidmap: opts.uidmap ?? [], gidmap: opts.gidmap ?? [] };
  const rec = recordNewLayer(ctx, { id: opts.id, names: opts.names, parent: parent?.id, metadata: opts.metadata, mountlabel: opts.mountLabel, ...mappings });
  try {
    await makeLayer(ctx, rec, parent, { storageOpt: opts.storageOpt });
    if (input !== undefined) await applyInto(ctx, rec, input);
  } catch (err) {
    // on failure the record stays incomplete; the next writer removes it if this cannot
    await removeLayer(ctx, rec).catch((e) => cleanupFailed(`removing the half-made layer ${rec.id}`, e));
    throw err;
  }
  completeLayer(ctx, rec);
  return rec;
}

/** The driver's part of a new layer on parent, with the owners of what it inherits shifted to rec's mappings. */
export async function makeLayer(
  ctx: StoreContext,
  rec: LayerRecord,
  parent: LayerRecord | undefined,
  opts: { storageOpt?: Record<string, string>; idmapped?: boolean },
): Promise<void> {
  const mappings = mappingsOf(rec);
  await ctx.driver.create(rec.id, parent?.id, { ...opts, idMappings: mappings });
  // the copy of the parent carries the parent's owners: shift them to this layer's mappings
  // (unless the driver shows them through idmapped mounts: CreateOptions.idmapped)
  if (parent && !opts.idmapped && !sameMappings(mappingsOf(parent), mappings)) await ctx.driver.updateIdMappings(rec.id, mappingsOf(parent), mappings);
}

/**
 * Apply a tar to an existing layer. Refused when other layers' files come from it (children would
 * not see the change, copies made from it would). If it fails the layer is left incomplete and
 * removed by the next writer.
 */
export async function applyDiff(ctx: StoreContext, ref: string, input: DiffInput): Promise<LayerRecord> {
  const rec = findLayer(ctx, ref);
  ctx.layers.assertOwn(rec);
  const users = await usersOf(ctx, rec.id);
  if (users.children.length > 0)
    throw new LayersError('ELAYERHASCHILDREN', `layer ${rec.id} has child layers (${users.children.join(', ')}); they would not see the change`);
  if (users.templateCopies.length > 0)
    throw new LayersError('ELAYERHASCHILDREN', `layer ${rec.id} is the template of layers made from it (${users.templateCopies.join(', ')}); they would see the change`);
  markIncomplete(ctx, rec);
  try {
    await applyInto(ctx, rec, input);
  } catch (err) {
    // input refused before anything reached the layer (not a tar, bad compression, a garbage
    // first header): the layer is as it was, and stays, as the peer's does
    if (wroteNothing(err)) {
      completeLayer(ctx, rec);
      throw err;
    }
    throw wrapError(`layer ${rec.id} is left incomplete and will be removed`, err);
  }
  completeLayer(ctx, rec);
  return rec;
}

/** Extract input into rec's layer and record its digests, sizes and owners as the peer does. */
async function applyInto(ctx: StoreContext, rec: LayerRecord, input: DiffInput): Promise<void> {
  const what = describeInput(input);
  const fd = typeof input === 'string' ? openInput(input) : input;
  try {
    const prepared = await prepareInput(fd, what, ctx.tmpDir).catch((err: unknown) => {
      throw markNothingWritten(err);
    });
    try {
      const mappings = mappingsOf(rec);
      let result;
      try {
        ({ result } = await applyRecording(tarSplitPath(ctx, rec.id), prepared.fd, () => ctx.driver.applyDiff(rec.id, rec.parent, prepared.fd, { idMappings: mappings })));
      } catch (err) {
        throw wrapError(`applying ${what} to layer ${rec.id}`, err);
      }
      rec['diff-digest'] = result.digest;
      rec['diff-size'] = result.tarSize;
      // the peer records the owners as the tar has them (container ids)
      rec.uidset = [...new Set(result.uids.map((u) => toContainer(mappings.uidmap, u) ?? u))].sort((a, b) => a - b);
      rec.gidset = [...new Set(result.gids.map((g) => toContainer(mappings.gidmap, g) ?? g))].sort((a, b) => a - b);
      const c = prepared.compressed ?? { digest: result.digest, size: result.tarSize, compression: Compression.none };
      rec['compressed-diff-digest'] = c.digest;
      rec['compressed-size'] = c.size;
      rec.compression = c.compression;
    } finally {
      prepared.close();
    }
  } finally {
    if (typeof input === 'string') fs.closeSync(fd);
  }
}

function describeInput(input: DiffInput): string {
  if (typeof input === 'string') return input;
  return input === 0 ? 'stdin' : `fd ${input}`;
}

function openInput(file: string): number {
  try {
    return fs.openSync(file, 'r');
  } catch (err) {
    throw new LayersError('EINPUT', `cannot open ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
  }
}

// ---- diff, changes, size ----

/**
 * The layer and what it is compared with: its parent or the reference layer, each with its id
 * mappings, so that owners compare in container ids (a mapped layer's files, shifted, are no
 * change against its parent's).
 */
function comparison(ctx: StoreContext, ref: string, reference: string | undefined) {
  const rec = findLayer(ctx, ref);
  const against = reference !== undefined ? findLayer(ctx, reference, 'reference layer') : rec.parent !== undefined ? ctx.layers.get(rec.parent) : undefined;
  return { rec, against: against?.id, opts: { idMappings: mappingsOf(rec), parentIdMappings: mappingsOf(against ?? rec) } };
}

/** Write the layer's changes against its parent (or opts.reference) as a tar to fd. */
export async function diff(ctx: StoreContext, ref: string, fd: number, opts: DiffOptions): Promise<void> {
  const { rec, against, opts: compared } = comparison(ctx, ref, opts.reference);
  const diffOpts = { ...compared, sparse: opts.sparse };
  // against the parent, an applied layer gives back the tar it was applied from, as the peer's Diff does
  const record = against === rec.parent && !opts.sparse ? layerTarSplit(ctx, rec.id) : undefined;
  const writeTar = async (out: number) => {
    if (record) await assembleLayerTar(ctx, rec.id, record, out);
    else await ctx.driver.diff(rec.id, against, out, diffOpts);
  };
  if (opts.compression !== 'gzip') return writeTar(fd);
  // gzip needs the tar as a stream: write it to an unlinked temp file, then compress from there
  const tmp = tempFile(ctx.tmpDir, 'diff');
  try {
    await writeTar(tmp);
    await pipeline(
      fs.createReadStream('', { fd: tmp, start: 0, autoClose: false, highWaterMark: 1 << 20 }),
      zlib.createGzip(),
      fs.createWriteStream('', { fd, autoClose: false, highWaterMark: 1 << 20 }),
    );
  } finally {
    fs.closeSync(tmp);
  }
}

export async function changes(ctx: StoreContext, ref: string, reference?: string): Promise<Change[]> {
  const { rec, against, opts } = comparison(ctx, ref, reference);
  return ctx.driver.changes(rec.id, against, opts);
}

export async function diffSize(ctx: StoreContext, ref: string, reference?: string): Promise<number> {
  const { rec, against, opts } = comparison(ctx, ref, reference);
  return ctx.driver.diffSize(rec.id, against, opts);
}

// ---- mount and unmount ----

/** The layer a mount or unmount of ref means: a container's read-write layer (as the peer looks first), or a layer. */
export function mountTarget(ctx: StoreContext, ref: string): LayerRecord {
  const found = resolveRef(ctx, ref, ['container', 'layer']);
  if (!found) throw new LayersError('ELAYERUNKNOWN', `layer or container "${ref}" not known`);
  return found.kind === 'container' ? ctx.layers.get(found.record.layer)! : (found.record as LayerRecord);
}

/** Mount a layer, or a container's layer (one more user); returns its path. */
export async function mount(ctx: StoreContext, ref: string, opts: MountOptions): Promise<string> {
  const rec = mountTarget(ctx, ref);
  // the peer mounts only its own layers: mount points are recorded in the store that owns the layer
  ctx.layers.assertOwn(rec, 'mounted here');
  // a volatile container's layer is mounted volatile, as the peer's Mount does
  const volatile = ctx.containers.records.some((c) => c.layer === rec.id && c.flags?.Volatile === true);
  const p = await ctx.driver.mount(rec.id, volatile ? { ...opts, volatile } : opts);
  ctx.mounts.add(rec.id, p);
  saveMounts(ctx);
  return p;
}

/** One user less of a layer's or container's mount (every user when force); the last one really unmounts. Returns the users left. */
export async function unmount(ctx: StoreContext, ref: string, force: boolean): Promise<number> {
  const rec = mountTarget(ctx, ref);
  if (ctx.mounts.count(rec.id) === 0) return 0;
  const left = ctx.mounts.release(rec.id, force);
  if (left === 0) await ctx.driver.unmount(rec.id);
  saveMounts(ctx);
  return left;
}

/** Unmount every mounted layer (refused unless force while any is); returns their ids. */
export async function unmountAll(ctx: StoreContext, force: boolean): Promise<string[]> {
  const mounted = ctx.mounts.all();
  if (mounted.length > 0 && !force) throw new LayersError('ELAYERINUSE', `layers are mounted: ${mounted.map((m) => m.id).join(', ')}; unmount them or use force`);
  for (const m of mounted) {
    await ctx.driver.unmount(m.id);
    ctx.mounts.drop(m.id);
  }
  if (mounted.length > 0) saveMounts(ctx);
  return mounted.map((m) => m.id);
}

/**
 * The owners of the directories above the mount point of a layer that its id mappings cannot
 * map into the container, as containers/storage's ParentOwners works them out: a runtime must
 * let those ids through for the container to reach its root. Both stat and lstat of each
 * directory count. None when the layer has no mappings; an error when it is not mounted (there
 * is no mount point to look above).
 */
export function parentOwners(ctx: StoreContext, rec: LayerRecord): { uids: number[]; gids: number[] } {
  const { uidmap, gidmap } = mappingsOf(rec);
  if (uidmap.length === 0 && gidmap.length === 0) return { uids: [], gids: [] };
  const mounted = ctx.mounts.get(rec.id);
  if (!mounted || !fs.existsSync(mounted.path)) throw new LayersError('ENOTMOUNTED', `layer ${rec.id} is not mounted: mount it to know what is above its mount point`);
  const uids = new Set<number>();
  const gids = new Set<number>();
  for (let dir = path.dirname(mounted.path); ; dir = path.dirname(dir)) {
    if (dir === '/') break;
    for (const st of [fs.statSync(dir), fs.lstatSync(dir)]) {
      if (toContainer(uidmap, st.uid) === undefined) uids.add(st.uid);
      if (toContainer(gidmap, st.gid) === undefined) gids.add(st.gid);
    }
  }
  const sorted = (s: Set<number>) => [...s].sort((a, b) => a - b);
  return { uids: sorted(uids), gids: sorted(gids) };
}

// ---- delete ----

/** Delete a layer that nothing uses: no children or template copies, no image or container, no mount. */
export async function deleteLayer(ctx: StoreContext, ref: string): Promise<void> {
  const rec = findLayer(ctx, ref);
  ctx.layers.assertOwn(rec, 'removed');
  const why = whyLayerStays(rec.id, await usersOf(ctx, rec.id));
  if (why) throw why;
  await removeLayer(ctx, rec);
}

/**
 * containers-storage's `delete` of a layer: it goes though it is mounted (every user let go) or
 * images or containers use it (the caller drops their records after). Still refused: a layer
 * other layers' files stand on (children, or copies made from it as a template), since removing
 * it would break layers nobody named.
 */
export async function forceDeleteLayer(ctx: StoreContext, rec: LayerRecord): Promise<void> {
  const users = await usersOf(ctx, rec.id);
  const holders = [...users.children, ...users.templateCopies];
  if (holders.length > 0) throw new LayersError('ELAYERHASCHILDREN', `layer ${rec.id} holds files of layers ${holders.join(', ')}; delete them first`);
  await removeLayer(ctx, rec);
}
