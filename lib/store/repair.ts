// Repair after a crash (docs/on-disk-format.md, "Writes, locking and recovery";
// docs/images-and-containers.md, "Crashes"). Every operation of several steps writes down what
// it is about to do first, so what a writer that died left is one of: an image marked
// incomplete (its removal started), incomplete layers (being made or removed), containers whose
// layer is gone, and references to layers that are gone. Taking the writer lock runs repair()
// (a live holder would still hold the lock), which finishes or undoes each.
import { LayersError } from '../errors.ts';
import type { StoreContext } from './context.ts';
import { dropContainerRecord } from './containers.ts';
import { dropImageRecord, finishImageRemoval } from './images.ts';
import { removeLayer } from './layers.ts';
import { isIncomplete } from './records.ts';
import { incompleteRemovalOrder } from './removal.ts';

/** Whether the records show a writer that died (checked on open, without the lock). */
export function needsRepair(ctx: StoreContext): boolean {
  const layerIds = new Set(ctx.layers.complete().map((l) => l.id));
  return (
    ctx.layers.records.some(isIncomplete) ||
    ctx.images.records.some((i) => isIncomplete(i) || (i.layer !== undefined && !layerIds.has(i.layer)) || i['mapped-layers']?.some((m) => !ctx.layers.get(m))) ||
    ctx.containers.records.some((c) => !ctx.layers.get(c.layer))
  );
}

/**
 * Finish removals of images marked incomplete, remove incomplete layers (mapped top layers
 * first, then newest first), then drop the records that referred to layers now gone.
 */
export async function repair(ctx: StoreContext): Promise<void> {
  try {
    for (const image of ctx.images.records.filter(isIncomplete)) await finishImageRemoval(ctx, image);
    for (const r of incompleteRemovalOrder(ctx.layers.records, ctx.images.records, isIncomplete)) await removeLayer(ctx, r);
    await dropDangling(ctx);
  } catch (err) {
    throw new LayersError('EDRIVER', `repairing the store after an interrupted operation: ${(err as Error).message}`, { cause: err });
  }
}

/** Containers whose layer is gone, images whose top layer is gone, and mapped layers that are gone from their images. */
export async function dropDangling(ctx: StoreContext): Promise<void> {
  const exists = (id: string) => ctx.layers.get(id) !== undefined;
  const orphans = ctx.containers.records.filter((c) => !exists(c.layer));
  for (const c of orphans) dropContainerRecord(ctx, c);
  if (orphans.length > 0) await ctx.containers.save();
  let imagesChanged = false;
  for (const image of [...ctx.images.records]) {
    const mapped = image['mapped-layers']?.filter(exists);
    if (mapped && mapped.length !== image['mapped-layers']!.length) {
      image['mapped-layers'] = mapped;
      imagesChanged = true;
    }
    // an image whose top layer is gone cannot be used: nothing but its record is left
    if (image.layer !== undefined && !exists(image.layer)) {
      dropImageRecord(ctx, image);
      imagesChanged = true;
    }
  }
  if (imagesChanged) await ctx.images.save();
}
