// Images (docs/images-and-containers.md; records in docs/on-disk-format.md, "images.json"): an
// image names its top layer; removing one removes the layers only it needs, in the order
// removal.ts plans. The whole plan is written down (image and layers marked incomplete) before
// anything goes, so a crash part way leaves work the next writer finishes (repair.ts).
import fs from 'node:fs';
import path from 'node:path';
import { LayersError } from '../errors.ts';
import { failpoint } from '../failpoint.ts';
import { findLayer, type StoreContext } from './context.ts';
import { removeContainer } from './containers.ts';
import { layerSize, removeLayer, storeGraph } from './layers.ts';
import { imageDigests, isIncomplete, rfc3339, type ImageRecord } from './records.ts';
import { imageRemovalOrder } from './removal.ts';

export interface CreateImageOptions {
  /** default: 64 random hex digits */
  id?: string;
  /** the top layer: id, name or id prefix; none: an image with no layer (as the peer's create-image "") */
  layer?: string;
  names?: string[];
  metadata?: string;
  digest?: string;
}

export interface RemoveImageOptions {
  /** remove the containers that use the image first, instead of refusing */
  force?: boolean;
}

export interface RemoveImageResult {
  /** containers removed first (with force) */
  containers: string[];
  /** layers removed, in the order they went */
  layers: string[];
}

/** Record an image whose top layer is opts.layer (or which has none). */
export async function createImage(ctx: StoreContext, opts: CreateImageOptions): Promise<ImageRecord> {
  const top = opts.layer === undefined ? undefined : findLayer(ctx, opts.layer, 'top layer');
  const { id, names } = ctx.images.reserve(opts.id, opts.names);
  const image: ImageRecord = { id, digest: opts.digest, names, layer: top?.id, metadata: opts.metadata, created: rfc3339() };
  ctx.images.push(image);
  await ctx.images.save();
  return image;
}

// the image's digests are worked out in records.ts (pure: the CLI imports them without the store)
export { imageDigests, MANIFEST_KEY_PREFIX } from './records.ts';

/** Complete images one of whose digests is this one. */
export function imagesByDigest(ctx: StoreContext, digest: string): ImageRecord[] {
  return ctx.images.complete().filter((i) => imageDigests(i).includes(digest));
}

/**
 * Remove an image and the layers only it needs: its mapped top layers first, then its top
 * layer, then each parent upward that no other image, container or layer needs. Refuses while
 * containers use the image, or a layer it would take is mounted, unless force removes the
 * containers first and unmounts the layers.
 */
export async function removeImage(ctx: StoreContext, ref: string, opts: RemoveImageOptions): Promise<RemoveImageResult> {
  const image = ctx.images.find(ref);
  ctx.images.assertOwn(image, 'removed');
  if (!opts.force) refuseUsedImage(ctx, image);
  const users = ctx.containers.records.filter((c) => c.image === image.id);
  for (const c of users) await removeContainer(ctx, c);
  if (users.length > 0) failpoint('containers-removed');
  const plan = await imageRemovalPlan(ctx, image);
  const mounted = plan.filter((id) => ctx.mounts.count(id) > 0);
  if (mounted.length > 0 && !opts.force)
    throw new LayersError('ELAYERINUSE', `image ${image.id}: layer ${mounted.join(', ')} is mounted; unmount it first or use --force`);
  const layers = await finishImageRemoval(ctx, image, plan);
  return { containers: users.map((c) => c.id), layers };
}

/** What removeImage would remove, without removing anything (delete-image --test). */
export async function planImageRemoval(ctx: StoreContext, ref: string): Promise<RemoveImageResult> {
  const image = ctx.images.find(ref);
  refuseUsedImage(ctx, image);
  return { containers: [], layers: await imageRemovalPlan(ctx, image) };
}

function refuseUsedImage(ctx: StoreContext, image: ImageRecord): void {
  const users = ctx.containers.records.filter((c) => c.image === image.id);
  if (users.length > 0)
    throw new LayersError(
      'EIMAGEINUSE',
      `image ${image.id} is used by container${users.length === 1 ? '' : 's'} ${users.map((c) => c.id).join(', ')}; remove ${users.length === 1 ? 'it' : 'them'} first or use --force`,
    );
}

/** The layers removing image takes, in order. */
async function imageRemovalPlan(ctx: StoreContext, image: ImageRecord): Promise<string[]> {
  // only the layers the plan may take need the driver's word on hidden dependents: the mapped layers and the top layer's chain
  const candidates = [...(image['mapped-layers'] ?? [])];
  // up to the first layer of an additional store: those are never removed from here
  for (let l = image.layer !== undefined ? ctx.layers.get(image.layer) : undefined; l && !ctx.layers.isReadOnly(l); l = l.parent !== undefined ? ctx.layers.get(l.parent) : undefined)
    candidates.push(l.id);
  return imageRemovalOrder(await storeGraph(ctx, candidates), image);
}

/**
 * Mark the image and its planned layers incomplete, then remove the layers in order and the
 * image. The repair calls it for an image already marked (without a plan: it is made again from
 * the records left, which gives the same order).
 */
export async function finishImageRemoval(ctx: StoreContext, image: ImageRecord, plan?: string[]): Promise<string[]> {
  if (!isIncomplete(image)) {
    image.flags = { ...image.flags, incomplete: true };
    await ctx.images.save();
    failpoint('image-marked');
  }
  const order = plan ?? (await imageRemovalPlan(ctx, image));
  const doomed = order.map((id) => ctx.layers.get(id)!);
  for (const l of doomed) l.flags = { ...l.flags, incomplete: true };
  await ctx.layers.save();
  failpoint('image-layers-marked');
  for (const l of doomed) {
    await removeLayer(ctx, l);
    failpoint('image-layer-removed');
  }
  failpoint('image-layers-removed');
  dropImageRecord(ctx, image);
  await ctx.images.save();
  return order;
}

/** The image's record and big data go, its layers stay (the caller saves the table). */
export function dropImageRecord(ctx: StoreContext, image: ImageRecord): void {
  ctx.images.assertOwn(image, 'removed');
  fs.rmSync(path.join(ctx.imagesDir, image.id), { recursive: true, force: true });
  ctx.images.drop(image);
}

/**
 * The image's size as the peer's ImageSize counts it: every layer reached from the top layer
 * and the mapped top layers through parents, each once, by its size (layers.ts, layerSize),
 * plus the sizes of the big data items.
 */
export async function imageSize(ctx: StoreContext, image: ImageRecord): Promise<number> {
  const queue = [image.layer, ...(image['mapped-layers'] ?? [])].filter((id): id is string => id !== undefined);
  const seen = new Set<string>();
  let size = 0;
  for (let id = queue.shift(); id !== undefined; id = queue.shift()) {
    const l = ctx.layers.get(id);
    if (seen.has(id) || !l) continue;
    seen.add(id);
    size += await layerSize(ctx, l);
    if (l.parent !== undefined) queue.push(l.parent);
  }
  for (const n of Object.values(image['big-data-sizes'] ?? {})) size += n;
  return size;
}

/** Images whose top layer, or one of whose mapped top layers, is this layer (the peer's ImagesByTopLayer). */
export function imagesByTopLayer(ctx: StoreContext, layerId: string): ImageRecord[] {
  return ctx.images.complete().filter((i) => i.layer === layerId || i['mapped-layers']?.includes(layerId));
}
