// Whether a layer may go, and which layers go when an image goes, in what order
// (docs/images-and-containers.md, "Removal order" and "Crashes"). Pure functions of the records,
// so every command decides the same way, and the order is the same whether `rm` runs it or the
// next writer finishes a removal that a killed process started.
//
// The order: the image's mapped top layers first, then its top layer, then each parent upward.
// A mapped top layer is a CreateFromTemplate copy of the top layer, and a driver may keep it
// standing on the top layer's files (overlay puts the template in the copy's lowers) while the
// record names the template's parent as its parent. Removing the top layer first would leave the
// mapped layer without its files, so dependencies the records do not show count as well: the
// image's own mapped layers depend on its top layer, and the driver reports any others.
import { LayersError } from '../errors.ts';
import type { ContainerRecord, ImageRecord, LayerRecord } from './records.ts';

/** The records a decision reads, with what only the driver and the run root know. */
export interface StoreGraph {
  layers: LayerRecord[];
  images: ImageRecord[];
  containers: ContainerRecord[];
  /** layer id -> ids of layers whose files stand on it though their records name another parent */
  hidden: ReadonlyMap<string, string[]>;
  /** layer id -> users of its mount (none listed: not mounted) */
  mounts?: ReadonlyMap<string, number>;
}

/** Everything that keeps a layer: the ids of each kind of user, and its mount count. */
export interface LayerUsers {
  /** layers whose record names it as parent */
  children: string[];
  /** layers whose files stand on it though their records name another parent (copies made from it as a template) */
  templateCopies: string[];
  /** images whose top layer or mapped top layer it is */
  images: string[];
  /** containers whose read-write layer it is */
  containers: string[];
  /** users of its mount */
  mounts: number;
}

export type LayerUse = keyof LayerUsers;

/** Every use, in the order delete-layer names the first one it finds. */
export const ALL_USES: readonly LayerUse[] = ['children', 'images', 'containers', 'templateCopies', 'mounts'];
/** The uses records show (a mount is the caller's to refuse or undo). */
export const RECORD_USES: readonly LayerUse[] = ['children', 'images', 'containers', 'templateCopies'];

/** What is going anyway, so does not keep a layer: an image being removed, layers already planned to go. */
export interface Going {
  image?: string;
  layers?: ReadonlySet<string>;
}

/** The users of layer `id` in g, leaving out what is going. */
export function layerUsers(g: StoreGraph, id: string, going: Going = {}): LayerUsers {
  const known = new Set(g.layers.map((l) => l.id));
  const stays = (l: string) => l !== id && known.has(l) && !going.layers?.has(l);
  return {
    children: g.layers.filter((l) => l.parent === id && stays(l.id)).map((l) => l.id),
    templateCopies: (g.hidden.get(id) ?? []).filter(stays),
    images: g.images.filter((i) => i.id !== going.image && (i.layer === id || i['mapped-layers']?.includes(id))).map((i) => i.id),
    containers: g.containers.filter((c) => c.layer === id).map((c) => c.id),
    mounts: g.mounts?.get(id) ?? 0,
  };
}

/** The uses among `counted` that keep the layer (none: it may go). */
export function blockingUses(u: LayerUsers, counted: readonly LayerUse[] = ALL_USES): LayerUse[] {
  return counted.filter((k) => (k === 'mounts' ? u.mounts > 0 : u[k].length > 0));
}

/** Why layer `id` cannot go, naming the first use among `counted` that keeps it; undefined when it may go. */
export function whyLayerStays(id: string, u: LayerUsers, counted: readonly LayerUse[] = ALL_USES): LayersError | undefined {
  const use = blockingUses(u, counted)[0];
  switch (use) {
    case undefined:
      return undefined;
    case 'children':
      return new LayersError('ELAYERHASCHILDREN', `layer ${id} has child layers: ${u.children.join(', ')}`);
    case 'images':
      return new LayersError('ELAYERINUSE', `layer ${id} is used by image ${u.images.join(', ')}`);
    case 'containers':
      return new LayersError('ELAYERINUSE', `layer ${id} is the layer of container ${u.containers.join(', ')}`);
    case 'templateCopies':
      return new LayersError('ELAYERHASCHILDREN', `layer ${id} is the template of layers made from it: ${u.templateCopies.join(', ')}; remove them first`);
    case 'mounts':
      return new LayersError('ELAYERINUSE', `layer ${id} is mounted (${u.mounts} user${u.mounts === 1 ? '' : 's'}); unmount it first`);
  }
}

/**
 * The layers that removing `image` removes, in removal order: each one that nothing left over
 * (another image's top or mapped layer, a container, a child layer, a template copy) needs.
 * Containers of the image itself must be gone already; mounts are the caller's to refuse.
 */
export function imageRemovalOrder(g: StoreGraph, image: ImageRecord): string[] {
  const byId = new Map(g.layers.map((l) => [l.id, l]));
  // the image's own mapped layers stand on its top layer whatever the driver says
  const hidden = new Map(g.hidden);
  if (image.layer) hidden.set(image.layer, [...(hidden.get(image.layer) ?? []), ...(image['mapped-layers'] ?? [])]);
  const graph = { ...g, hidden };
  const taken = new Set<string>();
  const order: string[] = [];
  const take = (id: string): boolean => {
    if (!byId.has(id) || taken.has(id)) return false;
    if (blockingUses(layerUsers(graph, id, { image: image.id, layers: taken }), RECORD_USES).length > 0) return false;
    taken.add(id);
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
