// The layer store (docs/on-disk-format.md, "Writes, locking and recovery"): records, ordering, crash recovery and locking around a
// graph driver. It never touches file contents itself; the driver and the tar engine do.
//
// Ordering rules that make a crash at any point recoverable:
// - a layer's record is saved with flags.incomplete before the driver creates anything, and the
//   flag is cleared only once the layer is complete;
// - deletion marks the layer incomplete before its data goes;
// - a container's record is saved while its read-write layer is still incomplete, and a mapped
//   top layer is listed in its image while still incomplete: a crash leaves references to an
//   incomplete layer, never a complete layer nothing refers to;
// - an image's removal marks the image incomplete, then every layer it will remove, in one write;
// - taking the writer lock reloads the records and repairs what a holder that died left (a live
//   holder would still hold the lock): it finishes removals of images marked incomplete, removes
//   incomplete layers (mapped top layers first, then newest first), and drops containers whose
//   layer is gone and references to layers that are gone.
import fs from 'node:fs';
import path from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';
import { openDriver } from '../../drivers/index.ts';
import type { Change, Driver, MountOptions } from '../../drivers/driver.ts';
import { writeFileAtomic } from '../atomic.ts';
import { LayersError } from '../errors.ts';
import { failpoint } from '../failpoint.ts';
import { sameMappings, toContainer, type IdMap, type IdMappings } from '../idmap.ts';
import { StoreLock } from '../lock.ts';
import { copyPath, type CopyEnd } from './copy.ts';
import { prepareInput, tempFile } from './input.ts';
import { MountRecords, type MountRecord } from './mounts.ts';
import {
  Compression,
  CONTAINER_FIELDS,
  IMAGE_FIELDS,
  isIncomplete,
  LAYER_FIELDS,
  normalize as normalizeAny,
  normalizeRecord,
  rfc3339,
  type AnyRecord,
  type BigDataRecord,
  type ContainerRecord,
  type ImageRecord,
  type LayerRecord,
} from './records.ts';
import { imageRemovalOrder, incompleteRemovalOrder } from './removal.ts';
import { RecordTable } from './table.ts';

export interface StoreOptions {
  /** where layers and records live (containers-storage's --graph); default /var/lib/containers/storage */
  root: string;
  /** where mount counts live (--run); default /run/containers/storage */
  runroot: string;
  /** graph driver name; default vfs */
  driver?: string;
  /** driver options as given with --storage-opt, "vfs.key=value" */
  storageOpts?: string[];
}

export interface CreateImageOptions {
  /** default: 64 random hex digits */
  id?: string;
  /** the top layer: id, name or id prefix */
  layer: string;
  names?: string[];
  metadata?: string;
  digest?: string;
}

export interface CreateContainerOptions {
  /** default: 64 random hex digits */
  id?: string;
  /** the image: id, name or id prefix */
  image: string;
  names?: string[];
  metadata?: string;
  mountLabel?: string;
  uidmap?: IdMap[];
  gidmap?: IdMap[];
  /** driver options for the read-write layer (btrfs: size=); a key the driver does not take is refused before anything is made */
  storageOpt?: Record<string, string>;
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

/** What a reference names: the peer's commands take a layer, image or container. */
export type Found =
  | { kind: 'layer'; record: LayerRecord }
  | { kind: 'image'; record: ImageRecord }
  | { kind: 'container'; record: ContainerRecord };

/** A path to copy from or to: in a layer (mounted for the copy), or on the host when no layer is named. */
export interface CopySpec {
  layer?: string;
  path: string;
}

/** What can hold data items (named blobs beside the record). */
export type DataOwnerKind = Found['kind'];

/** A data item's bytes, with the size and digest the record gives (or the bytes do). */
export interface BigDataItem {
  data: Buffer;
  size: number;
  digest: string;
}

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
  readWrite?: boolean;
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

const ID_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

function describeInput(input: DiffInput): string {
  if (typeof input === 'string') return input;
  return input === 0 ? 'stdin' : `fd ${input}`;
}

function clone<T>(v: T): T {
  return structuredClone(v);
}

/** Bytes a big-data key may not be stored under as it is: the peer's rule (lower case, digits, '.'). */
function bigDataFileName(key: string): string {
  return /^[a-z0-9.]+$/.test(key) ? key : '=' + Buffer.from(key).toString('base64');
}

const newId = () => randomBytes(32).toString('hex');

function checkId(id: string, kind: string): void {
  if (!ID_RE.test(id)) throw new LayersError('EUSAGE', `bad ${kind} id "${id}": use letters, digits, '.', '_' and '-'`);
}

/** The record fields that describe a layer's contents, which a mapped copy shares with its template. */
const CONTENT_FIELDS = ['compressed-diff-digest', 'compressed-size', 'diff-digest', 'diff-size', 'compression', 'uidset', 'gidset'] as const;

export class Store {
  readonly root: string;
  readonly runroot: string;
  readonly storageOpts: string[];
  readonly driver: Driver;
  /** <root>/<driver>-layers: layers.json, the peer's <id>.tar-split.gz files, each layer's big data in <id>/ */
  readonly layersDir: string;
  /** <root>/<driver>-images: images.json and each image's big data in <id>/ */
  readonly imagesDir: string;
  /** <root>/<driver>-containers: containers.json, each container's big data in <id>/ and its <id>/userdata */
  readonly containersDir: string;
  /** <runroot>/<driver>-containers: each container's <id>/userdata for run-time state */
  readonly runContainersDir: string;
  /** temp files (decompressed or spooled input, gzip output) on the store's filesystem */
  readonly tmpDir: string;
  private readonly mounts: MountRecords;
  private readonly lock: StoreLock;
  private readonly layerTable: RecordTable<LayerRecord>;
  private readonly imageTable: RecordTable<ImageRecord>;
  private readonly containerTable: RecordTable<ContainerRecord>;

  private constructor(opts: StoreOptions) {
    this.root = path.resolve(opts.root);
    this.runroot = path.resolve(opts.runroot);
    this.storageOpts = opts.storageOpts ?? [];
    for (const o of this.storageOpts)
      if (!/^[^=]+=/.test(o)) throw new LayersError('EUSAGE', `bad storage option "${o}": want key=value`);
    const name = opts.driver ?? 'vfs';
    this.layersDir = path.join(this.root, `${name}-layers`);
    this.imagesDir = path.join(this.root, `${name}-images`);
    this.containersDir = path.join(this.root, `${name}-containers`);
    this.runContainersDir = path.join(this.runroot, `${name}-containers`);
    this.tmpDir = path.join(this.root, 'tmp');
    const runLayers = path.join(this.runroot, `${name}-layers`);
    this.driver = openDriver(name, this.root, this.runroot, this.storageOpts);
    for (const d of [this.root, this.layersDir, this.imagesDir, this.containersDir, this.tmpDir, this.runroot, runLayers, this.runContainersDir])
      fs.mkdirSync(d, { recursive: true, mode: 0o700 });
    const held = () => this.lock.assertHeld();
    this.layerTable = new RecordTable(path.join(this.layersDir, 'layers.json'), 'layer', LAYER_FIELDS, 'ELAYERUNKNOWN', held);
    this.imageTable = new RecordTable(path.join(this.imagesDir, 'images.json'), 'image', IMAGE_FIELDS, 'EIMAGEUNKNOWN', held);
    this.containerTable = new RecordTable(path.join(this.containersDir, 'containers.json'), 'container', CONTAINER_FIELDS, 'ECONTAINERUNKNOWN', held);
    this.mounts = new MountRecords(runLayers);
    this.lock = new StoreLock(path.join(this.root, 'layers-store.lock'), async () => {
      this.load();
      await this.repair();
    });
  }

  static async open(opts: StoreOptions): Promise<Store> {
    const store = new Store(opts);
    store.load();
    // leftovers of a writer that died: repair them under the lock (which waits for a live writer)
    if (store.needsRepair()) await store.lock.withLock(async () => undefined);
    return store;
  }

  // ---- reading ----

  private load(): void {
    this.layerTable.load();
    this.imageTable.load();
    this.containerTable.load();
    this.mounts.load();
  }

  private get records(): LayerRecord[] {
    return this.layerTable.records;
  }

  /** complete layers, in creation order */
  async layers(): Promise<LayerRecord[]> {
    this.load();
    return clone(this.layerTable.complete());
  }

  /** the layer with this id, name or unambiguous id prefix */
  async layer(ref: string): Promise<LayerRecord> {
    this.load();
    return clone(this.find(ref));
  }

  async exists(ref: string): Promise<boolean> {
    this.load();
    return this.layerTable.lookup(ref) !== undefined;
  }

  /** complete images, in creation order */
  async images(): Promise<ImageRecord[]> {
    this.load();
    return clone(this.imageTable.complete());
  }

  async image(ref: string): Promise<ImageRecord> {
    this.load();
    return clone(this.imageTable.find(ref));
  }

  /** images whose digest (or one of whose digests) is this one */
  async imagesByDigest(digest: string): Promise<ImageRecord[]> {
    this.load();
    return clone(this.imageTable.complete().filter((i) => i.digest === digest || i.digests?.includes(digest)));
  }

  /** containers whose read-write layer is complete (one being made or removed is left out) */
  async containers(): Promise<ContainerRecord[]> {
    this.load();
    return clone(this.liveContainers());
  }

  async container(ref: string): Promise<ContainerRecord> {
    this.load();
    return clone(this.findContainer(ref));
  }

  /**
   * What ref names, as the peer's commands that take any of the three look: an exact id or
   * name of a layer, an image, a container (in that order), then an unambiguous id prefix.
   */
  async resolve(ref: string, kinds: Array<Found['kind']> = ['layer', 'image', 'container']): Promise<Found | undefined> {
    this.load();
    const found = this.resolveLoaded(ref, kinds);
    return found && ({ kind: found.kind, record: clone(found.record) } as Found);
  }

  private resolveLoaded(ref: string, kinds: Array<Found['kind']>): Found | undefined {
    const tables = { layer: this.layerTable, image: this.imageTable, container: this.containerTable };
    const live = (kind: Found['kind'], r: AnyRecord | undefined) => (kind === 'container' && r && !this.isLive(r as ContainerRecord) ? undefined : r);
    for (const how of ['exact', 'lookup'] as const)
      for (const kind of kinds) {
        const r = live(kind, tables[kind][how](ref));
        if (r) return { kind, record: r } as Found;
      }
    return undefined;
  }

  /** mounts of complete layers: [{id, path, count}] */
  async mounted(): Promise<MountRecord[]> {
    this.load();
    return this.mounts.all();
  }

  async mountCount(ref: string): Promise<number> {
    this.load();
    return this.mounts.count(this.mountTarget(ref).id);
  }

  /** the names of the data items of a layer, image or container */
  async bigDataNames(kind: DataOwnerKind, ref: string): Promise<string[]> {
    this.load();
    return [...(this.dataOwner(kind, ref).record['big-data-names'] ?? [])];
  }

  /**
   * A data item of a layer, image or container, with its size and digest (images and containers
   * record both when the item is set, as the peer does; a layer's are worked out from the bytes).
   */
  async bigData(kind: DataOwnerKind, ref: string, key: string): Promise<BigDataItem> {
    this.load();
    const { record, dir } = this.dataOwner(kind, ref);
    if (!record['big-data-names']?.includes(key)) throw new LayersError('EBIGDATAUNKNOWN', `${kind} ${record.id} has no data item "${key}"`);
    const data = fs.readFileSync(path.join(dir, bigDataFileName(key)));
    return { data, size: record['big-data-sizes']?.[key] ?? data.length, digest: record['big-data-digests']?.[key] ?? digestOf(data) };
  }

  /** A record that holds data items, and the directory the peer keeps them in: <driver>-<kind>s/<id>/. */
  private dataOwner(kind: DataOwnerKind, ref: string): { record: BigDataRecord; dir: string; table: RecordTable<AnyRecord> } {
    const table = this.tableOf(kind);
    const record: BigDataRecord = kind === 'container' ? this.findContainer(ref) : table.find(ref);
    const base = { layer: this.layersDir, image: this.imagesDir, container: this.containersDir }[kind];
    return { record, dir: path.join(base, record.id), table };
  }

  /**
   * The owners of the directories above the mount point of a layer (or of a container's layer)
   * that its id mappings cannot map into the container, as containers/storage's ParentOwners
   * works them out: a runtime must let those ids through for the container to reach its root.
   * Both stat and lstat of each directory count. None when the layer has no mappings; an error
   * when it is not mounted (there is no mount point to look above).
   */
  async parentOwners(ref: string, kind: 'layer' | 'container'): Promise<{ uids: number[]; gids: number[] }> {
    this.load();
    const rec = kind === 'container' ? this.layerTable.get(this.findContainer(ref).layer)! : this.find(ref);
    const { uidmap, gidmap } = this.mappings(rec);
    if (uidmap.length === 0 && gidmap.length === 0) return { uids: [], gids: [] };
    const mount = this.mounts.get(rec.id);
    if (!mount || !fs.existsSync(mount.path)) throw new LayersError('ENOTMOUNTED', `layer ${rec.id} is not mounted: mount it to know what is above its mount point`);
    const uids = new Set<number>();
    const gids = new Set<number>();
    for (let dir = path.dirname(mount.path); ; dir = path.dirname(dir)) {
      if (dir === '/') break;
      for (const st of [fs.statSync(dir), fs.lstatSync(dir)]) {
        if (toContainer(uidmap, st.uid) === undefined) uids.add(st.uid);
        if (toContainer(gidmap, st.gid) === undefined) gids.add(st.gid);
      }
    }
    const sorted = (s: Set<number>) => [...s].sort((a, b) => a - b);
    return { uids: sorted(uids), gids: sorted(gids) };
  }

  /** the container's data directory and run-time directory */
  async containerDirs(ref: string): Promise<{ dir: string; runDir: string }> {
    this.load();
    const c = this.findContainer(ref);
    return { dir: path.join(this.containersDir, c.id, 'userdata'), runDir: path.join(this.runContainersDir, c.id, 'userdata') };
  }

  private find(ref: string, role = 'layer'): LayerRecord {
    return this.layerTable.find(ref, role);
  }

  private isLive(c: ContainerRecord): boolean {
    const l = this.layerTable.get(c.layer);
    return l !== undefined && !isIncomplete(l);
  }

  private liveContainers(): ContainerRecord[] {
    return this.containerTable.records.filter((c) => this.isLive(c));
  }

  private findContainer(ref: string): ContainerRecord {
    const found = this.resolveLoaded(ref, ['container']);
    if (!found) throw new LayersError('ECONTAINERUNKNOWN', `container "${ref}" not known`);
    return found.record as ContainerRecord;
  }

  /** The layer a mount or unmount of ref means: a container's read-write layer (as the peer looks first), or a layer. */
  private mountTarget(ref: string): LayerRecord {
    const found = this.resolveLoaded(ref, ['container', 'layer']);
    if (!found) throw new LayersError('ELAYERUNKNOWN', `layer or container "${ref}" not known`);
    return found.kind === 'container' ? this.layerTable.get(found.record.layer)! : (found.record as LayerRecord);
  }

  private children(id: string): LayerRecord[] {
    return this.records.filter((r) => r.parent === id);
  }

  private mappings(r: { uidmap?: IdMap[]; gidmap?: IdMap[] } | undefined): IdMappings {
    return { uidmap: r?.uidmap ?? [], gidmap: r?.gidmap ?? [] };
  }

  /** Layers whose files stand on this one though their records name another parent (the driver knows). */
  private async hiddenDependents(id: string): Promise<string[]> {
    const found = (await this.driver.dependents?.(id)) ?? [];
    return found.filter((d) => d !== id && this.layerTable.get(d) !== undefined && this.layerTable.get(d)!.parent !== id);
  }

  /** Why the layer cannot go (used by an image, a container, child or hidden dependent layers, a mount), or undefined. */
  private async layerInUse(rec: LayerRecord): Promise<LayersError | undefined> {
    const kids = this.children(rec.id);
    if (kids.length > 0) return new LayersError('ELAYERHASCHILDREN', `layer ${rec.id} has child layers: ${kids.map((k) => k.id).join(', ')}`);
    const images = this.imageTable.records.filter((i) => i.layer === rec.id || i['mapped-layers']?.includes(rec.id));
    if (images.length > 0) return new LayersError('ELAYERINUSE', `layer ${rec.id} is used by image ${images.map((i) => i.id).join(', ')}`);
    const containers = this.containerTable.records.filter((c) => c.layer === rec.id);
    if (containers.length > 0) return new LayersError('ELAYERINUSE', `layer ${rec.id} is the layer of container ${containers.map((c) => c.id).join(', ')}`);
    const hidden = await this.hiddenDependents(rec.id);
    if (hidden.length > 0)
      return new LayersError('ELAYERHASCHILDREN', `layer ${rec.id} is the template of layers made from it: ${hidden.join(', ')}; remove them first`);
    const n = this.mounts.count(rec.id);
    if (n > 0) return new LayersError('ELAYERINUSE', `layer ${rec.id} is mounted (${n} user${n === 1 ? '' : 's'}); unmount it first`);
    return undefined;
  }

  // ---- repair ----

  private needsRepair(): boolean {
    const layerIds = new Set(this.layerTable.complete().map((l) => l.id));
    return (
      this.records.some(isIncomplete) ||
      this.imageTable.records.some((i) => isIncomplete(i) || (i.layer !== undefined && !layerIds.has(i.layer)) || i['mapped-layers']?.some((m) => !this.layerTable.get(m))) ||
      this.containerTable.records.some((c) => !this.layerTable.get(c.layer))
    );
  }

  /** Finish or undo what a writer that died left (see the ordering rules at the top). */
  private async repair(): Promise<void> {
    try {
      for (const image of this.imageTable.records.filter(isIncomplete)) await this.finishImageRemoval(image);
      for (const r of incompleteRemovalOrder(this.records, this.imageTable.records, isIncomplete)) await this.removeLayer(r);
      this.dropDangling();
    } catch (err) {
      throw new LayersError('EDRIVER', `repairing the store after an interrupted operation: ${(err as Error).message}`, { cause: err });
    }
  }

  /** Containers whose layer is gone, images whose top layer is gone, and mapped layers that are gone from their images. */
  private dropDangling(): void {
    const exists = (id: string) => this.layerTable.get(id) !== undefined;
    const orphans = this.containerTable.records.filter((c) => !exists(c.layer));
    for (const c of orphans) this.dropContainerRecord(c);
    if (orphans.length > 0) this.containerTable.save();
    let imagesChanged = false;
    for (const image of [...this.imageTable.records]) {
      const mapped = image['mapped-layers']?.filter(exists);
      if (mapped && mapped.length !== image['mapped-layers']!.length) {
        image['mapped-layers'] = mapped;
        imagesChanged = true;
      }
      // an image whose top layer is gone cannot be used: nothing but its record is left
      if (image.layer !== undefined && !exists(image.layer)) {
        this.dropImageRecord(image);
        imagesChanged = true;
      }
    }
    if (imagesChanged) this.imageTable.save();
  }

  // ---- writing ----

  private saveLayers(): void {
    this.layerTable.save();
  }

  private saveMounts(): void {
    this.lock.assertHeld();
    this.mounts.save();
  }

  /** mark incomplete, remove the data, then the record */
  private async removeLayer(r: LayerRecord): Promise<void> {
    if (!isIncomplete(r)) {
      r.flags = { ...r.flags, incomplete: true };
      this.saveLayers();
    }
    if (this.mounts.count(r.id) > 0) {
      await this.driver.unmount(r.id);
      this.mounts.drop(r.id);
      this.saveMounts();
    }
    await this.driver.remove(r.id);
    fs.rmSync(path.join(this.layersDir, `${r.id}.tar-split.gz`), { force: true });
    fs.rmSync(path.join(this.layersDir, r.id), { recursive: true, force: true });
    this.layerTable.drop(r);
    this.saveLayers();
  }

  /** A new layer record, saved incomplete before anything else is made for it. */
  private recordNewLayer(fields: Partial<LayerRecord>): LayerRecord {
    const id = fields.id ?? newId();
    checkId(id, 'layer');
    if (this.records.some((r) => r.id === id)) throw new LayersError('ELAYEREXISTS', `layer id ${id} is already in use`);
    const names = [...new Set(fields.names ?? [])];
    this.layerTable.checkNames(names);
    const rec: LayerRecord = { ...fields, id, names, created: rfc3339(), flags: { incomplete: true } };
    this.records.push(rec);
    this.saveLayers();
    return rec;
  }

  private completeLayer(rec: LayerRecord): void {
    delete rec.flags!.incomplete;
    this.saveLayers();
  }

  /** Create a layer (a child of opts.parent when given), and apply `input` to it when given. */
  async createLayer(opts: CreateLayerOptions = {}, input?: DiffInput): Promise<LayerRecord> {
    return this.lock.withLock(async () => {
      this.checkLayerOptions(opts.storageOpt);
      const parent = opts.parent !== undefined ? this.find(opts.parent, 'parent layer') : undefined;
      const mappings = { uidmap: opts.uidmap ?? [], gidmap: opts.gidmap ?? [] };
      const rec = this.recordNewLayer({ id: opts.id, names: opts.names, parent: parent?.id, metadata: opts.metadata, mountlabel: opts.mountLabel, ...mappings });
      try {
        await this.makeLayer(rec, parent, { readWrite: opts.readWrite, storageOpt: opts.storageOpt });
        if (input !== undefined) await this.applyInto(rec, input);
      } catch (err) {
        // on failure the record stays incomplete; the next writer removes it if this cannot
        await this.removeLayer(rec).catch(() => undefined);
        throw err;
      }
      this.completeLayer(rec);
      return clone(normalizeRecord(rec));
    });
  }

  /** The driver's part of a new layer on parent, with the owners of what it inherits shifted to rec's mappings. */
  private async makeLayer(rec: LayerRecord, parent: LayerRecord | undefined, opts: { readWrite?: boolean; storageOpt?: Record<string, string> }): Promise<void> {
    const mappings = this.mappings(rec);
    await this.driver.create(rec.id, parent?.id, { ...opts, idMappings: mappings });
    // the copy of the parent carries the parent's owners: shift them to this layer's mappings
    if (parent && !sameMappings(this.mappings(parent), mappings)) await this.driver.updateIdMappings(rec.id, this.mappings(parent), mappings);
  }

  /** Per-layer driver options must be ones the driver takes: refused before any record is made. */
  private checkLayerOptions(storageOpt: Record<string, string> | undefined): void {
    for (const key of Object.keys(storageOpt ?? {}))
      if (!this.driver.layerOptions.includes(key)) {
        const takes = this.driver.layerOptions.length ? `it takes ${this.driver.layerOptions.join(', ')}` : 'it takes none';
        throw new LayersError('EUSAGE', `${this.driver.name}: no per-layer option "${key}" (${takes})`);
      }
  }

  /** Apply a tar to an existing layer. If it fails the layer is left incomplete and removed by the next writer. */
  async applyDiff(ref: string, input: DiffInput): Promise<LayerRecord> {
    return this.lock.withLock(async () => {
      const rec = this.find(ref);
      const kids = this.children(rec.id);
      if (kids.length > 0)
        throw new LayersError('ELAYERHASCHILDREN', `layer ${rec.id} has child layers (${kids.map((k) => k.id).join(', ')}); they would not see the change`);
      const hidden = await this.hiddenDependents(rec.id);
      if (hidden.length > 0) throw new LayersError('ELAYERHASCHILDREN', `layer ${rec.id} is the template of layers made from it (${hidden.join(', ')}); they would see the change`);
      rec.flags = { ...rec.flags, incomplete: true };
      this.saveLayers();
      try {
        await this.applyInto(rec, input);
      } catch (err) {
        const e = err as Error;
        e.message += `; layer ${rec.id} is left incomplete and will be removed`;
        throw e;
      }
      this.completeLayer(rec);
      return clone(normalizeRecord(rec));
    });
  }

  /** Extract input into rec's layer and record its digests, sizes and owners as the peer does. */
  private async applyInto(rec: LayerRecord, input: DiffInput): Promise<void> {
    const what = describeInput(input);
    const fd = typeof input === 'string' ? openInput(input) : input;
    try {
      const prepared = await prepareInput(fd, what, this.tmpDir);
      try {
        const mappings = this.mappings(rec);
        let result;
        try {
          result = await this.driver.applyDiff(rec.id, rec.parent, prepared.fd, { idMappings: mappings });
        } catch (err) {
          const e = err as Error;
          e.message = `applying ${what} to layer ${rec.id}: ${e.message}`;
          throw e;
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

  /**
   * The layer and what it is compared with: its parent or the reference layer, each with its id
   * mappings, so that owners compare in container ids (a mapped layer's files, shifted, are no
   * change against its parent's).
   */
  private comparison(ref: string, reference: string | undefined) {
    const rec = this.find(ref);
    const against = reference !== undefined ? this.find(reference, 'reference layer') : rec.parent !== undefined ? this.layerTable.get(rec.parent) : undefined;
    return { rec, against: against?.id, opts: { idMappings: this.mappings(rec), parentIdMappings: this.mappings(against ?? rec) } };
  }

  /** Write the layer's changes against its parent (or opts.reference) as a tar to fd. */
  async diff(ref: string, fd: number, opts: DiffOptions = {}): Promise<void> {
    this.load();
    const { rec, against, opts: compared } = this.comparison(ref, opts.reference);
    const diffOpts = { ...compared, sparse: opts.sparse };
    if (opts.compression !== 'gzip') return this.driver.diff(rec.id, against, fd, diffOpts);
    // gzip needs the tar as a stream: write it to an unlinked temp file, then compress from there
    const tmp = tempFile(this.tmpDir, 'diff');
    try {
      await this.driver.diff(rec.id, against, tmp, diffOpts);
      await pipeline(
        fs.createReadStream('', { fd: tmp, start: 0, autoClose: false, highWaterMark: 1 << 20 }),
        zlib.createGzip(),
        fs.createWriteStream('', { fd, autoClose: false, highWaterMark: 1 << 20 }),
      );
    } finally {
      fs.closeSync(tmp);
    }
  }

  async changes(ref: string, reference?: string): Promise<Change[]> {
    this.load();
    const { rec, against, opts } = this.comparison(ref, reference);
    return this.driver.changes(rec.id, against, opts);
  }

  async diffSize(ref: string, reference?: string): Promise<number> {
    this.load();
    const { rec, against, opts } = this.comparison(ref, reference);
    return this.driver.diffSize(rec.id, against, opts);
  }

  /** Mount a layer, or a container's layer (one more user); returns its path. */
  async mount(ref: string, opts: MountOptions & { /** the peer's SELinux label: accepted, no driver applies one */ mountLabel?: string } = {}): Promise<string> {
    return this.lock.withLock(async () => {
      const rec = this.mountTarget(ref);
      const p = await this.driver.mount(rec.id, opts);
      this.mounts.add(rec.id, p);
      this.saveMounts();
      return p;
    });
  }

  /** One user less of a layer's or container's mount (every user when force); the last one really unmounts. Returns the users left. */
  async unmount(ref: string, force = false): Promise<number> {
    return this.lock.withLock(async () => {
      const rec = this.mountTarget(ref);
      if (this.mounts.count(rec.id) === 0) return 0;
      const left = this.mounts.release(rec.id, force);
      if (left === 0) await this.driver.unmount(rec.id);
      this.saveMounts();
      return left;
    });
  }

  /** Delete a layer that has no children, is not mounted and no image or container uses. */
  async deleteLayer(ref: string): Promise<void> {
    return this.lock.withLock(async () => {
      const rec = this.find(ref);
      const why = await this.layerInUse(rec);
      if (why) throw why;
      await this.removeLayer(rec);
    });
  }

  /**
   * containers-storage's `delete`: remove a container, image or layer (looked for in that order)
   * without the use checks of delete-container, delete-image and delete-layer. A container goes
   * with its read-write layer, mounted or not. An image's record and data go; its layers stay.
   * A layer goes though it is mounted (every user let go) or images or containers use it; the
   * records that needed it go too (a container on it, an image whose top layer it was), as the
   * repair would drop them. Still refused: a layer that other layers' files stand on (children,
   * or copies made from it as a template), since removing it would break layers nobody named.
   */
  async delete(ref: string): Promise<Found['kind']> {
    return this.lock.withLock(async () => {
      const found = this.resolveLoaded(ref, ['container', 'image', 'layer']);
      if (!found) throw new LayersError('ELAYERUNKNOWN', `container, image or layer "${ref}" not known`);
      if (found.kind === 'container') await this.removeContainer(found.record);
      else if (found.kind === 'image') {
        this.dropImageRecord(found.record);
        this.imageTable.save();
      } else {
        const kids = this.children(found.record.id);
        const hidden = await this.hiddenDependents(found.record.id);
        if (kids.length > 0 || hidden.length > 0)
          throw new LayersError('ELAYERHASCHILDREN', `layer ${found.record.id} holds files of layers ${[...kids.map((k) => k.id), ...hidden].join(', ')}; delete them first`);
        await this.removeLayer(found.record);
        this.dropDangling();
      }
      return found.kind;
    });
  }

  /**
   * containers-storage's `copy`: each source (a host path, or a path in a layer) into the target
   * (a path in a layer, or on the host), through a tar as the peer copies (copy.ts says how
   * owners are mapped and names kept beneath the target). Each layer named is mounted for the
   * copy, one more user, and let go after, whatever happened.
   */
  async copy(sources: CopySpec[], target: CopySpec, opts: { chown?: { uid: number; gid: number } } = {}): Promise<void> {
    const mounted: string[] = [];
    const end = async (spec: CopySpec): Promise<CopyEnd> => {
      // a host path is the caller's: relative to the working directory (a trailing '/' kept: it means "into")
      if (spec.layer === undefined) return { root: '/', path: path.resolve(spec.path) + (spec.path.endsWith('/') && spec.path !== '/' ? '/' : '') };
      const rec = await this.layer(spec.layer);
      const root = await this.mount(rec.id);
      mounted.push(rec.id);
      return { root, path: spec.path, mappings: this.mappings(rec) };
    };
    const named = (spec: CopySpec) => (spec.layer === undefined ? spec.path : `${spec.layer}:${spec.path}`);
    try {
      const to = await end(target);
      for (const spec of sources) {
        const from = await end(spec);
        try {
          await copyPath(from, to, this.tmpDir, opts.chown);
        } catch (err) {
          // the code stays (ETARPATH, ENOSPC, ...); the message says which copy failed
          const e = err as Error;
          e.message = `copying ${named(spec)} to ${named(target)}: ${e.message}`;
          throw e;
        }
      }
    } finally {
      for (const id of mounted.reverse()) await this.unmount(id);
    }
  }

  /** Set the metadata of a layer, image or container. */
  async setMetadata(ref: string, metadata: string): Promise<void> {
    return this.lock.withLock(async () => {
      const found = this.findAny(ref);
      found.record.metadata = metadata;
      this.tableOf(found.kind).save();
    });
  }

  /** Give a layer, image or container these names too; a name another record of its kind has moves here (as the peer does). */
  async addNames(ref: string, names: string[]): Promise<string[]> {
    return this.lock.withLock(async () => {
      const found = this.findAny(ref);
      this.tableOf(found.kind).takeNames(found.record as never, [...(found.record.names ?? []), ...names]);
      return [...found.record.names!];
    });
  }

  /** Replace the names of a layer, image or container; a name another record of its kind has moves here (as the peer does). */
  async setNames(ref: string, names: string[]): Promise<string[]> {
    return this.lock.withLock(async () => {
      const found = this.findAny(ref);
      this.tableOf(found.kind).takeNames(found.record as never, names);
      return [...found.record.names!];
    });
  }

  private findAny(ref: string): Found {
    const found = this.resolveLoaded(ref, ['layer', 'image', 'container']);
    if (!found) throw new LayersError('ELAYERUNKNOWN', `layer, image or container "${ref}" not known`);
    return found;
  }

  private tableOf(kind: Found['kind']): RecordTable<AnyRecord> {
    const tables = { layer: this.layerTable, image: this.imageTable, container: this.containerTable };
    return tables[kind] as unknown as RecordTable<AnyRecord>;
  }

  // ---- images ----

  /** Record an image whose top layer is opts.layer. */
  async createImage(opts: CreateImageOptions): Promise<ImageRecord> {
    return this.lock.withLock(async () => {
      const top = this.find(opts.layer, 'top layer');
      const id = opts.id ?? newId();
      checkId(id, 'image');
      if (this.imageTable.get(id)) throw new LayersError('EIDINUSE', `image id ${id} is already in use`);
      const names = [...new Set(opts.names ?? [])];
      this.imageTable.checkNames(names);
      const image: ImageRecord = { id, digest: opts.digest, names, layer: top.id, metadata: opts.metadata, created: rfc3339() };
      this.imageTable.push(image);
      this.imageTable.save();
      return clone(normalize(image));
    });
  }

  /**
   * Store a named blob with a layer, image or container (replacing one of that name): the file
   * first, atomically, then the record. Images and containers record its size and digest too;
   * a layer record has only the names, as the peer's has.
   */
  async setBigData(kind: DataOwnerKind, ref: string, key: string, data: Buffer): Promise<void> {
    return this.lock.withLock(async () => {
      const { record, dir, table } = this.dataOwner(kind, ref);
      if (key === '') throw new LayersError('EUSAGE', 'a data item needs a name');
      fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
      writeFileAtomic(path.join(dir, bigDataFileName(key)), data);
      record['big-data-names'] = [...new Set([...(record['big-data-names'] ?? []), key])];
      if (kind !== 'layer') {
        record['big-data-sizes'] = { ...record['big-data-sizes'], [key]: data.length };
        record['big-data-digests'] = { ...record['big-data-digests'], [key]: digestOf(data) };
      }
      table.save();
    });
  }

  /**
   * Remove an image and the layers only it needs: its mapped top layers first, then its top
   * layer, then each parent upward that no other image, container or layer needs. Refuses while
   * containers use the image, unless force removes them first. The whole plan is written down
   * (image and layers marked incomplete) before anything goes, so a crash part way leaves work
   * the next writer finishes.
   */
  async removeImage(ref: string, opts: RemoveImageOptions = {}): Promise<RemoveImageResult> {
    return this.lock.withLock(async () => {
      const image = this.imageTable.find(ref);
      if (!opts.force) this.refuseUsedImage(image);
      const users = this.containerTable.records.filter((c) => c.image === image.id);
      for (const c of users) await this.removeContainer(c);
      if (users.length > 0) failpoint('containers-removed');
      const plan = await this.imageRemovalPlan(image);
      const mounted = plan.filter((id) => this.mounts.count(id) > 0);
      if (mounted.length > 0 && !opts.force)
        throw new LayersError('ELAYERINUSE', `image ${image.id}: layer ${mounted.join(', ')} is mounted; unmount it first or use --force`);
      const layers = await this.finishImageRemoval(image, plan);
      return { containers: users.map((c) => c.id), layers };
    });
  }

  /** What removeImage would remove, without removing anything (delete-image --test). */
  async planImageRemoval(ref: string): Promise<RemoveImageResult> {
    this.load();
    const image = this.imageTable.find(ref);
    this.refuseUsedImage(image);
    return { containers: [], layers: await this.imageRemovalPlan(image) };
  }

  private refuseUsedImage(image: ImageRecord): void {
    const users = this.containerTable.records.filter((c) => c.image === image.id);
    if (users.length > 0)
      throw new LayersError(
        'EIMAGEINUSE',
        `image ${image.id} is used by container${users.length === 1 ? '' : 's'} ${users.map((c) => c.id).join(', ')}; remove ${users.length === 1 ? 'it' : 'them'} first or use --force`,
      );
  }

  /** The layers removing image takes, in order. */
  private async imageRemovalPlan(image: ImageRecord): Promise<string[]> {
    // only the layers the plan may take: the mapped layers and the top layer's chain
    const candidates = [...(image['mapped-layers'] ?? [])];
    for (let l = image.layer !== undefined ? this.layerTable.get(image.layer) : undefined; l; l = l.parent !== undefined ? this.layerTable.get(l.parent) : undefined)
      candidates.push(l.id);
    const hidden = new Map<string, string[]>();
    for (const id of candidates) hidden.set(id, await this.hiddenDependents(id));
    return imageRemovalOrder({ layers: this.records, images: this.imageTable.records, containers: this.containerTable.records, hidden }, image);
  }

  /** Mark the image and its planned layers incomplete, then remove the layers in order and the image. */
  private async finishImageRemoval(image: ImageRecord, plan?: string[]): Promise<string[]> {
    if (!isIncomplete(image)) {
      image.flags = { ...image.flags, incomplete: true };
      this.imageTable.save();
      failpoint('image-marked');
    }
    const order = plan ?? (await this.imageRemovalPlan(image));
    const doomed = order.map((id) => this.layerTable.get(id)!);
    for (const l of doomed) l.flags = { ...l.flags, incomplete: true };
    this.saveLayers();
    failpoint('image-layers-marked');
    for (const l of doomed) {
      await this.removeLayer(l);
      failpoint('image-layer-removed');
    }
    failpoint('image-layers-removed');
    this.dropImageRecord(image);
    this.imageTable.save();
    return order;
  }

  /** The image's record and big data go (the caller saves the table). */
  private dropImageRecord(image: ImageRecord): void {
    fs.rmSync(path.join(this.imagesDir, image.id), { recursive: true, force: true });
    this.imageTable.drop(image);
  }

  // ---- containers and mapped top layers ----

  /**
   * A container on the image: a read-write layer on the image's top layer, or, when the
   * container's id mappings differ from the top layer's, on the mapped top layer with its
   * mappings (made now when the image has none yet).
   */
  async createContainer(opts: CreateContainerOptions): Promise<ContainerRecord> {
    return this.lock.withLock(async () => {
      this.checkLayerOptions(opts.storageOpt);
      const image = this.imageTable.find(opts.image);
      const id = opts.id ?? newId();
      checkId(id, 'container');
      if (this.containerTable.get(id)) throw new LayersError('EIDINUSE', `container id ${id} is already in use`);
      const names = [...new Set(opts.names ?? [])];
      this.containerTable.checkNames(names);
      const want = { uidmap: opts.uidmap ?? [], gidmap: opts.gidmap ?? [] };
      const base = image.layer !== undefined ? await this.topLayerFor(image, want) : undefined;

      const layer = this.recordNewLayer({ parent: base?.id, mountlabel: opts.mountLabel, ...want });
      failpoint('container-layer-recorded');
      const container: ContainerRecord = {
        id,
        names,
        image: image.id,
        layer: layer.id,
        metadata: opts.metadata,
        created: rfc3339(),
        ...want,
        flags: { MountLabel: opts.mountLabel ?? '', ProcessLabel: '' },
      };
      try {
        this.containerTable.push(container);
        this.containerTable.save();
        failpoint('container-recorded');
        for (const d of [this.containersDir, this.runContainersDir]) fs.mkdirSync(path.join(d, id, 'userdata'), { recursive: true, mode: 0o700 });
        await this.makeLayer(layer, base, { readWrite: true, storageOpt: opts.storageOpt });
        failpoint('container-layer-made');
      } catch (err) {
        await this.removeContainer(container).catch(() => undefined);
        throw err;
      }
      this.completeLayer(layer);
      return clone(normalize(container));
    });
  }

  /** The image's top layer or mapped top layer with these mappings, made when there is none. */
  private async topLayerFor(image: ImageRecord, want: IdMappings): Promise<LayerRecord> {
    const top = this.find(image.layer!, `top layer of image ${image.id}`);
    const candidates = [top, ...(image['mapped-layers'] ?? []).map((m) => this.layerTable.get(m)).filter((l) => l && !isIncomplete(l))] as LayerRecord[];
    return candidates.find((l) => sameMappings(this.mappings(l), want)) ?? (await this.makeMappedLayer(top, want, { image }));
  }

  /**
   * A copy of template shifted to `want`, made by the driver's CreateFromTemplate: its notional
   * parent is the template's parent, and it carries the template's digests and sizes (its diff,
   * mapped back to container ids, is the template's). With an image, it is listed in the image's
   * mapped-layers (while still incomplete, so a crash never leaves it unlisted).
   */
  private async makeMappedLayer(template: LayerRecord, want: IdMappings, opts: { image?: ImageRecord; id?: string; names?: string[]; storageOpt?: Record<string, string> }): Promise<LayerRecord> {
    const content = Object.fromEntries(CONTENT_FIELDS.map((k) => [k, template[k]]));
    const rec = this.recordNewLayer({ id: opts.id, names: opts.names, parent: template.parent, ...content, ...want });
    failpoint('mapped-layer-recorded');
    try {
      if (opts.image) {
        opts.image['mapped-layers'] = [...(opts.image['mapped-layers'] ?? []), rec.id];
        this.imageTable.save();
        failpoint('mapped-layer-registered');
      }
      await this.driver.createFromTemplate(rec.id, template.id, { idMappings: want, storageOpt: opts.storageOpt });
      failpoint('mapped-layer-copied');
      if (!sameMappings(this.mappings(template), want)) await this.driver.updateIdMappings(rec.id, this.mappings(template), want);
      failpoint('mapped-layer-shifted');
    } catch (err) {
      await this.removeLayer(rec).catch(() => undefined);
      if (opts.image) {
        opts.image['mapped-layers'] = opts.image['mapped-layers']!.filter((m) => m !== rec.id);
        this.imageTable.save();
      }
      throw err;
    }
    this.completeLayer(rec);
    failpoint('mapped-layer-complete');
    return rec;
  }

  /** A new layer from a template layer with other id mappings; with opts.image, one of that image's mapped top layers. */
  async createFromTemplate(opts: CreateFromTemplateOptions): Promise<LayerRecord> {
    return this.lock.withLock(async () => {
      this.checkLayerOptions(opts.storageOpt);
      const template = this.find(opts.template, 'template layer');
      const image = opts.image !== undefined ? this.imageTable.find(opts.image) : undefined;
      if (image && image.layer !== template.id)
        throw new LayersError('EUSAGE', `layer ${template.id} is not the top layer of image ${image.id} (${image.layer}); a mapped top layer is made from the top layer`);
      const want = { uidmap: opts.uidmap ?? [], gidmap: opts.gidmap ?? [] };
      return clone(normalizeRecord(await this.makeMappedLayer(template, want, { image, id: opts.id, names: opts.names, storageOpt: opts.storageOpt })));
    });
  }

  /** Delete a container and its read-write layer (unmounting it). */
  async deleteContainer(ref: string): Promise<void> {
    return this.lock.withLock(async () => {
      await this.removeContainer(this.findContainer(ref));
    });
  }

  /** Mark its layer incomplete, drop the record and directories, then remove the layer. */
  private async removeContainer(c: ContainerRecord): Promise<void> {
    const layer = this.layerTable.get(c.layer);
    if (layer && !isIncomplete(layer)) {
      layer.flags = { ...layer.flags, incomplete: true };
      this.saveLayers();
    }
    this.dropContainerRecord(c);
    this.containerTable.save();
    if (layer) await this.removeLayer(layer);
  }

  private dropContainerRecord(c: ContainerRecord): void {
    for (const d of [this.containersDir, this.runContainersDir]) fs.rmSync(path.join(d, c.id), { recursive: true, force: true });
    this.containerTable.drop(c);
  }

  /** Remove mapped top layers that no container (or other layer) uses; returns their ids. */
  async prune(): Promise<string[]> {
    return this.lock.withLock(async () => {
      const removed: string[] = [];
      for (const image of this.imageTable.complete())
        for (const id of [...(image['mapped-layers'] ?? [])].reverse()) {
          const layer = this.layerTable.get(id);
          if (!layer) continue;
          const others = this.imageTable.records.filter((i) => i !== image && (i.layer === id || i['mapped-layers']?.includes(id)));
          if (others.length > 0 || this.containerTable.records.some((c) => c.layer === id) || this.children(id).length > 0) continue;
          if ((await this.hiddenDependents(id)).length > 0 || this.mounts.count(id) > 0) continue;
          // marked incomplete first: a crash before the image forgets it leaves a dangling entry the repair drops
          await this.removeLayer(layer);
          image['mapped-layers'] = image['mapped-layers']!.filter((m) => m !== id);
          this.imageTable.save();
          removed.push(id);
        }
      return removed;
    });
  }

  /** Remove every container, image and layer, unmounting mounted ones. */
  async wipe(): Promise<void> {
    return this.lock.withLock(async () => {
      for (const c of [...this.containerTable.records]) await this.removeContainer(c);
      for (const i of [...this.imageTable.records]) this.dropImageRecord(i);
      this.imageTable.save();
      // newest first: children and copies made from a template were made after it
      for (const r of [...this.records].reverse()) await this.removeLayer(r);
    });
  }

  /** Release the driver. Refuses while layers are mounted, unless force unmounts them. Returns the layers unmounted. */
  async shutdown(force = false): Promise<string[]> {
    return this.lock.withLock(async () => {
      const mounted = this.mounts.all();
      if (mounted.length > 0 && !force)
        throw new LayersError('ELAYERINUSE', `layers are mounted: ${mounted.map((m) => m.id).join(', ')}; unmount them or use force`);
      for (const m of mounted) {
        await this.driver.unmount(m.id);
        this.mounts.drop(m.id);
      }
      if (mounted.length > 0) this.saveMounts();
      await this.driver.cleanup();
      return mounted.map((m) => m.id);
    });
  }

  /** What `status` prints: the store's places and the driver's result. */
  async status(): Promise<Array<[string, string]>> {
    return [
      ['Root', this.root],
      ['Run Root', this.runroot],
      ['Driver Name', this.driver.name],
      ['Driver Options', `[${this.storageOpts.join(' ')}]`],
      ...(await this.driver.status()),
    ];
  }
}

function normalize<T extends ImageRecord | ContainerRecord>(r: T): T {
  return normalizeAny(r, 'layer' in r && 'image' in r ? CONTAINER_FIELDS : IMAGE_FIELDS);
}

function digestOf(data: Buffer): string {
  return 'sha256:' + createHash('sha256').update(data).digest('hex');
}

function openInput(file: string): number {
  try {
    return fs.openSync(file, 'r');
  } catch (err) {
    throw new LayersError('EINPUT', `cannot open ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
  }
}
