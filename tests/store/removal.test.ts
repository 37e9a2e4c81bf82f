// The pure removal decisions (lib/store/removal.ts; docs/images-and-containers.md, "Removal
// order" and "Crashes"): what keeps a layer, why delete-layer refuses it, which layers an image's
// removal takes and in what order, and the order the repair removes incomplete layers in. Records
// are built by hand: these functions read nothing else.
import test from 'ava';
import { isLayersError } from '../../lib/index.ts';
import type { ContainerRecord, ImageRecord, LayerRecord } from '../../lib/store/records.ts';
import {
  ALL_USES,
  blockingUses,
  imageRemovalOrder,
  incompleteRemovalOrder,
  layerUsers,
  RECORD_USES,
  whyLayerStays,
  type StoreGraph,
} from '../../lib/store/removal.ts';

/** Layers from "id" or "id<parent" specs, in creation order. */
function layers(...specs: string[]): LayerRecord[] {
  return specs.map((s) => {
    const [id, parent] = s.split('<');
    return parent ? { id, parent } : { id };
  });
}

function graph(g: Partial<StoreGraph> & { layers: LayerRecord[] }): StoreGraph {
  return { images: [], containers: [], hidden: new Map(), ...g };
}

const image = (id: string, layer: string, mapped?: string[]): ImageRecord => ({ id, layer, ...(mapped ? { 'mapped-layers': mapped } : {}) });
const container = (id: string, layer: string, img = 'img'): ContainerRecord => ({ id, image: img, layer });

test('an image whose layers another image shares takes only what is its own', (t) => {
  // base <- mid <- top1 (image a), mid <- top2 (image b)
  const a = image('a', 'top1');
  const b = image('b', 'top2');
  const g = graph({ layers: layers('base', 'mid<base', 'top1<mid', 'top2<mid'), images: [a, b] });
  t.deepEqual(imageRemovalOrder(g, a), ['top1'], 'mid is the parent of top2: it stays, and base under it');
  t.deepEqual(imageRemovalOrder(g, b), ['top2']);
  // with a gone, b takes its whole chain, top first
  const after = graph({ layers: layers('base', 'mid<base', 'top2<mid'), images: [b] });
  t.deepEqual(imageRemovalOrder(after, b), ['top2', 'mid', 'base']);
  // an image whose top layer is another image's parent layer takes nothing
  const c = image('c', 'mid');
  t.deepEqual(imageRemovalOrder(graph({ layers: layers('base', 'mid<base', 'top2<mid'), images: [b, c] }), c), []);
  // two images on the same top layer: neither takes it while the other is there
  const d = image('d', 'top2');
  t.deepEqual(imageRemovalOrder(graph({ layers: layers('base', 'mid<base', 'top2<mid'), images: [b, d] }), d), []);
});

test('mapped top layers go first, newest first, then the top layer and its parents', (t) => {
  // m1 and m2 are copies of top: their records name top's parent, yet they stand on top
  const img = image('img', 'top', ['m1', 'm2']);
  const g = graph({ layers: layers('base', 'top<base', 'm1<base', 'm2<base'), images: [img] });
  t.deepEqual(imageRemovalOrder(g, img), ['m2', 'm1', 'top', 'base'], 'no driver report needed: the image says its copies stand on its top layer');
  // a container on m1 keeps m1, so top (m1 stands on it) and base (m1's parent) stay too
  const used = graph({ ...g, layers: layers('base', 'top<base', 'm1<base', 'm2<base', 'rw<m1'), containers: [container('c', 'rw', 'other')] });
  t.deepEqual(imageRemovalOrder(used, img), ['m2']);
  // another image listing m2 among its mapped layers keeps it, and with it top
  const shared = graph({ ...g, images: [img, image('other', 'x', ['m2'])], layers: layers('base', 'top<base', 'm1<base', 'm2<base', 'x') });
  t.deepEqual(imageRemovalOrder(shared, img), ['m1']);
});

test('a layer with a child stays, and says so first', (t) => {
  const g = graph({ layers: layers('p', 'c<p'), images: [image('i', 'p')], containers: [container('k', 'p')], mounts: new Map([['p', 2]]) });
  const u = layerUsers(g, 'p');
  t.deepEqual(u, { children: ['c'], templateCopies: [], images: ['i'], containers: ['k'], mounts: 2 });
  t.deepEqual(blockingUses(u), ['children', 'images', 'containers', 'mounts']);
  const why = whyLayerStays('p', u);
  t.true(isLayersError(why, 'ELAYERHASCHILDREN'), why?.message);
  t.is(why!.message, 'layer p has child layers: c');
  // a child that is going anyway does not count
  t.deepEqual(layerUsers(g, 'p', { layers: new Set(['c']) }).children, []);
  // and the leaf may go
  t.is(whyLayerStays('c', layerUsers(g, 'c')), undefined);
});

test('a container on a layer keeps it; an image keeps its top and mapped layers', (t) => {
  const g = graph({ layers: layers('top', 'm<top', 'rw<top'), images: [image('i', 'top', ['m'])], containers: [container('k', 'rw', 'i')] });
  const rw = whyLayerStays('rw', layerUsers(g, 'rw'));
  t.true(isLayersError(rw, 'ELAYERINUSE'), rw?.message);
  t.is(rw!.message, 'layer rw is the layer of container k');
  const m = whyLayerStays('m', layerUsers(g, 'm'));
  t.true(isLayersError(m, 'ELAYERINUSE'), m?.message);
  t.is(m!.message, 'layer m is used by image i');
  // prune's view: the image that lists m is the one letting it go
  t.is(whyLayerStays('m', layerUsers(g, 'm', { image: 'i' })), undefined);
  // the container's own image removal (containers gone first) takes rw's parent only once rw is gone
  t.deepEqual(imageRemovalOrder(g, g.images[0]), ['m'], 'top has rw as a child');
});

test('copies made from a template keep it, as the driver reports them', (t) => {
  // copy's record names base as parent, but its files stand on tpl (overlay lowers)
  const g = graph({ layers: layers('base', 'tpl<base', 'copy<base'), images: [image('i', 'tpl')], hidden: new Map([['tpl', ['copy']]]) });
  const u = layerUsers(g, 'tpl', { image: 'i' });
  t.deepEqual(u.templateCopies, ['copy']);
  const why = whyLayerStays('tpl', u);
  t.true(isLayersError(why, 'ELAYERHASCHILDREN'), why?.message);
  t.is(why!.message, 'layer tpl is the template of layers made from it: copy; remove them first');
  t.deepEqual(imageRemovalOrder(g, g.images[0]), [], 'the image keeps neither tpl (copy stands on it) nor base (copy names it)');
  // a hidden dependent the records do not know, or the layer itself, is no dependent
  t.deepEqual(layerUsers(graph({ ...g, hidden: new Map([['tpl', ['tpl', 'gone']]]) }), 'tpl').templateCopies, []);
});

test('mounts keep a layer for delete-layer but are the caller\'s to refuse in an image removal', (t) => {
  const img = image('i', 'top');
  const g = graph({ layers: layers('top'), images: [img], mounts: new Map([['top', 1]]) });
  const u = layerUsers(g, 'top', { image: 'i' });
  t.deepEqual(blockingUses(u, ALL_USES), ['mounts']);
  t.deepEqual(blockingUses(u, RECORD_USES), []);
  t.is(whyLayerStays('top', u)!.message, 'layer top is mounted (1 user); unmount it first');
  t.deepEqual(imageRemovalOrder(g, img), ['top']);
});

test('incomplete layers after a crash go mapped top layers first, then newest first', (t) => {
  // made in this order: base, top, m1 (copy of top), child, m2; all left incomplete but base
  const all = layers('base', 'top<base', 'm1<base', 'child<top', 'm2<base');
  const incomplete = new Set(['top', 'm1', 'child', 'm2']);
  const order = incompleteRemovalOrder(all, [image('i', 'top', ['m1', 'm2'])], (l) => incomplete.has(l.id));
  t.deepEqual(
    order.map((l) => l.id),
    ['m2', 'm1', 'child', 'top'],
    'copies before their template, children before their parents, complete layers left alone',
  );
  // each layer goes only after everything standing on it: no child and no copy of it is left then
  const left = new Set(all.map((l) => l.id));
  for (const l of order) {
    const mapped = ['m1', 'm2'].filter((m) => left.has(m));
    const g = graph({ layers: all.filter((x) => left.has(x.id)), images: [image('i', 'top', mapped)], hidden: new Map([['top', mapped]]) });
    t.deepEqual(blockingUses(layerUsers(g, l.id, { image: 'i' })), [], `nothing stands on ${l.id} when it goes`);
    left.delete(l.id);
  }
});
