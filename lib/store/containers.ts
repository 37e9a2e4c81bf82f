// Containers and mapped top layers (docs/images-and-containers.md; records in
// docs/on-disk-format.md, "containers.json"). A container is a read-write layer on its image's
// top layer, or, when its id mappings differ from the top layer's, on a mapped top layer: a copy
// of the top layer made by the driver's CreateFromTemplate and shifted to those mappings, listed
// in the image's mapped-layers. Records are written before what they describe is made (the rw
// layer and a mapped layer incomplete until done), so a crash leaves references to incomplete
// layers that the next writer removes, never a complete layer nothing refers to.
import fs from 'node:fs';
import path from 'node:path';
import { cleanupFailed, LayersError } from '../errors.ts';
import { tarSplitPath } from './tar-split-file.ts';
import { failpoint } from '../failpoint.ts';
import { isIdentity, sameMappings, type IdMap, type IdMappings } from '../idmap.ts';
import { findContainer, findLayer, isLive, mappingsOf, type StoreContext } from './context.ts';
import { checkLayerOptions, completeLayer, idmappedChild, layerSize, makeLayer, markIncomplete, recordNewLayer, removeLayer, Steps, usersOf, type LongOperation } from './layers.ts';
import { isIncomplete, rfc3339, type ContainerRecord, type ImageRecord, type LayerRecord } from './records.ts';
import { whyLayerStays } from './removal.ts';

export interface CreateContainerOptions {
  /** default: 64 random hex digits */
  id?: string;
  /** the image: id, name or id prefix; none: a container on no image, its layer with no parent (the peer's create-container "") */
  image?: string;
  names?: string[];
  metadata?: string;
  mountLabel?: string;
  uidmap?: IdMap[];
  gidmap?: IdMap[];
  /** driver options for the read-write layer (btrfs: size=); a key the driver does not take is refused before anything is made */
  storageOpt?: Record<string, string>;
  /** flags.Volatile, as the peer's --volatile: overlay then mounts the container's layer with `volatile` (no syncs; lost on a crash) */
  volatile?: boolean;
}

export interface CreateFromTemplateOptions {
  /** default: 64 random hex digits */
  id?: string;
  /** the template layer: id, name or id prefix */
  template: string;
  names?: string[];
  uidmap?: IdMap[];
  gidmap?: IdMap[];
  /** register the new layer as a mapped top layer of this image (whose top layer must be the template) */
  image?: string;
  /** per-layer driver options (btrfs: size=); a key the driver does not take is refused before anything is made */
  storageOpt?: Record<string, string>;
}

/** The record fields that describe a layer's contents, which a mapped copy shares with its template. */
const CONTENT_FIELDS = ['compressed-diff-digest', 'compressed-size', 'diff-digest', 'diff-size', 'compression', 'uidset', 'gidset'] as const;

/**
 * A container on the image: a read-write layer on the image's top layer, or, when the
 * container's id mappings differ from the top layer's, on the mapped top layer with its
 * mappings (made now when the image has none yet).
 */
export async function createContainer(ctx: StoreContext, opts: CreateContainerOptions & LongOperation): Promise<ContainerRecord> {
  checkLayerOptions(ctx, opts.storageOpt);
  // the container's layer; a mapped top layer made on the way adds its copy and shift
  const steps = new Steps(opts, 1, `creating a container${opts.image === undefined ? '' : ` of image ${opts.image}`}`);
  const image = opts.image === undefined ? undefined : ctx.images.find(opts.image);
  const { id, names } = ctx.containers.reserve(opts.id, opts.names);
  const want = { uidmap: opts.uidmap ?? [], gidmap: opts.gidmap ?? [] };
  // the peer's test switch: its overlay then claims to shift ids at mount time (SupportsShifting),
  // so the container's layer gets no mappings, on the top layer itself (store.go, canUseShifting);
  // the peer's suite asks it (idmaps-create-mapped-container-shifting, docs/sharing.md)
  const forcedShifting = ctx.driver.name === 'overlay' && process.env._TEST_FORCE_SUPPORT_SHIFTING === 'yes-please';
  const layerMappings = forcedShifting ? { uidmap: [], gidmap: [] } : want;
  const idmapped = !forcedShifting && image?.layer !== undefined && (await idmappedOnTop(ctx, image, want));
  const base = image?.layer === undefined ? undefined : idmapped || forcedShifting ? findLayer(ctx, image.layer, `top layer of image ${image.id}`) : await topLayerFor(ctx, image, want, steps);

  const layer = await recordNewLayer(ctx, { parent: base?.id, mountlabel: opts.mountLabel, ...layerMappings });
  failpoint('container-layer-recorded');
  const container: ContainerRecord = {
    id,
    names,
    image: image?.id ?? '',
    layer: layer.id,
    metadata: opts.metadata,
    created: rfc3339(),
    ...want,
    flags: { MountLabel: opts.mountLabel ?? '', ProcessLabel: '', ...(opts.volatile ? { Volatile: true } : {}) },
  };
  try {
    ctx.containers.push(container);
    await ctx.containers.save();
    failpoint('container-recorded');
    for (const d of [ctx.containersDir, ctx.runContainersDir]) fs.mkdirSync(path.join(d, id, 'userdata'), { recursive: true, mode: 0o700 });
    await makeLayer(ctx, layer, base, { storageOpt: opts.storageOpt, idmapped });
    failpoint('container-layer-made');
    steps.step();
  } catch (err) {
    await removeContainer(ctx, container).catch((e) => cleanupFailed(`removing the half-made container ${container.id}`, e));
    throw err;
  }
  await completeLayer(ctx, layer);
  return container;
}

/**
 * Whether the container's layer goes straight on the image's top layer, its mappings applied by
 * idmapped mounts (docs/images-and-containers.md, "Idmapped mounts"): the mappings are new to a
 * top layer that has none, no mapped top layer with them exists yet (one made before is used
 * as before), and the driver can mount idmapped here.
 */
async function idmappedOnTop(ctx: StoreContext, image: ImageRecord, want: IdMappings): Promise<boolean> {
  if (isIdentity(want)) return false;
  const top = findLayer(ctx, image.layer!, `top layer of image ${image.id}`);
  const mapped = (image['mapped-layers'] ?? []).map((m) => ctx.layers.get(m));
  if (mapped.some((l) => l && !isIncomplete(l) && sameMappings(mappingsOf(l), want))) return false;
  return idmappedChild(ctx, top, want, true);
}

/** The image's top layer or mapped top layer with these mappings, made when there is none. */
async function topLayerFor(ctx: StoreContext, image: ImageRecord, want: IdMappings, steps: Steps): Promise<LayerRecord> {
  const top = findLayer(ctx, image.layer!, `top layer of image ${image.id}`);
  const candidates = [top, ...(image['mapped-layers'] ?? []).map((m) => ctx.layers.get(m)).filter((l) => l && !isIncomplete(l))] as LayerRecord[];
  const found = candidates.find((l) => sameMappings(mappingsOf(l), want));
  // an image of an additional store cannot list a mapped layer: the container's layer is then
  // made on the top layer itself and shifted (makeLayer), as the peer's imageTopLayerForMapping does
  if (found || ctx.images.isReadOnly(image)) return found ?? top;
  steps.total += 2;
  return makeMappedLayer(ctx, top, want, steps, { image });
}

/**
 * A copy of template shifted to `want`, made by the driver's CreateFromTemplate: its notional
 * parent is the template's parent, and it carries the template's digests and sizes (its diff,
 * mapped back to container ids, is the template's). With an image, it is listed in the image's
 * mapped-layers (while still incomplete, so a crash never leaves it unlisted).
 */
async function makeMappedLayer(
  ctx: StoreContext,
  template: LayerRecord,
  want: IdMappings,
  steps: Steps,
  opts: { image?: ImageRecord; id?: string; names?: string[]; storageOpt?: Record<string, string> },
): Promise<LayerRecord> {
  const content = Object.fromEntries(CONTENT_FIELDS.map((k) => [k, template[k]]));
  const rec = await recordNewLayer(ctx, { id: opts.id, names: opts.names, parent: template.parent, ...content, ...want });
  failpoint('mapped-layer-recorded');
  try {
    if (opts.image) {
      opts.image['mapped-layers'] = [...(opts.image['mapped-layers'] ?? []), rec.id];
      await ctx.images.save();
      failpoint('mapped-layer-registered');
    }
    await ctx.driver.createFromTemplate(rec.id, template.id, { idMappings: want, storageOpt: opts.storageOpt });
    failpoint('mapped-layer-copied');
    steps.step();
    if (!sameMappings(mappingsOf(template), want)) await ctx.driver.updateIdMappings(rec.id, mappingsOf(template), want);
    failpoint('mapped-layer-shifted');
    steps.step();
    // the copy's diff is the template's: its tar-split record too, as the peer copies it
    // (layers.go, create from a template), so `diff` of either gives the same bytes (the
    // driver's layerDir says where the bodies are: on overlay, the template's diff dir)
    // (on overlay only for an image's mapped layer, whose template the store can find again)
    if ((ctx.driver.name !== 'overlay' || opts.image) && fs.existsSync(tarSplitPath(ctx, template.id))) fs.copyFileSync(tarSplitPath(ctx, template.id), tarSplitPath(ctx, rec.id));
  } catch (err) {
    await removeLayer(ctx, rec).catch((e) => cleanupFailed(`removing the half-made mapped layer ${rec.id}`, e));
    if (opts.image) {
      opts.image['mapped-layers'] = opts.image['mapped-layers']!.filter((m) => m !== rec.id);
      await ctx.images.save();
    }
    throw err;
  }
  await completeLayer(ctx, rec);
  failpoint('mapped-layer-complete');
  return rec;
}

/** A new layer from a template layer with other id mappings; with opts.image, one of that image's mapped top layers. */
export async function createFromTemplate(ctx: StoreContext, opts: CreateFromTemplateOptions & LongOperation): Promise<LayerRecord> {
  checkLayerOptions(ctx, opts.storageOpt);
  const template = findLayer(ctx, opts.template, 'template layer');
  const image = opts.image !== undefined ? ctx.images.find(opts.image) : undefined;
  if (image && image.layer !== template.id)
    throw new LayersError('EUSAGE', `layer ${template.id} is not the top layer of image ${image.id} (${image.layer}); a mapped top layer is made from the top layer`);
  const want = { uidmap: opts.uidmap ?? [], gidmap: opts.gidmap ?? [] };
  // the copy and its shift
  const steps = new Steps(opts, 2, `creating a layer from template ${template.id}`);
  return makeMappedLayer(ctx, template, want, steps, { image, id: opts.id, names: opts.names, storageOpt: opts.storageOpt });
}

/** The container's data directory and run-time directory. */
export function containerDirs(ctx: StoreContext, ref: string): { dir: string; runDir: string } {
  const c = findContainer(ctx, ref);
  return { dir: path.join(ctx.containersDir, c.id, 'userdata'), runDir: path.join(ctx.runContainersDir, c.id, 'userdata') };
}

/** Remove a container: mark its layer incomplete, drop the record and directories, then remove the layer (unmounting it). */
export async function removeContainer(ctx: StoreContext, c: ContainerRecord): Promise<void> {
  const layer = ctx.layers.get(c.layer);
  if (layer) await markIncomplete(ctx, layer);
  dropContainerRecord(ctx, c);
  await ctx.containers.save();
  if (layer) await removeLayer(ctx, layer);
}

/** The container's record and directories go (the caller saves the table). */
export function dropContainerRecord(ctx: StoreContext, c: ContainerRecord): void {
  for (const d of [ctx.containersDir, ctx.runContainersDir]) fs.rmSync(path.join(d, c.id), { recursive: true, force: true });
  ctx.containers.drop(c);
}

/** Remove mapped top layers that nothing but their own image uses (no container, layer, other image or mount); returns their ids. */
export async function prune(ctx: StoreContext): Promise<string[]> {
  const removed: string[] = [];
  for (const image of ctx.images.complete())
    for (const id of [...(image['mapped-layers'] ?? [])].reverse()) {
      const layer = ctx.layers.get(id);
      if (!layer) continue;
      if (whyLayerStays(id, await usersOf(ctx, id, { image: image.id }))) continue;
      // marked incomplete first: a crash before the image forgets it leaves a dangling entry the repair drops
      await removeLayer(ctx, layer);
      image['mapped-layers'] = image['mapped-layers']!.filter((m) => m !== id);
      await ctx.images.save();
      removed.push(id);
    }
  return removed;
}

/** Bytes of the regular files under dir (0 when it does not exist). */
function filesSize(dir: string): number {
  let size = 0;
  let names: fs.Dirent[];
  try {
    names = fs.readdirSync(dir, { withFileTypes: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw err;
  }
  for (const d of names) {
    const p = path.join(dir, d.name);
    if (d.isDirectory()) size += filesSize(p);
    else if (d.isFile()) size += fs.lstatSync(p).size;
  }
  return size;
}

/**
 * A container's size as the peer's ContainerSize counts it: its read-write layer's size, the
 * files of its directory (its data items and userdata) and of its run-time directory.
 */
export async function containerSize(ctx: StoreContext, c: ContainerRecord): Promise<number> {
  const layer = ctx.layers.get(c.layer);
  const layerBytes = layer ? await layerSize(ctx, layer) : 0;
  return layerBytes + filesSize(path.join(ctx.containersDir, c.id)) + filesSize(path.join(ctx.runContainersDir, c.id));
}

/** The container whose read-write layer this is (the peer's ContainerByLayer). */
export function containerByLayer(ctx: StoreContext, layerId: string): ContainerRecord {
  const c = ctx.containers.records.find((r) => r.layer === layerId && isLive(ctx, r));
  if (!c) throw new LayersError('ECONTAINERUNKNOWN', `layer ${layerId}: no container has it as its layer: container not known`);
  return c;
}
