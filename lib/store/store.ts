// The layer store (DESIGN.md section 5): records, ordering, crash recovery and locking around a
// graph driver. It never touches file contents itself; the driver and the tar engine do.
//
// Ordering rules that make a crash at any point recoverable:
// - a layer's record is saved with flags.incomplete before the driver creates anything, and the
//   flag is cleared only once the layer is complete;
// - deletion marks the layer incomplete before its data goes;
// - taking the writer lock reloads the records and removes incomplete layers (a holder that died
//   left them; a live holder would still hold the lock).
import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';
import { openDriver } from '../../drivers/index.ts';
import type { Change, Driver, MountOptions } from '../../drivers/driver.ts';
import { readJsonFile, writeJsonAtomic } from '../atomic.ts';
import { LayersError } from '../errors.ts';
import { sameMappings, toContainer, type IdMap, type IdMappings } from '../idmap.ts';
import { StoreLock } from '../lock.ts';
import { prepareInput } from './input.ts';
import { MountRecords, type MountRecord } from './mounts.ts';
import { Compression, findLayer, isIncomplete, normalizeRecord, rfc3339, type LayerRecord } from './records.ts';

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
}

/** A tar to apply: an open file descriptor (file, pipe or socket) or a file path. */
export type DiffInput = number | string;

export interface DiffOptions {
  /** compare with this layer instead of the parent */
  reference?: string;
  /** compress the output (the peer's diff --gzip) */
  compression?: 'gzip';
}

const ID_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

function describeInput(input: DiffInput): string {
  if (typeof input === 'string') return input;
  return input === 0 ? 'stdin' : `fd ${input}`;
}

function clone<T>(v: T): T {
  return structuredClone(v);
}

export class Store {
  readonly root: string;
  readonly runroot: string;
  readonly storageOpts: string[];
  readonly driver: Driver;
  /** <root>/<driver>-layers: layers.json and the peer's <id>.tar-split.gz files */
  readonly layersDir: string;
  /** temp files (decompressed or spooled input, gzip output) on the store's filesystem */
  readonly tmpDir: string;
  private readonly layersFile: string;
  private readonly mounts: MountRecords;
  private readonly lock: StoreLock;
  private records: LayerRecord[] = [];

  private constructor(opts: StoreOptions) {
    this.root = path.resolve(opts.root);
    this.runroot = path.resolve(opts.runroot);
    this.storageOpts = opts.storageOpts ?? [];
    for (const o of this.storageOpts)
      if (!/^[^=]+=/.test(o)) throw new LayersError('EUSAGE', `bad storage option "${o}": want key=value`);
    const name = opts.driver ?? 'vfs';
    this.layersDir = path.join(this.root, `${name}-layers`);
    this.tmpDir = path.join(this.root, 'tmp');
    const runLayers = path.join(this.runroot, `${name}-layers`);
    for (const d of [this.root, this.layersDir, this.tmpDir, this.runroot, runLayers]) fs.mkdirSync(d, { recursive: true, mode: 0o700 });
    this.driver = openDriver(name, this.root, this.runroot);
    this.layersFile = path.join(this.layersDir, 'layers.json');
    this.mounts = new MountRecords(runLayers);
    this.lock = new StoreLock(path.join(this.root, 'layers-store.lock'), async () => {
      this.load();
      await this.removeIncomplete();
    });
  }

  static async open(opts: StoreOptions): Promise<Store> {
    const store = new Store(opts);
    store.load();
    // leftovers of a writer that died: clean them under the lock (which waits for a live writer)
    if (store.records.some(isIncomplete)) await store.lock.withLock(async () => undefined);
    return store;
  }

  // ---- reading ----

  private load(): void {
    this.records = readJsonFile<LayerRecord[]>(this.layersFile, []);
    this.mounts.load();
  }

  /** complete layers, in creation order */
  async layers(): Promise<LayerRecord[]> {
    this.load();
    return clone(this.records.filter((r) => !isIncomplete(r)));
  }

  /** the layer with this id, name or unambiguous id prefix */
  async layer(ref: string): Promise<LayerRecord> {
    this.load();
    return clone(this.find(ref));
  }

  async exists(ref: string): Promise<boolean> {
    this.load();
    return this.lookup(ref) !== undefined;
  }

  /** mounts of complete layers: [{id, path, count}] */
  async mounted(): Promise<MountRecord[]> {
    this.load();
    return this.mounts.all();
  }

  async mountCount(ref: string): Promise<number> {
    this.load();
    return this.mounts.count(this.find(ref).id);
  }

  private lookup(ref: string): LayerRecord | undefined {
    return findLayer(
      this.records.filter((r) => !isIncomplete(r)),
      ref,
    );
  }

  private find(ref: string, role = 'layer'): LayerRecord {
    const r = this.lookup(ref);
    if (!r) throw new LayersError('ELAYERUNKNOWN', `${role} "${ref}" not known`);
    return r;
  }

  private children(id: string): LayerRecord[] {
    return this.records.filter((r) => r.parent === id);
  }

  private mappings(r: LayerRecord | undefined): IdMappings {
    return { uidmap: r?.uidmap ?? [], gidmap: r?.gidmap ?? [] };
  }

  // ---- writing ----

  private saveLayers(): void {
    this.lock.assertHeld();
    writeJsonAtomic(this.layersFile, this.records.map(normalizeRecord));
  }

  private saveMounts(): void {
    this.lock.assertHeld();
    this.mounts.save();
  }

  private async removeIncomplete(): Promise<void> {
    for (const r of this.records.filter(isIncomplete)) {
      try {
        await this.removeLayer(r);
      } catch (err) {
        throw new LayersError('EDRIVER', `removing incomplete layer ${r.id}: ${(err as Error).message}`, { cause: err });
      }
    }
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
    this.records = this.records.filter((x) => x !== r);
    this.saveLayers();
  }

  private checkNames(names: string[], except?: LayerRecord): void {
    for (const n of names) {
      const owner = this.records.find((r) => r !== except && r.names?.includes(n));
      if (owner) throw new LayersError('ENAMEINUSE', `name "${n}" is already in use by layer ${owner.id}`);
    }
  }

  /** Create a layer (a child of opts.parent when given), and apply `input` to it when given. */
  async createLayer(opts: CreateLayerOptions = {}, input?: DiffInput): Promise<LayerRecord> {
    return this.lock.withLock(async () => {
      const parent = opts.parent !== undefined ? this.find(opts.parent, 'parent layer') : undefined;
      const id = opts.id ?? randomBytes(32).toString('hex');
      if (!ID_RE.test(id)) throw new LayersError('EUSAGE', `bad layer id "${id}": use letters, digits, '.', '_' and '-'`);
      if (this.records.some((r) => r.id === id)) throw new LayersError('ELAYEREXISTS', `layer id ${id} is already in use`);
      const names = [...new Set(opts.names ?? [])];
      this.checkNames(names);
      const mappings = { uidmap: opts.uidmap ?? [], gidmap: opts.gidmap ?? [] };
      const rec: LayerRecord = {
        id,
        names,
        parent: parent?.id,
        metadata: opts.metadata,
        mountlabel: opts.mountLabel,
        created: rfc3339(),
        flags: { incomplete: true },
        uidmap: mappings.uidmap,
        gidmap: mappings.gidmap,
      };
      this.records.push(rec);
      this.saveLayers();
      try {
        await this.driver.create(id, parent?.id, { readWrite: opts.readWrite, idMappings: mappings, mountLabel: opts.mountLabel });
        // the copy of the parent carries the parent's owners: shift them to this layer's mappings
        if (parent && !sameMappings(this.mappings(parent), mappings)) await this.driver.updateIdMappings(id, this.mappings(parent), mappings);
        if (input !== undefined) await this.applyInto(rec, input);
      } catch (err) {
        // on failure the record stays incomplete; the next writer removes it if this cannot
        await this.removeLayer(rec).catch(() => undefined);
        throw err;
      }
      delete rec.flags!.incomplete;
      this.saveLayers();
      return clone(normalizeRecord(rec));
    });
  }

  /** Apply a tar to an existing layer. If it fails the layer is left incomplete and removed by the next writer. */
  async applyDiff(ref: string, input: DiffInput): Promise<LayerRecord> {
    return this.lock.withLock(async () => {
      const rec = this.find(ref);
      const kids = this.children(rec.id);
      if (kids.length > 0)
        throw new LayersError('ELAYERHASCHILDREN', `layer ${rec.id} has child layers (${kids.map((k) => k.id).join(', ')}); they would not see the change`);
      rec.flags = { ...rec.flags, incomplete: true };
      this.saveLayers();
      try {
        await this.applyInto(rec, input);
      } catch (err) {
        const e = err as Error;
        e.message += `; layer ${rec.id} is left incomplete and will be removed`;
        throw e;
      }
      delete rec.flags.incomplete;
      this.saveLayers();
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

  /** Write the layer's changes against its parent (or opts.reference) as a tar to fd. */
  async diff(ref: string, fd: number, opts: DiffOptions = {}): Promise<void> {
    this.load();
    const rec = this.find(ref);
    const against = opts.reference !== undefined ? this.find(opts.reference, 'reference layer').id : rec.parent;
    const idMappings = this.mappings(rec);
    if (opts.compression !== 'gzip') return this.driver.diff(rec.id, against, fd, { idMappings });
    // gzip needs the tar as a stream: write it to an unlinked temp file, then compress from there
    const p = path.join(this.tmpDir, `diff-${randomBytes(8).toString('hex')}`);
    const tmp = fs.openSync(p, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o600);
    fs.unlinkSync(p);
    try {
      await this.driver.diff(rec.id, against, tmp, { idMappings });
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
    const rec = this.find(ref);
    return this.driver.changes(rec.id, reference !== undefined ? this.find(reference, 'reference layer').id : rec.parent);
  }

  async diffSize(ref: string, reference?: string): Promise<number> {
    this.load();
    const rec = this.find(ref);
    return this.driver.diffSize(rec.id, reference !== undefined ? this.find(reference, 'reference layer').id : rec.parent);
  }

  /** Mount the layer (one more user); returns its path. */
  async mount(ref: string, opts: MountOptions = {}): Promise<string> {
    return this.lock.withLock(async () => {
      const rec = this.find(ref);
      const p = await this.driver.mount(rec.id, { mountLabel: rec.mountlabel, ...opts });
      this.mounts.add(rec.id, p);
      this.saveMounts();
      return p;
    });
  }

  /** One user less (every user when force); the last one really unmounts. Returns the users left. */
  async unmount(ref: string, force = false): Promise<number> {
    return this.lock.withLock(async () => {
      const rec = this.find(ref);
      if (this.mounts.count(rec.id) === 0) return 0;
      const left = this.mounts.release(rec.id, force);
      if (left === 0) await this.driver.unmount(rec.id);
      this.saveMounts();
      return left;
    });
  }

  /** Delete a layer that has no children and is not mounted. */
  async deleteLayer(ref: string): Promise<void> {
    return this.lock.withLock(async () => {
      const rec = this.find(ref);
      const kids = this.children(rec.id);
      if (kids.length > 0)
        throw new LayersError('ELAYERHASCHILDREN', `layer ${rec.id} has child layers: ${kids.map((k) => k.id).join(', ')}`);
      const n = this.mounts.count(rec.id);
      if (n > 0) throw new LayersError('ELAYERINUSE', `layer ${rec.id} is mounted (${n} user${n === 1 ? '' : 's'}); unmount it first`);
      await this.removeLayer(rec);
    });
  }

  async setMetadata(ref: string, metadata: string): Promise<void> {
    return this.lock.withLock(async () => {
      this.find(ref).metadata = metadata;
      this.saveLayers();
    });
  }

  /** Give the layer these names too; a name another layer has moves here (as the peer does). */
  async addNames(ref: string, names: string[]): Promise<string[]> {
    return this.lock.withLock(async () => {
      const rec = this.find(ref);
      this.takeNames(rec, [...(rec.names ?? []), ...names]);
      return [...rec.names!];
    });
  }

  /** Replace the layer's names; a name another layer has moves here (as the peer does). */
  async setNames(ref: string, names: string[]): Promise<string[]> {
    return this.lock.withLock(async () => {
      const rec = this.find(ref);
      this.takeNames(rec, names);
      return [...rec.names!];
    });
  }

  private takeNames(rec: LayerRecord, names: string[]): void {
    const wanted = [...new Set(names)];
    for (const other of this.records) if (other !== rec && other.names) other.names = other.names.filter((n) => !wanted.includes(n));
    rec.names = wanted;
    this.saveLayers();
  }

  /** Remove every layer, children first, unmounting what is mounted. */
  async wipe(): Promise<void> {
    return this.lock.withLock(async () => {
      while (this.records.length > 0) {
        const parents = new Set(this.records.map((r) => r.parent));
        const leaves = this.records.filter((r) => !parents.has(r.id));
        // a parent cycle cannot come from us; take any layer rather than loop forever
        for (const r of leaves.length > 0 ? leaves : [this.records[0]]) await this.removeLayer(r);
      }
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

function openInput(file: string): number {
  try {
    return fs.openSync(file, 'r');
  } catch (err) {
    throw new LayersError('EINPUT', `cannot open ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
  }
}

