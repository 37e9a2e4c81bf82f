// The state every part of the store shares, in one object the facade (store.ts) builds and the
// concern modules (layers.ts, images.ts, containers.ts, big-data.ts, repair.ts) take as their
// first argument: the store's directories, the driver, the lock, the three record tables and the
// mount counts (docs/on-disk-format.md names each file). Also the lookups every concern needs:
// a reference to a layer, image or container, found as the peer finds it.
//
// Functions here and in the concern modules do not take locks: the facade takes the peer's lock
// files around each public call (lib/lock.ts), and every table write checks its file's lock is
// held exclusively and touches it after writing.
import fs from 'node:fs';
import path from 'node:path';
import type { Driver } from '../../drivers/driver.ts';
import { LayersError } from '../errors.ts';
import type { IdMap, IdMappings } from '../idmap.ts';
import { lockPaths, StoreLocks, type LockName } from '../lock.ts';
import { MountRecords } from './mounts.ts';
import {
  CONTAINER_FIELDS,
  IMAGE_FIELDS,
  isIncomplete,
  LAYER_FIELDS,
  type AnyRecord,
  type ContainerRecord,
  type ImageRecord,
  type LayerRecord,
} from './records.ts';
import { RecordTable } from './table.ts';

export interface StoreDirs {
  root: string;
  runroot: string;
  /** <root>/<driver>-layers: layers.json, the peer's <id>.tar-split.gz files, each layer's big data in <id>/ */
  layersDir: string;
  /** <root>/<driver>-images: images.json and each image's big data in <id>/ */
  imagesDir: string;
  /** <root>/<driver>-containers: containers.json, each container's big data in <id>/ and its <id>/userdata */
  containersDir: string;
  /** <runroot>/<driver>-containers: each container's <id>/userdata for run-time state */
  runContainersDir: string;
  /** <runroot>/<driver>-layers: mountpoints.json */
  runLayersDir: string;
  /** temp files (decompressed or spooled input, gzip output) on the store's filesystem */
  tmpDir: string;
}

/** An additional (read-only) image store: its layers and images are found, listed, mounted and
 *  used as parents and images, never written (docs/sharing.md, "Additional image stores"). */
export interface ReadOnlyStore {
  root: string;
  layers: RecordTable<LayerRecord>;
  images: RecordTable<ImageRecord>;
}

export interface StoreContext extends StoreDirs {
  driver: Driver;
  locks: StoreLocks;
  readOnlyStores: ReadOnlyStore[];
  layers: RecordTable<LayerRecord>;
  images: RecordTable<ImageRecord>;
  containers: RecordTable<ContainerRecord>;
  mounts: MountRecords;
}

/** What a reference names: the peer's commands take a layer, image or container (the API's `Store` gives views as the records, store.ts). */
export type Found<L = LayerRecord, I = ImageRecord, C = ContainerRecord> =
  | { kind: 'layer'; record: L }
  | { kind: 'image'; record: I }
  | { kind: 'container'; record: C };

/** The store's directories for this driver, made when missing. */
export function storeDirs(root: string, runroot: string, driverName: string): StoreDirs {
  const dirs: StoreDirs = {
    root,
    runroot,
    layersDir: path.join(root, `${driverName}-layers`),
    imagesDir: path.join(root, `${driverName}-images`),
    containersDir: path.join(root, `${driverName}-containers`),
    runContainersDir: path.join(runroot, `${driverName}-containers`),
    runLayersDir: path.join(runroot, `${driverName}-layers`),
    tmpDir: path.join(root, 'tmp'),
  };
  for (const d of [root, dirs.layersDir, dirs.imagesDir, dirs.containersDir, dirs.tmpDir, runroot, dirs.runLayersDir, dirs.runContainersDir])
    fs.mkdirSync(d, { recursive: true, mode: 0o700 });
  return dirs;
}

/**
 * The context over dirs and driver. `onLocked` runs each time an operation has taken its locks,
 * before its work, with the lock names whose records changed (the facade reloads those records,
 * and a writer repairs there).
 */
export function makeContext(
  dirs: StoreDirs,
  driver: Driver,
  onLocked: (ctx: StoreContext, changed: Set<string>, write: boolean) => Promise<void>,
  imageStores: string[] = [],
): StoreContext {
  const refuse = { assertWritable: () => { throw new LayersError('EREADONLY', 'an additional image store is never written'); }, written: () => undefined };
  const readOnlyStores: ReadOnlyStore[] = imageStores.map((root) => ({
    root,
    layers: new RecordTable(path.join(root, `${driver.name}-layers`, 'layers.json'), 'layer', LAYER_FIELDS, 'ELAYERUNKNOWN', refuse),
    images: new RecordTable(path.join(root, `${driver.name}-images`, 'images.json'), 'image', IMAGE_FIELDS, 'EIMAGEUNKNOWN', refuse),
  }));
  const readOnlyLocks = imageStores.flatMap((root, i) => [
    { name: `${i}:layers`, path: path.join(root, `${driver.name}-layers`, 'layers.lock') },
    { name: `${i}:images`, path: path.join(root, `${driver.name}-images`, 'images.lock') },
  ]);
  const locks: StoreLocks = new StoreLocks(lockPaths(dirs.root, dirs.runroot, driver.name), (changed, write) => onLocked(ctx, changed, write), readOnlyLocks);
  const guard = (name: LockName) => ({ assertWritable: () => locks.assertWritable(name), written: () => locks.written(name) });
  const ctx: StoreContext = {
    ...dirs,
    driver,
    locks,
    readOnlyStores,
    layers: new RecordTable(path.join(dirs.layersDir, 'layers.json'), 'layer', LAYER_FIELDS, 'ELAYERUNKNOWN', guard('layers')),
    images: new RecordTable(path.join(dirs.imagesDir, 'images.json'), 'image', IMAGE_FIELDS, 'EIMAGEUNKNOWN', guard('images')),
    containers: new RecordTable(path.join(dirs.containersDir, 'containers.json'), 'container', CONTAINER_FIELDS, 'ECONTAINERUNKNOWN', guard('containers')),
    mounts: new MountRecords(dirs.runLayersDir),
  };
  // which ids each layer's files hold: its record's mappings (docs/images-and-containers.md)
  driver.useLayerMappings?.((id) => {
    const rec = ctx.layers.get(id);
    return rec && mappingsOf(rec);
  });
  return ctx;
}

/** Read again the records behind each changed lock (held): another process wrote them. A layers
 *  reload brings the mount counts with it, as the peer's does. */
export function loadRecords(ctx: StoreContext, changed: Set<string>): void {
  if (changed.has('layers') || changed.has('mountpoints')) {
    ctx.layers.load();
    ctx.mounts.load();
  }
  if (changed.has('images')) ctx.images.load();
  if (changed.has('containers')) ctx.containers.load();
  const roLayers = ctx.readOnlyStores.some((s, i) => changed.has(`${i}:layers`));
  const roImages = ctx.readOnlyStores.some((s, i) => changed.has(`${i}:images`));
  ctx.readOnlyStores.forEach((s, i) => {
    if (changed.has(`${i}:layers`)) s.layers.load();
    if (changed.has(`${i}:images`)) s.images.load();
  });
  // set again after our own load too: it keeps the additional stores' records
  if (roLayers || changed.has('layers') || changed.has('mountpoints')) ctx.layers.setReadOnly(ctx.readOnlyStores.flatMap((s) => s.layers.complete()));
  if (roImages || changed.has('images')) ctx.images.setReadOnly(ctx.readOnlyStores.flatMap((s) => s.images.complete()));
}

export async function saveMounts(ctx: StoreContext): Promise<void> {
  ctx.locks.assertWritable('mountpoints');
  await ctx.mounts.save();
  ctx.locks.written('mountpoints');
}

/** A record's id mappings, empty when it has none. */
export function mappingsOf(r: { uidmap?: IdMap[]; gidmap?: IdMap[] } | undefined): IdMappings {
  return { uidmap: r?.uidmap ?? [], gidmap: r?.gidmap ?? [] };
}

export function tableOf(ctx: StoreContext, kind: Found['kind']): RecordTable<AnyRecord> {
  return { layer: ctx.layers, image: ctx.images, container: ctx.containers }[kind] as unknown as RecordTable<AnyRecord>;
}

/** A container whose read-write layer is complete (one being made or removed is not). */
export function isLive(ctx: StoreContext, c: ContainerRecord): boolean {
  const l = ctx.layers.get(c.layer);
  return l !== undefined && !isIncomplete(l);
}

/**
 * What ref names, as the peer's commands that take any of several kinds look: an exact id or
 * name of each kind in `kinds` order, then an unambiguous id prefix of each.
 */
export function resolveRef(ctx: StoreContext, ref: string, kinds: Array<Found['kind']>): Found | undefined {
  const live = (kind: Found['kind'], r: AnyRecord | undefined) => (kind === 'container' && r && !isLive(ctx, r as ContainerRecord) ? undefined : r);
  for (const how of ['exact', 'lookup'] as const)
    for (const kind of kinds) {
      const r = live(kind, tableOf(ctx, kind)[how](ref));
      if (r) return { kind, record: r } as Found;
    }
  return undefined;
}

/** A layer by id, name or id prefix; `role` names it in the error ("parent layer", ...). */
export function findLayer(ctx: StoreContext, ref: string, role = 'layer'): LayerRecord {
  return ctx.layers.find(ref, role);
}

export function findContainer(ctx: StoreContext, ref: string): ContainerRecord {
  const found = resolveRef(ctx, ref, ['container']);
  if (!found) throw new LayersError('ECONTAINERUNKNOWN', `container "${ref}" not known`);
  return found.record as ContainerRecord;
}

/** A layer, image or container (the peer's metadata and names commands look in that order). */
export function findAny(ctx: StoreContext, ref: string): Found {
  const found = resolveRef(ctx, ref, ['layer', 'image', 'container']);
  if (!found) throw new LayersError('ELAYERUNKNOWN', `layer, image or container "${ref}" not known`);
  return found;
}
