// Which layers go when an image goes, and in what order (docs/images-and-containers.md, "Removal order"). Pure functions of
// the records, so the order is the same whether `rm` runs it or the next writer finishes a
// removal that a killed process started.
//
// The order: the image's mapped top layers first, then its top layer, then each parent upward.
// A mapped top layer is a CreateFromTemplate copy of the top layer, and a driver may keep it
// standing on the top layer's files (overlay puts the template in the copy's lowers) while the
// record names the template's parent as its parent. Removing the top layer first would leave the
// mapped layer without its files, so dependencies the records do not show count as well: the
// image's own mapped layers depend on its top layer, and the driver reports any others.
import type { ContainerRecord, ImageRecord, LayerRecord } from './records.ts';

export interface StoreGraph {
  layers: LayerRecord[];
  images: ImageRecord[];
  containers: ContainerRecord[];
  /** layer id -> ids of layers whose files stand on it though their records name another parent */
  hidden: Map<string, string[]>;
}

/**
 * The layers that removing `image` removes, in removal order: each one that nothing left over
 * (another image's top or mapped layer, a container, a child layer, a hidden dependant) needs.
 * Containers of the image itself must be gone already.
 */
export function imageRemovalOrder(g: StoreGraph, image: ImageRecord): string[] {
  const byId = new Map(g.layers.map((l) => [l.id, l]));
  const remaining = new Set(byId.keys());
  const claimed = new Set<string>();
  for (const other of g.images) {
    if (other.id === image.id) continue;
    if (other.layer) claimed.add(other.layer);
    for (const m of other['mapped-layers'] ?? []) claimed.add(m);
  }
  for (const c of g.containers) claimed.add(c.layer);
  // the image's own mapped layers stand on its top layer whatever the driver says
  const hidden = new Map(g.hidden);
  if (image.layer) hidden.set(image.layer, [...(hidden.get(image.layer) ?? []), ...(image['mapped-layers'] ?? [])]);

  const needed = (id: string): boolean => {
    if (claimed.has(id)) return true;
    for (const l of remaining) if (l !== id && byId.get(l)?.parent === id) return true;
    return (hidden.get(id) ?? []).some((d) => d !== id && remaining.has(d));
  };
  const order: string[] = [];
  const take = (id: string): boolean => {
    if (!remaining.has(id) || needed(id)) return false;
    remaining.delete(id);
    order.push(id);
    return true;
  };
  // newest mapped layer first: one made later may stand on one made earlier
  for (const m of [...(image['mapped-layers'] ?? [])].reverse()) take(m);
  for (let id = image.layer; id !== undefined && take(id); id = byId.get(id)?.parent);
  return order;
}

/**
 * The order in which to remove layers left incomplete by a writer that died: mapped top layers
 * before everything else (see above), then newest first, so children go before their parents.
 */
export function incompleteRemovalOrder(layers: LayerRecord[], images: ImageRecord[], incomplete: (l: LayerRecord) => boolean): LayerRecord[] {
  const mapped = new Set(images.flatMap((i) => i['mapped-layers'] ?? []));
  const doomed = layers.filter(incomplete).reverse();
  return [...doomed.filter((l) => mapped.has(l.id)), ...doomed.filter((l) => !mapped.has(l.id))];
}
