// The core parts every full-tree driver shares: a layer is one directory holding its whole tree
// (vfs: a plain directory, btrfs: a subvolume), so "mounting" is returning it and an id shift is a
// chown walk. Diffs are the naive differ's, on that directory (NaiveDiffDriver). Drivers add how a
// layer is made, removed and described.
import fs from 'node:fs';
import path from 'node:path';
import { mountIdmapped, type IdMappings } from '../lib/idmap.ts';
import { LayersError, wrapError } from '../lib/errors.ts';
import { native } from '../lib/native.ts';
import type { ApplyDiffOptions, ApplyDiffResult, Change, CreateOptions, DiffOptions, MountOptions } from './driver.ts';
import { NaiveDiffDriver, type LayerTrees } from './naive/index.ts';
import { cachedFeatureCheck, cachedFeatureRecord } from './overlay/features.ts';
import { chownTree } from './trees.ts';

/** The probe's cached answer under the run home, named as overlay's probes are (features.ts). */
const IDMAPPED_MOUNT_FEATURE = 'idmapped-mount';
/** A mapping for the probe: container 0 is host 1, so an owner that shows 1 proves the mapping. */
const PROBE_MAPPINGS: IdMappings = { uidmap: [{ container_id: 0, host_id: 1, size: 1 }], gidmap: [{ container_id: 0, host_id: 1, size: 1 }] };


/** The switch that turns idmapped mounts on for vfs and btrfs (see idmappedMounts). */
export const IDMAPPED_MOUNTS_ENV = 'LAYERS_IDMAPPED_MOUNTS';
export abstract class FullTreeDriver extends NaiveDiffDriver {
  abstract override readonly name: 'vfs' | 'btrfs';
  /** what a layer's directory is, in errors: 'directory', 'subvolume' */
  protected abstract readonly what: string;
  abstract dir(id: string): string;
  abstract override readonly home: string;
  /** <runroot>/<name>: the cached probe answer (undefined: probed once per driver) */
  abstract readonly runHome?: string;
  private idmapped: Promise<{ supported: boolean; why: string }> | undefined;

  /**
   * <home>/idmapped/<id>: the layer was created with CreateOptions.idmapped; its tree keeps
   * container ids on disk and its mounts are idmapped binds at <home>/mapped/<id> with these
   * mappings (JSON), so what a container writes lands unmapped (docs/images-and-containers.md).
   */
  private idmapFile(id: string): string {
    return path.join(this.home, 'idmapped', id);
  }

  private mappedDir(id: string): string {
    return path.join(this.home, 'mapped', id);
  }

  protected idmapOf(id: string): IdMappings | undefined {
    try {
      return JSON.parse(fs.readFileSync(this.idmapFile(id), 'utf8')) as IdMappings;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw wrapError(`${this.name}: reading the id mappings of layer ${id}`, err);
    }
  }

  /** After the driver made the layer: with opts.idmapped (on a parent), record its mappings for its mounts. */
  protected recordIdmap(id: string, parent: string | undefined, opts: CreateOptions): void {
    if (!opts.idmapped || !parent) return;
    fs.mkdirSync(path.dirname(this.idmapFile(id)), { recursive: true, mode: 0o700 });
    const m = opts.idMappings ?? { uidmap: [], gidmap: [] };
    fs.writeFileSync(this.idmapFile(id), JSON.stringify({ uidmap: m.uidmap, gidmap: m.gidmap }));
  }

  /** Unmount and forget the layer's idmapped view (before the driver removes its tree). */
  protected async removeIdmap(id: string): Promise<void> {
    await this.unmount(id);
    fs.rmSync(this.mappedDir(id), { recursive: true, force: true });
    fs.rmSync(this.idmapFile(id), { force: true });
  }

  /** the idmapped bind is on: its root is the layer's root, not the empty mount point */
  private isMapped(id: string): boolean {
    try {
      return fs.statSync(this.mappedDir(id)).ino === fs.statSync(this.dir(id)).ino;
    } catch {
      return false;
    }
  }

  /**
   * Whether this kernel and filesystem take idmapped mounts: an idmapped bind of a one-file temp
   * dir under the home, and the file's owner seen through it; cached under the run home as
   * overlay's probes are. Off unless LAYERS_IDMAPPED_MOUNTS=yes: unlike overlay's (whose upper
   * stays plain), the whole layer is the idmapped mount here, and a process whose ids the mapping
   * does not hold (host root, a runtime writing /etc/hosts into the rootfs) cannot create files
   * in it (EOVERFLOW) (docs/images-and-containers.md, "Idmapped mounts").
   * _CONTAINERS_<DRIVER>_DISABLE_IDMAP=yes turns it off, as the peer's
   * _CONTAINERS_OVERLAY_DISABLE_IDMAP does for overlay.
   */
  async idmappedMounts(): Promise<{ supported: boolean; why: string }> {
    const env = `_CONTAINERS_${this.name.toUpperCase()}_DISABLE_IDMAP`;
    if (process.env[env] === 'yes') return { supported: false, why: `${env}=yes` };
    if (process.env[IDMAPPED_MOUNTS_ENV] !== 'yes')
      return { supported: false, why: `off by default on ${this.name} (host root could not create files in the mount); ${IDMAPPED_MOUNTS_ENV}=yes turns them on` };
    this.idmapped ??= (async () => {
      const cached = this.runHome ? cachedFeatureCheck(this.runHome, IDMAPPED_MOUNT_FEATURE) : undefined;
      if (cached) return { supported: cached.supported, why: cached.text };
      const answer = this.probeIdmappedMount();
      if (this.runHome) cachedFeatureRecord(this.runHome, IDMAPPED_MOUNT_FEATURE, answer.supported, answer.why);
      return answer;
    })();
    return this.idmapped;
  }

  private probeIdmappedMount(): { supported: boolean; why: string } {
    const td = fs.mkdtempSync(path.join(this.home, 'idmapped-mount-check-'));
    try {
      fs.mkdirSync(path.join(td, 'tree'));
      fs.mkdirSync(path.join(td, 'mapped'));
      fs.writeFileSync(path.join(td, 'tree', 'f'), '');
      try {
        mountIdmapped(path.join(td, 'tree'), path.join(td, 'mapped'), PROBE_MAPPINGS);
      } catch (err) {
        return { supported: false, why: `an idmapped mount of ${this.home} failed: ${(err as Error).message}` };
      }
      try {
        const uid = fs.statSync(path.join(td, 'mapped', 'f')).uid;
        return uid === 1 ? { supported: true, why: 'idmapped mounts probed' } : { supported: false, why: `a file of an idmapped mount shows uid ${uid}, not the mapped 1` };
      } finally {
        native().umount2(path.join(td, 'mapped'), native().mountFlags.MNT_DETACH);
      }
    } finally {
      fs.rmSync(td, { recursive: true, force: true });
    }
  }

  protected existing(id: string): string {
    const d = this.dir(id);
    if (!fs.existsSync(d)) throw new LayersError('EDRIVER', `${this.name}: layer ${id} has no ${this.what} ${d}`);
    return d;
  }

  async exists(id: string): Promise<boolean> {
    return fs.existsSync(this.dir(id));
  }

  /** The layer's directory, or for a layer created idmapped an idmapped bind of it (once: the store counts the users). */
  async mount(id: string, _opts?: MountOptions): Promise<string> {
    const d = this.existing(id);
    const m = this.idmapOf(id);
    if (!m) return d;
    const target = this.mappedDir(id);
    if (this.isMapped(id)) return target;
    fs.mkdirSync(target, { recursive: true, mode: 0o700 });
    try {
      mountIdmapped(d, target, m);
    } catch (err) {
      throw wrapError(`${this.name}: an idmapped mount of layer ${id} at ${target}`, err);
    }
    return target;
  }

  async unmount(id: string): Promise<void> {
    // nothing is mounted but an idmapped layer's view: the layer's directory is its view
    if (!this.isMapped(id)) return;
    native().umount2(this.mappedDir(id), native().mountFlags.MNT_DETACH);
  }

  /**
   * The differ works on the layer's directory itself, never its mount: a layer created idmapped
   * is mounted as an idmapped view the store may hold for a container, and its tree on disk is
   * what the store's records describe with stored() below.
   */
  protected override trees(): LayerTrees {
    return { read: (id, fn) => fn(this.existing(id)), write: (id, fn) => fn(this.existing(id)) };
  }

  /**
   * The differ's options for the layer: a layer created idmapped holds container ids on disk,
   * whatever mappings its record names, so its side is read and written unmapped.
   */
  private stored(id: string, opts: DiffOptions = {}): DiffOptions {
    return this.idmapOf(id) ? { ...opts, idMappings: undefined, parentIdMappings: opts.parentIdMappings } : opts;
  }

  override diff(id: string, parent: string | undefined, fd: number, opts?: DiffOptions): Promise<void> {
    return super.diff(id, parent, fd, this.stored(id, opts));
  }

  override applyDiff(id: string, parent: string | undefined, fd: number, opts?: ApplyDiffOptions): Promise<ApplyDiffResult> {
    return super.applyDiff(id, parent, fd, this.idmapOf(id) ? { ...opts, idMappings: undefined } : opts);
  }

  override changes(id: string, parent: string | undefined, opts?: DiffOptions): Promise<Change[]> {
    return super.changes(id, parent, this.stored(id, opts));
  }

  override diffSize(id: string, parent: string | undefined, opts?: DiffOptions): Promise<number> {
    return super.diffSize(id, parent, this.stored(id, opts));
  }

  async updateIdMappings(id: string, from: IdMappings | undefined, to: IdMappings | undefined): Promise<void> {
    await chownTree(this.existing(id), from, to);
  }

  /** Detach the idmapped views left mounted (the store unmounts the ones it counts first). */
  async cleanup(): Promise<void> {
    const dir = path.join(this.home, 'mapped');
    for (const id of fs.existsSync(dir) ? fs.readdirSync(dir) : []) await this.unmount(id);
  }
}
