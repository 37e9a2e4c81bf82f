// The store's public face (docs/on-disk-format.md, "Writes, locking and recovery";
// docs/images-and-containers.md): `Store` opens a store, holds its shared state in one context
// (context.ts), and for each public call takes the peer's lock files (lib/lock.ts: shared to read,
// exclusive to write), reloads what another process changed, and hands the work to the module of its concern:
//
//   layers.ts      layers: create, import, diff/changes/size, mount/unmount, delete
//   images.ts      images: create, remove (with the layers only they need)
//   containers.ts  containers and mapped top layers, create-from-template, prune
//   big-data.ts    data items of layers, images and containers
//   repair.ts      what a writer that died left, finished or undone when the write locks are taken
//   removal.ts     pure: may a layer go, and the order layers go in
//
// The store never touches file contents itself; the driver and the tar engine do. Ordering rules
// that make a crash at any point recoverable (each module says its part):
// - a layer's record is saved with flags.incomplete before the driver creates anything, and the
//   flag is cleared only once the layer is complete; deletion marks it incomplete before its data goes;
// - a container's record is saved while its read-write layer is still incomplete, and a mapped
//   top layer is listed in its image while still incomplete: a crash leaves references to an
//   incomplete layer, never a complete layer nothing refers to;
// - an image's removal marks the image incomplete, then every layer it will remove, in one write;
// - taking the write locks reloads the records and repairs what a holder that died left.
import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { openDriver } from '../../drivers/index.ts';
import { imageStorePaths } from '../../drivers/options.ts';
import type { Change, Driver, MountOptions } from '../../drivers/driver.ts';
import { LayersError, wrapError } from '../errors.ts';
import { native } from '../native.ts';
import { DIFF, MOUNT, READ, WRITE, type LockPlan } from '../lock.ts';
import * as bigData from './big-data.ts';
import type { BigDataItem, DataOwnerKind } from './big-data.ts';
import * as containers from './containers.ts';
import type { CreateContainerOptions, CreateFromTemplateOptions } from './containers.ts';
import { findAny, findContainer, findLayer, isLive, loadRecords, makeContext, mappingsOf, resolveRef, storeDirs, tableOf, type Found, type StoreContext } from './context.ts';
import { copyPath, type CopyEnd } from './copy.ts';
import * as images from './images.ts';
import type { CreateImageOptions, RemoveImageOptions, RemoveImageResult } from './images.ts';
import * as layers from './layers.ts';
import type { CreateLayerOptions, DiffInput, DiffOptions, ImportOptions, LongOperation, Progress } from './layers.ts';
import type { MountRecord } from './mounts.ts';
import type { AppendResult, TarAppender } from '../tar/sections.ts';
import { PEER_RECORDS, VIEWS, type AnyRecord, type Container, type ContainerRecord, type Image, type ImageRecord, type Layer, type LayerRecord, type RecordFace } from './records.ts';
import type { RecordTable } from './table.ts';
import { dropDangling, needsRepair, repair } from './repair.ts';
import { rechunk, type RechunkOptions, type RechunkResult } from '../rechunk/rechunk.ts';

export type { BigDataItem, DataOwnerKind } from './big-data.ts';
export type { CreateContainerOptions, CreateFromTemplateOptions } from './containers.ts';
export type { Found } from './context.ts';
export type { CreateImageOptions, RemoveImageOptions, RemoveImageResult } from './images.ts';
export type { CreateLayerOptions, DiffInput, DiffOptions, ImportOptions, LongOperation, Progress } from './layers.ts';
export type { PlanLayer, RechunkOptions, RechunkPlan, RechunkResult } from '../rechunk/rechunk.ts';

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

/** A path to copy from or to: in a layer (mounted for the copy), or on the host when no layer is named. */
export interface CopySpec {
  layer?: string;
  path: string;
}

/**
 * The store. Its records leave it as L, I and C through its face (records.ts, RecordFace): the
 * API's store (openStore, lib/index.ts) gives camelCase views (Layer, Image, Container); the CLI's
 * (openRecordStore) the peer's records (LayerRecord, ...), whose field names `--json` prints.
 */
export class Store<L = Layer, I = Image, C = Container> {
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
  /** the additional (read-only) image stores, from `<driver>.imagestore=PATH` options, in order */
  readonly imageStores: string[];
  private readonly ctx: StoreContext;
  private readonly face: RecordFace<L, I, C>;
  /** calls running now (close() waits for them), and whether close() was called */
  private readonly running = new Set<Promise<unknown>>();
  private closed = false;

  private constructor(opts: StoreOptions, face: RecordFace<L, I, C>) {
    this.face = face;
    this.root = path.resolve(opts.root);
    this.runroot = path.resolve(opts.runroot);
    this.storageOpts = opts.storageOpts ?? [];
    for (const o of this.storageOpts)
      if (!/^[^=]+=/.test(o)) throw new LayersError('EUSAGE', `bad storage option "${o}": want key=value`);
    const name = opts.driver ?? 'vfs';
    // the driver first: a storage option it refuses must leave nothing on disk
    this.driver = openDriver(name, this.root, this.runroot, this.storageOpts);
    const dirs = storeDirs(this.root, this.runroot, name);
    this.imageStores = imageStorePaths(name, this.storageOpts).filter((p) => p !== this.root);
    this.ctx = makeContext(
      dirs,
      this.driver,
      async (ctx, changed, write) => {
        loadRecords(ctx, changed);
        // a writer that died left its work half done; the next writer finishes or undoes it
        if (write) await repair(ctx);
      },
      this.imageStores,
    );
    this.layersDir = dirs.layersDir;
    this.imagesDir = dirs.imagesDir;
    this.containersDir = dirs.containersDir;
    this.runContainersDir = dirs.runContainersDir;
    this.tmpDir = dirs.tmpDir;
  }

  /** Open the store, its records given out through face (VIEWS for the API, PEER_RECORDS for the CLI). */
  static async open<L, I, C>(opts: StoreOptions, face: RecordFace<L, I, C>): Promise<Store<L, I, C>> {
    const store = new Store(opts, face);
    // leftovers of a writer that died: repair them under the write locks (which wait for a live writer)
    if (await store.read(needsRepair)) await store.locked(async () => undefined);
    return store;
  }

  /** Run fn holding the read locks (records another process changed reloaded first); no writes. */
  private read<T>(fn: (ctx: StoreContext) => Promise<T> | T, plan: LockPlan = READ): Promise<T> {
    return this.track(this.ctx.locks.with(plan, () => fn(this.ctx)));
  }

  /** Run fn holding the write locks (records reloaded and repaired first). */
  private locked<T>(fn: (ctx: StoreContext) => Promise<T> | T, plan: LockPlan = WRITE): Promise<T> {
    return this.track(this.ctx.locks.with(plan, () => fn(this.ctx)));
  }

  private track<T>(p: Promise<T>): Promise<T> {
    if (this.closed) {
      p.catch(() => undefined);
      return Promise.reject(new LayersError('EUSAGE', `the store at ${this.root} is closed`));
    }
    this.running.add(p);
    const done = () => this.running.delete(p);
    p.then(done, done);
    return p;
  }

  /**
   * Stop using the store: calls already running finish (close waits for them), later ones fail
   * with EUSAGE. Locks are held only while a call runs, so none is held after. Mounts stay (they
   * are recorded in the store and outlive the process, as the peer's do); when none is counted
   * the driver is released as by shutdown (it unmounts what it alone left mounted).
   */
  async close(): Promise<void> {
    if (this.closed) return;
    const mounted = await this.mounted();
    this.closed = true;
    await Promise.allSettled([...this.running]);
    if (mounted.length === 0) await this.ctx.locks.with(MOUNT, () => this.ctx.driver.cleanup());
  }

  /** `await using store = await openStore(...)` closes the store at the end of the block. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  // ---- reading ----

  /** complete layers, in creation order */
  async layers(): Promise<L[]> {
    return this.read((ctx) => ctx.layers.complete().map(this.face.layer));
  }

  /** the layer with this id, name or unambiguous id prefix */
  async layer(ref: string): Promise<L> {
    return this.read((ctx) => this.face.layer(findLayer(ctx, ref)));
  }

  async exists(ref: string): Promise<boolean> {
    return this.read((ctx) => ctx.layers.lookup(ref) !== undefined);
  }

  /** complete images, in creation order */
  async images(): Promise<I[]> {
    return this.read((ctx) => ctx.images.complete().map(this.face.image));
  }

  async image(ref: string): Promise<I> {
    return this.read((ctx) => this.face.image(ctx.images.find(ref)));
  }

  /** images whose digest (or one of whose digests) is this one */
  async imagesByDigest(digest: string): Promise<I[]> {
    return this.read((ctx) => images.imagesByDigest(ctx, digest).map(this.face.image));
  }

  /** Complete layers whose compressed digest (of the blob as it was given) is this one: "do I have this blob?" */
  async layersByCompressedDigest(digest: string): Promise<L[]> {
    return this.read((ctx) => layers.layersByDigest(ctx, 'compressed', digest).map(this.face.layer));
  }

  /** Complete layers whose uncompressed digest (the tar's, diff-digest) is this one. */
  async layersByUncompressedDigest(digest: string): Promise<L[]> {
    return this.read((ctx) => layers.layersByDigest(ctx, 'uncompressed', digest).map(this.face.layer));
  }

  /** Images whose top layer, or one of whose mapped top layers, is this layer. */
  async imagesByTopLayer(ref: string): Promise<I[]> {
    return this.read((ctx) => images.imagesByTopLayer(ctx, findLayer(ctx, ref).id).map(this.face.image));
  }

  /** The container whose read-write layer this is; ECONTAINERUNKNOWN when none. */
  async containerByLayer(ref: string): Promise<C> {
    return this.read((ctx) => this.face.container(containers.containerByLayer(ctx, findLayer(ctx, ref).id)));
  }

  /** The id of the layer, image or container (looked for in that order) with this id, name or id prefix, as the peer's Lookup. */
  async lookup(nameOrId: string): Promise<string> {
    const found = await this.read((ctx) => resolveRef(ctx, nameOrId, ['layer', 'image', 'container'])?.record.id);
    if (found === undefined) throw new LayersError('ELAYERUNKNOWN', `"${nameOrId}": layer, image or container not known`);
    return found;
  }

  /** A layer's size: its tar's size when it was applied from one, else what the driver counts (the peer's ImageSize does the same per layer). */
  async layerSize(ref: string): Promise<number> {
    return this.read((ctx) => layers.layerSize(ctx, findLayer(ctx, ref)), DIFF);
  }

  /** An image's size as the peer's ImageSize: each of its layers once (mapped top layers too) and its data items. */
  async imageSize(ref: string): Promise<number> {
    return this.read((ctx) => images.imageSize(ctx, ctx.images.find(ref)), DIFF);
  }

  /** A container's size as the peer's ContainerSize: its layer, and the files of its directories. */
  async containerSize(ref: string): Promise<number> {
    return this.read((ctx) => containers.containerSize(ctx, findContainer(ctx, ref)), DIFF);
  }

  /** containers whose read-write layer is complete (one being made or removed is left out) */
  async containers(): Promise<C[]> {
    return this.read((ctx) => ctx.containers.records.filter((c) => isLive(ctx, c)).map(this.face.container));
  }

  async container(ref: string): Promise<C> {
    return this.read((ctx) => this.face.container(findContainer(ctx, ref)));
  }

  /**
   * What ref names, as the peer's commands that take any of the three look: an exact id or
   * name of a layer, an image, a container (in that order), then an unambiguous id prefix.
   */
  async resolve(ref: string, kinds: Array<Found['kind']> = ['layer', 'image', 'container']): Promise<Found<L, I, C> | undefined> {
    return this.read((ctx) => {
      const found = resolveRef(ctx, ref, kinds);
      if (found?.kind === 'layer') return { kind: found.kind, record: this.face.layer(found.record) };
      if (found?.kind === 'image') return { kind: found.kind, record: this.face.image(found.record) };
      return found && { kind: found.kind, record: this.face.container(found.record) };
    });
  }

  /** Whether the layer or image with this id comes from an additional (read-only) image store. */
  async readOnly(kind: 'layer' | 'image', id: string): Promise<boolean> {
    return this.read((ctx) => {
      const table = kind === 'layer' ? ctx.layers : ctx.images;
      const rec = (table as RecordTable<AnyRecord>).get(id);
      return rec !== undefined && (table as RecordTable<AnyRecord>).isReadOnly(rec);
    });
  }

  /** mounts of complete layers: [{id, path, count}] */
  async mounted(): Promise<MountRecord[]> {
    return this.read((ctx) => ctx.mounts.all());
  }

  async mountCount(ref: string): Promise<number> {
    return this.read((ctx) => ctx.mounts.count(layers.mountTarget(ctx, ref).id));
  }

  /** the names of the data items of a layer, image or container */
  async bigDataNames(kind: DataOwnerKind, ref: string): Promise<string[]> {
    return this.read((ctx) => bigData.bigDataNames(ctx, kind, ref));
  }

  /**
   * A data item of a layer, image or container, with its size and digest (images and containers
   * record both when the item is set, as the peer does; a layer's are worked out from the bytes).
   */
  async bigData(kind: DataOwnerKind, ref: string, key: string): Promise<BigDataItem> {
    return this.read((ctx) => bigData.bigData(ctx, kind, ref, key));
  }

  /**
   * The owners of the directories above the mount point of a layer (or of a container's layer)
   * that its id mappings cannot map into the container (layers.ts, parentOwners).
   */
  async parentOwners(ref: string, kind: 'layer' | 'container'): Promise<{ uids: number[]; gids: number[] }> {
    return this.read((ctx) => layers.parentOwners(ctx, kind === 'container' ? ctx.layers.get(findContainer(ctx, ref).layer)! : findLayer(ctx, ref)));
  }

  /** the container's data directory and run-time directory */
  async containerDirs(ref: string): Promise<{ dir: string; runDir: string }> {
    return this.read((ctx) => containers.containerDirs(ctx, ref));
  }

  /** Write the layer's changes against its parent (or opts.reference) as a tar to fd. */
  async diff(ref: string, fd: number, opts: DiffOptions & LongOperation = {}): Promise<void> {
    return this.read((ctx) => layers.diff(ctx, ref, fd, opts), DIFF);
  }

  /**
   * The layer's changes as a Readable tar (gzip with opts.compression). The diff is written into
   * a FIFO the stream reads from; the store's read locks are held until the stream ends or is
   * destroyed (destroying it, or opts.signal, stops the writer).
   */
  diffStream(ref: string, opts: DiffOptions & LongOperation = {}): Readable {
    const { signal, onProgress } = opts;
    let bytes = 0;
    const out = new Transform({
      highWaterMark: 1 << 20,
      transform(chunk: Buffer, _enc, cb) {
        bytes += chunk.length;
        onProgress?.({ bytes });
        cb(null, chunk);
      },
    });
    const fifo = path.join(this.tmpDir, `diff-${randomBytes(8).toString('hex')}`);
    fs.mkdirSync(this.tmpDir, { recursive: true, mode: 0o700 });
    native().mknod(fifo, fs.constants.S_IFIFO | 0o600, 0, 0);
    signal?.addEventListener('abort', () => out.destroy(layers.abortError(signal, `diff of ${ref}`)), { once: true });
    void (async () => {
      // each open of a FIFO waits (in the thread pool) for the other end; the name goes once both are open
      const [r, w] = await Promise.all([fs.promises.open(fifo, 'r'), fs.promises.open(fifo, 'w')]).finally(() => fs.rmSync(fifo, { force: true }));
      // the reader closes with the stream: a writer left alone gets EPIPE and stops
      const piped = pipeline(r.createReadStream({ highWaterMark: 1 << 20 }), out);
      piped.catch(() => undefined);
      try {
        await this.diff(ref, w.fd, { ...opts, onProgress: undefined });
      } finally {
        await w.close();
      }
      await piped;
    })().catch((err: unknown) => out.destroy(err as Error));
    return out;
  }

  /** Append the changes of a layer (or a container's layer) under prefix to an open tar (lib/tar/sections.ts). */
  async diffSection(ref: string, out: TarAppender, prefix: string, opts: DiffOptions = {}): Promise<AppendResult> {
    return this.read((ctx) => layers.diffSection(ctx, ref, out, prefix, opts), DIFF);
  }

  async changes(ref: string, reference?: string): Promise<Change[]> {
    return this.read((ctx) => layers.changes(ctx, ref, reference), DIFF);
  }

  async diffSize(ref: string, reference?: string): Promise<number> {
    return this.read((ctx) => layers.diffSize(ctx, ref, reference), DIFF);
  }

  /** What removeImage would remove, without removing anything (delete-image --test). */
  async planImageRemoval(ref: string): Promise<RemoveImageResult> {
    return this.read((ctx) => images.planImageRemoval(ctx, ref));
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

  // ---- layers ----

  /** Create a layer (a child of opts.parent when given), and apply `input` to it when given. */
  async createLayer(opts: CreateLayerOptions & ImportOptions = {}, input?: DiffInput): Promise<L> {
    return this.locked(async (ctx) => this.face.layer(await layers.createLayer(ctx, opts, input)));
  }

  /**
   * Apply a tar to an existing layer. Input refused before anything reached the layer (bad
   * compression, an expected digest that does not match, an abort before extraction) leaves the
   * layer as it was; a failure after leaves it incomplete, removed by the next writer.
   */
  async applyDiff(ref: string, input: DiffInput, opts: ImportOptions = {}): Promise<L> {
    return this.locked(async (ctx) => this.face.layer(await layers.applyDiff(ctx, ref, input, opts)));
  }

  /** Mount a layer, or a container's layer (one more user); returns its path. */
  async mount(ref: string, opts: MountOptions = {}): Promise<string> {
    return this.locked((ctx) => layers.mount(ctx, ref, opts), MOUNT);
  }

  /** One user less of a layer's or container's mount (every user when force); the last one really unmounts. Returns the users left. */
  async unmount(ref: string, force = false): Promise<number> {
    return this.locked((ctx) => layers.unmount(ctx, ref, force));
  }

  /** Delete a layer that has no children, is not mounted and no image or container uses. */
  async deleteLayer(ref: string): Promise<void> {
    return this.locked((ctx) => layers.deleteLayer(ctx, ref));
  }

  /**
   * containers-storage's `delete`: remove a container, image or layer (looked for in that order)
   * without the use checks of delete-container, delete-image and delete-layer. A container goes
   * with its read-write layer, mounted or not. An image's record and data go; its layers stay.
   * A layer goes though it is mounted or images or containers use it, and the records that needed
   * it go too (a container on it, an image whose top layer it was), as the repair would drop
   * them; one other layers' files stand on is still refused (layers.ts, forceDeleteLayer).
   */
  async delete(ref: string): Promise<Found['kind']> {
    return this.locked(async (ctx) => {
      const found = resolveRef(ctx, ref, ['container', 'image', 'layer']);
      if (!found) throw new LayersError('ELAYERUNKNOWN', `container, image or layer "${ref}" not known`);
      if (found.kind === 'container') await containers.removeContainer(ctx, found.record);
      else if (found.kind === 'image') {
        images.dropImageRecord(ctx, found.record);
        await ctx.images.save();
      } else {
        await layers.forceDeleteLayer(ctx, found.record);
        await dropDangling(ctx);
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
  async copy(sources: CopySpec[], target: CopySpec, opts: { chown?: { uid: number; gid: number } } & LongOperation = {}): Promise<void> {
    const mounted: string[] = [];
    const end = async (spec: CopySpec): Promise<CopyEnd> => {
      // a host path is the caller's: relative to the working directory (a trailing '/' kept: it means "into")
      if (spec.layer === undefined) return { root: '/', path: path.resolve(spec.path) + (spec.path.endsWith('/') && spec.path !== '/' ? '/' : '') };
      const { id, mappings } = await this.read((ctx) => {
        const rec = findLayer(ctx, spec.layer!);
        return { id: rec.id, mappings: mappingsOf(rec) };
      });
      const root = await this.mount(id);
      mounted.push(id);
      return { root, path: spec.path, mappings };
    };
    const named = (spec: CopySpec) => (spec.layer === undefined ? spec.path : `${spec.layer}:${spec.path}`);
    // progress over all the sources, each one's tar counted in the totals once it is written (copy.ts)
    let before = { bytes: 0, entries: 0 };
    const onProgress = opts.onProgress && ((p: Progress) => opts.onProgress!({ bytes: before.bytes + p.bytes, totalBytes: before.bytes + (p.totalBytes ?? 0), entries: before.entries + (p.entries ?? 0), totalEntries: before.entries + (p.totalEntries ?? 0) }));
    try {
      const to = await end(target);
      for (const spec of sources) {
        const from = await end(spec);
        try {
          const tar = await copyPath(from, to, this.tmpDir, opts.chown, { signal: opts.signal, onProgress });
          before = { bytes: before.bytes + tar.bytes, entries: before.entries + tar.entries };
        } catch (err) {
          // the code stays (ETARPATH, ENOSPC, ...); the message says which copy failed
          throw wrapError(`copying ${named(spec)} to ${named(target)}`, err);
        }
      }
    } finally {
      for (const id of mounted.reverse()) await this.unmount(id);
    }
  }

  // ---- any record: metadata and names ----

  /** Set the metadata of a layer, image or container. */
  async setMetadata(ref: string, metadata: string): Promise<void> {
    return this.locked(async (ctx) => {
      const found = findAny(ctx, ref);
      tableOf(ctx, found.kind).assertOwn(found.record);
      found.record.metadata = metadata;
      await tableOf(ctx, found.kind).save();
    });
  }

  /** Give a layer, image or container these names too; a name another record of its kind has moves here (as the peer does). */
  async addNames(ref: string, names: string[]): Promise<string[]> {
    return this.locked((ctx) => {
      const found = findAny(ctx, ref);
      return this.takeNames(found, [...(found.record.names ?? []), ...names]);
    });
  }

  /** Take these names from a layer, image or container (the peer's RemoveNames); returns the names it has after. */
  async removeNames(ref: string, names: string[]): Promise<string[]> {
    return this.locked((ctx) => {
      const found = findAny(ctx, ref);
      return this.takeNames(found, (found.record.names ?? []).filter((n) => !names.includes(n)));
    });
  }

  /** Replace the names of a layer, image or container; a name another record of its kind has moves here (as the peer does). */
  async setNames(ref: string, names: string[]): Promise<string[]> {
    return this.locked((ctx) => this.takeNames(findAny(ctx, ref), names));
  }

  private async takeNames(found: Found, names: string[]): Promise<string[]> {
    let rec = found.record;
    // names for an image of an additional store go to a record of the same id in this store,
    // on the same top layer, as the peer's updateNames makes (the other store is never written)
    if (found.kind === 'image' && this.ctx.images.isReadOnly(rec as ImageRecord)) {
      const ro = rec as ImageRecord;
      const copy: ImageRecord = { id: ro.id, digest: ro.digest, layer: ro.layer, metadata: ro.metadata, created: ro.created, names: [] };
      this.ctx.images.push(copy);
      rec = copy;
    }
    await tableOf(this.ctx, found.kind).takeNames(rec as never, names);
    return [...rec.names!];
  }

  // ---- images ----

  /** Record an image whose top layer is opts.layer. */
  async createImage(opts: CreateImageOptions): Promise<I> {
    return this.locked(async (ctx) => this.face.image(await images.createImage(ctx, opts)));
  }

  /**
   * Remove an image and the layers only it needs (images.ts, removeImage). Refuses while
   * containers use the image or a layer it takes is mounted, unless force.
   */
  async removeImage(ref: string, opts: RemoveImageOptions = {}): Promise<RemoveImageResult> {
    return this.locked((ctx) => images.removeImage(ctx, ref, opts));
  }

  /**
   * A new image with the image's flattened tree regrouped into at most opts.maxLayers layers, by
   * the heuristic, a previous image (opts.like) or an explicit plan; data reflinked where the
   * filesystem can, tars in a fixed order (docs/rechunk.md). With opts.dryRun only the plan.
   */
  async rechunk(ref: string, opts: RechunkOptions): Promise<RechunkResult<L, I>> {
    return this.locked(async (ctx) => {
      const r = await rechunk(ctx, ref, opts);
      return { plan: r.plan, image: r.image && this.face.image(r.image), layers: r.layers.map(this.face.layer) };
    }, MOUNT);
  }

  // ---- big data ----

  /**
   * Store a named blob with a layer, image or container (replacing one of that name): the file
   * first, atomically, then the record. Images and containers record its size and digest too;
   * a layer record has only the names, as the peer's has.
   */
  async setBigData(kind: DataOwnerKind, ref: string, key: string, data: Buffer): Promise<void> {
    return this.locked((ctx) => bigData.setBigData(ctx, kind, ref, key, data));
  }

  // ---- containers and mapped top layers ----

  /**
   * A container on the image: a read-write layer on the image's top layer, or, when the
   * container's id mappings differ from the top layer's, on the mapped top layer with its
   * mappings (made now when the image has none yet). opts.signal is checked before anything is
   * made and after each driver step (reported to opts.onProgress as steps); an abort removes the
   * container and its layer, and a mapped top layer not finished.
   */
  async createContainer(opts: CreateContainerOptions & LongOperation): Promise<C> {
    return this.locked(async (ctx) => this.face.container(await containers.createContainer(ctx, opts)));
  }

  /** A new layer from a template layer with other id mappings; with opts.image, one of that image's mapped top layers. */
  async createFromTemplate(opts: CreateFromTemplateOptions & LongOperation): Promise<L> {
    return this.locked(async (ctx) => this.face.layer(await containers.createFromTemplate(ctx, opts)));
  }

  /** Delete a container and its read-write layer (unmounting it). */
  async deleteContainer(ref: string): Promise<void> {
    return this.locked((ctx) => containers.removeContainer(ctx, findContainer(ctx, ref)));
  }

  /** Remove mapped top layers that no container (or other layer) uses; returns their ids. */
  async prune(): Promise<string[]> {
    return this.locked((ctx) => containers.prune(ctx));
  }

  // ---- the whole store ----

  /** Remove every container, image and layer, unmounting mounted ones. */
  async wipe(): Promise<void> {
    return this.locked(async (ctx) => {
      for (const c of [...ctx.containers.records]) await containers.removeContainer(ctx, c);
      for (const i of [...ctx.images.records]) images.dropImageRecord(ctx, i);
      await ctx.images.save();
      // newest first: children and copies made from a template were made after it
      for (const r of [...ctx.layers.records].reverse()) await layers.removeLayer(ctx, r);
    });
  }

  /** Release the driver. Refuses while layers are mounted, unless force unmounts them. Returns the layers unmounted. */
  async shutdown(force = false): Promise<string[]> {
    return this.locked(async (ctx) => {
      const unmounted = await layers.unmountAll(ctx, force);
      await ctx.driver.cleanup();
      return unmounted;
    }, MOUNT);
  }
}

/** The store as the CLI uses it: records in the peer's field names (records.ts, PEER_RECORDS). */
export type RecordStore = Store<LayerRecord, ImageRecord, ContainerRecord>;

export function openRecordStore(opts: StoreOptions): Promise<RecordStore> {
  return Store.open(opts, PEER_RECORDS);
}
