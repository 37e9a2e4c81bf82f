// The overlay driver (docs/on-disk-format.md, "overlay"), laid out as containers/storage lays it out so either
// tool can read the other's store:
//   <home>/<id>/diff    the layer's own files (the upper dir when mounted read-write)
//   <home>/<id>/work    overlayfs's work dir; <home>/<id>/merged the mount point
//   <home>/<id>/link    the layer's 26-char short name; <home>/l/<name> -> ../<id>/diff (links.ts)
//   <home>/<id>/lower   'l/A:l/B:...', the short names of every ancestor, nearest first
//   <home>/<id>/empty   base layers only: the lower dir a layer without ancestors mounts on
// The class ties together the link names (links.ts), the mount stack (mounts.ts), the id shift
// (shift.ts) and the fast paths over the naive differ: the direct Diff of diff/ (diff.ts) and
// ApplyDiff straight into diff/ with whiteouts in overlayfs's form.
import fs from 'node:fs';
import path from 'node:path';
import { isIdentity, toContainer, toHost, type IdMappings } from '../../lib/idmap.ts';
import { LayersError } from '../../lib/errors.ts';
import { extractTar } from '../../lib/tar/extract.ts';
import { idmapPath, type ApplyDiffOptions, type ApplyDiffResult, type Change, type CreateOptions, type DiffOptions, type Driver, type MountOptions } from '../driver.ts';
import { backingFs, FS_MAGIC, fsType } from '../backing-fs.ts';
import { mountedTrees, NaiveDiffer, treeDiffSize } from '../naive/index.ts';
import { boolOption, driverOptions, IMAGESTORE, imageStorePaths, parseSize, unsupportedOption } from '../options.ts';
import { removeTree } from '../trees.ts';
import { hasMetacopyOrRedirect, overlayChanges, writeOverlayDiff } from './diff.ts';
import { idmappedLowersSupport, metacopySupport } from './features.ts';
import { LINK_DIR, LinkNames } from './links.ts';
import { MountStack } from './mounts.ts';
import { shiftLayer } from './shift.ts';

/** A base layer's root before any tar sets it, as containers/storage makes it. */
const BASE_ROOT_MODE = 0o555;

/** The peer's overlay options this driver takes (--storage-opt overlay.<key>=...). */
const OPTION_KEYS = ['mountopt', 'skip_mount_home', 'ignore_chown_errors', 'mount_program', 'size', 'inodes', IMAGESTORE] as const;

export class OverlayDriver implements Driver {
  readonly name = 'overlay' as const;
  /** none: the peer's size= needs xfs project quotas, which this driver does not set */
  readonly layerOptions = [] as const;
  readonly home: string;
  readonly options: Readonly<Record<string, string>>;
  /** <runroot>/overlay: cached feature probes (undefined: probe once per driver) */
  readonly runHome: string | undefined;
  private readonly names: LinkNames;
  /** the additional image stores' roots (overlay.imagestore), searched for layers not ours */
  private readonly imageStores: string[];
  private readonly mounts: MountStack;
  /** the naive differ on read-only views, for what the direct paths cannot take */
  private readonly naive: NaiveDiffer;
  private readonly ignoreChownErrors: boolean;
  /** whether the kernel copies up metadata only (metacopy=on), asked once per driver */
  private metacopy: Promise<boolean> | undefined;
  /** whether lowers can be mounted idmapped, asked once per driver */
  private idmapped: Promise<{ supported: boolean; why: string }> | undefined;

  /** options: --storage-opt (overlay.mountopt, ...), refused before anything is made */
  constructor(home: string, runHome?: string, options: readonly string[] = []) {
    this.options = driverOptions('overlay', options, OPTION_KEYS);
    const o = this.options;
    if (o.mount_program !== undefined) throw unsupportedOption('overlay', 'mount_program', 'this driver mounts with the kernel overlay filesystem only');
    for (const key of ['size', 'inodes'] as const) {
      if (o[key] === undefined) continue;
      if (key === 'size') parseSize('overlay', o[key]);
      throw unsupportedOption('overlay', key, 'it needs xfs project quotas, which this driver does not set');
    }
    // the peer bind-mounts its home on itself unless told not to; this driver never does
    boolOption('overlay', 'skip_mount_home', o.skip_mount_home);
    this.ignoreChownErrors = boolOption('overlay', 'ignore_chown_errors', o.ignore_chown_errors);
    const mountopt = o.mountopt ? o.mountopt.split(',').filter((x) => x !== '') : [];
    this.home = home;
    this.runHome = runHome;
    // additional image stores: their layers are parents, templates and lowers, never written (links.ts)
    this.imageStores = imageStorePaths('overlay', options).filter((s) => path.join(s, 'overlay') !== home);
    this.names = new LinkNames(home, this.imageStores.map((s) => path.join(s, 'overlay')));
    this.mounts = new MountStack(this.names, () => this.usingMetacopy(), mountopt);
    this.naive = new NaiveDiffer({ read: (id, fn) => this.mounts.view(id, fn), write: mountedTrees(this).write }, { ignoreChownErrors: this.ignoreChownErrors });
    fs.mkdirSync(this.names.links, { recursive: true, mode: 0o700 });
    // overlayfs refuses an upper dir on overlayfs; say so now rather than at the first mount
    if (fsType(home) === FS_MAGIC.overlayfs)
      throw new LayersError('EDRIVER', `overlay: ${home} is on overlayfs, which cannot hold overlay upper layers; use --storage-driver vfs`);
  }

  dir(id: string): string {
    return path.join(this.home, id);
  }

  /** the layer's own files (in an additional image store's home when not ours) */
  diffDir(id: string): string {
    return path.join(this.names.dirOf(id), 'diff');
  }

  private existing(id: string): string {
    const d = this.diffDir(id);
    if (!fs.existsSync(d)) throw new LayersError('EDRIVER', `overlay: layer ${id} has no directory ${d}`);
    return d;
  }

  layerDir(id: string): string {
    return this.diffDir(id);
  }

  async create(id: string, parent: string | undefined, opts: CreateOptions = {}): Promise<void> {
    const d = this.dir(id);
    let uid: number | undefined;
    let gid: number | undefined;
    let mode = BASE_ROOT_MODE;
    let lower = '';
    if (parent) {
      // the new root starts as the parent's: the parent's diff root is what a mount shows at /
      // (through the idmapped lowers, in the layer's mappings: the upper holds host ids)
      const st = fs.statSync(this.existing(parent));
      [uid, gid, mode] = [st.uid, st.gid, st.mode & 0o7777];
      // the parent's root holds the parent's ids: through its mappings back to container ids, then to ours
      const from = this.mounts.idmap(parent) ?? { uidmap: [], gidmap: [] };
      if (opts.idmapped) {
        const [cu, cg] = [toContainer(from.uidmap, uid), toContainer(from.gidmap, gid)];
        uid = cu === undefined ? undefined : toHost(opts.idMappings?.uidmap ?? [], cu);
        gid = cg === undefined ? undefined : toHost(opts.idMappings?.gidmap ?? [], cg);
      }
      if (uid === undefined || gid === undefined) throw new LayersError('EUSAGE', `overlay: the id mappings of layer ${id} do not hold the owner of its parent's root`);
      lower = this.names.childLowers(parent);
    } else {
      uid = toHost(opts.idMappings?.uidmap ?? [], 0);
      gid = toHost(opts.idMappings?.gidmap ?? [], 0);
      if (uid === undefined || gid === undefined) throw new LayersError('EUSAGE', `overlay: the id mappings of layer ${id} have no root (container id 0)`);
    }
    fs.mkdirSync(d, { mode: 0o700 });
    try {
      const diff = path.join(d, 'diff');
      fs.mkdirSync(diff);
      fs.chownSync(diff, uid, gid);
      fs.chmodSync(diff, mode);
      this.names.makeLink(id);
      for (const sub of ['work', 'merged']) fs.mkdirSync(path.join(d, sub), { mode: 0o700 });
      if (lower) fs.writeFileSync(path.join(d, 'lower'), lower);
      else fs.mkdirSync(path.join(d, 'empty'), { mode: 0o700 });
      // the ids the layer's own dirs hold, for mounts made without the store's records (IDMAP_FILE);
      // a shifted layer has none, as the peer's: the store's records say it
      if (opts.idmapped && !isIdentity(opts.idMappings)) this.mounts.recordIdmap(id, opts.idMappings!);
    } catch (err) {
      await this.remove(id);
      throw err;
    }
  }

  /** The new layer is a child of the template: O(1), and the template's files are its lowers. */
  async createFromTemplate(id: string, template: string, opts?: CreateOptions): Promise<void> {
    await this.create(id, template, opts);
  }

  /**
   * Whether overlayfs can copy up metadata only (`metacopy=on`), probed on first use and cached
   * under the run root as the peer caches it (features.ts). A failed probe is not kept.
   */
  usingMetacopy(): Promise<boolean> {
    if (!this.metacopy) {
      this.metacopy = metacopySupport(this.home, this.runHome);
      this.metacopy.catch(() => (this.metacopy = undefined));
    }
    return this.metacopy;
  }

  /**
   * Whether lowers can be mounted idmapped (features.ts, the peer's `idmapped-lower-dir` probe,
   * cached under the run root); off when _CONTAINERS_OVERLAY_DISABLE_IDMAP=yes, the peer's switch.
   */
  async idmappedMounts(): Promise<{ supported: boolean; why: string; anyParent: boolean }> {
    if (process.env._CONTAINERS_OVERLAY_DISABLE_IDMAP === 'yes') return { supported: false, why: '_CONTAINERS_OVERLAY_DISABLE_IDMAP=yes', anyParent: true };
    this.idmapped ??= idmappedLowersSupport(this.home, this.runHome);
    // each lower is shown through a view in its own layer's mappings (mounts.ts): any parent will do
    return { ...(await this.idmapped), anyParent: true };
  }

  /** Lowers are shown in the mounted layer's ids through the store's records of their mappings (mounts.ts). */
  useLayerMappings(lookup: (id: string) => IdMappings | undefined): void {
    this.mounts.layerMappings = lookup;
  }

  /** Shift the owners of the layer's visible tree (shift.ts). */
  async updateIdMappings(id: string, from: IdMappings | undefined, to: IdMappings | undefined): Promise<void> {
    this.existing(id);
    await shiftLayer(this.dir(id), id, this.mounts, await this.usingMetacopy(), from, to);
  }

  async remove(id: string): Promise<void> {
    if (this.isMounted(id)) await this.unmount(id);
    this.names.removeLink(id);
    removeTree(this.dir(id));
  }

  async exists(id: string): Promise<boolean> {
    return fs.existsSync(this.diffDir(id));
  }

  /** Mounted at <id>/merged (once: the store counts the users). Read-only mounts stack the layer's diff on its lowers. */
  async mount(id: string, opts: MountOptions = {}): Promise<string> {
    this.existing(id);
    // its merged and work dirs are in the other store, which is never written
    if (!this.names.isOurs(id)) throw new LayersError('EREADONLY', `overlay: layer ${id} belongs to an additional (read-only) image store and is not mounted`);
    return this.mounts.mount(id, opts);
  }

  isMounted(id: string): boolean {
    return this.mounts.isMounted(id);
  }

  async unmount(id: string): Promise<void> {
    await this.mounts.unmount(id);
  }

  /**
   * Whether diff can be read straight from the layer's diff dir: parent is its nearest lower (or
   * both are absent), the layer has no rotated uppers (its tree is diff over the copies a shift
   * made, which differ from the parent by owner), and, when a shifted layer is in its stack (so
   * it was mounted with metacopy=on and redirect_dir=on), diff holds no metacopy file (metadata
   * whose data is in a lower) and no redirected directory (a rename whose contents are elsewhere).
   */
  private direct(id: string, parent: string | undefined): boolean {
    const lowers = this.names.lowers(id);
    const first = lowers.split(':')[0];
    if (parent ? first === '' || first !== `${LINK_DIR}/${this.names.linkOf(parent)}` : first !== '') return false;
    if (this.mounts.rotatedUppers(id).length > 0) return false;
    if (!this.mounts.stack(id, lowers).rotated) return true;
    return !hasMetacopyOrRedirect(this.diffDir(id));
  }

  async diff(id: string, parent: string | undefined, fd: number, opts: DiffOptions = {}): Promise<void> {
    const diffDir = this.existing(id);
    if (this.direct(id, parent)) return writeOverlayDiff(diffDir, fd, opts);
    return this.naive.diff(id, parent, fd, opts);
  }

  /** Straight into diff/, whiteouts converted to overlayfs's form (lib/tar/whiteout.ts). */
  async applyDiff(id: string, _parent: string | undefined, fd: number, opts: ApplyDiffOptions = {}): Promise<ApplyDiffResult> {
    return extractTar(fd, this.existing(id), { whiteouts: 'overlay', idMappings: opts.idMappings, ignoreChownErrors: this.ignoreChownErrors, signal: opts.signal, onProgress: opts.onProgress, section: opts.section, tarSplitFd: opts.tarSplitFd });
  }

  async changes(id: string, parent: string | undefined, opts: DiffOptions = {}): Promise<Change[]> {
    const diffDir = this.existing(id);
    if (this.direct(id, parent)) {
      if (parent === undefined) return overlayChanges(diffDir, undefined);
      return this.mounts.view(parent, async (base) => overlayChanges(diffDir, base));
    }
    return this.naive.changes(id, parent, opts);
  }

  async diffSize(id: string, parent: string | undefined, opts: DiffOptions = {}): Promise<number> {
    const diffDir = this.existing(id);
    // the diff dir holds exactly the bodies the direct Diff writes (whiteouts are devices: no size)
    if (this.direct(id, parent)) return treeDiffSize(diffDir, undefined);
    return this.naive.diffSize(id, parent, opts);
  }

  /** Every layer with this one among its lowers: its children and theirs, and copies made from it as a template. */
  async dependents(id: string): Promise<string[]> {
    return this.names.dependents(id);
  }

  async status(): Promise<Array<[string, string]>> {
    return [
      ['Backing Filesystem', backingFs(this.home)],
      ['Supports d_type', 'true'],
      ['Native Overlay Diff', 'true'],
      ['Using metacopy', String(await this.usingMetacopy().catch(() => false))],
      ...this.imageStores.map((s): [string, string] => ['Image Store', s]),
      ['Id mappings', idmapPath(await this.idmappedMounts().catch((err: Error) => ({ supported: false, why: err.message })))],
    ];
  }

  /** Unmount every layer this driver left mounted (the store unmounts the ones it counts first). */
  async cleanup(): Promise<void> {
    for (const id of this.names.layerIds()) if (this.isMounted(id)) await this.unmount(id);
  }
}
