// The btrfs driver (docs/on-disk-format.md, "btrfs"): every layer is a subvolume, <home>/subvolumes/<id>. A
// base layer is a fresh subvolume, a child a writable snapshot of its parent, a template copy a
// snapshot of the template: O(1), and the data stays shared until it is written. Nothing is
// mounted: the subvolume's directory is the layer's view. Diffs are naive (the layer's tree
// against its parent's subvolume).
import fs from 'node:fs';
import path from 'node:path';
import { toHost } from '../../lib/idmap.ts';
import { LayersError } from '../../lib/errors.ts';
import { idmapPath, type CreateOptions, type Driver } from '../driver.ts';
import { FS_MAGIC, fsType } from '../backing-fs.ts';
import { FullTreeDriver } from '../full-tree.ts';
import { driverOptions, IMAGESTORE, parseSize, unsupportedOption } from '../options.ts';
import { removeTree } from '../trees.ts';
import { native } from '../../lib/native.ts';
import { walkTree } from '../../lib/tar/tree.ts';

/** The inode number of every subvolume's root directory (BTRFS_FIRST_FREE_OBJECTID). */
const SUBVOL_ROOT_INO = 256n;
/** A base layer's root before any tar sets it, as containers/storage makes it. */
const BASE_ROOT_MODE = 0o555;

export class BtrfsDriver extends FullTreeDriver implements Driver {
  readonly name = 'btrfs' as const;
  /** size=: a qgroup limit on what the layer's subvolume references */
  readonly layerOptions = ['size'] as const;
  readonly home: string;
  readonly options: Readonly<Record<string, string>>;
  protected readonly what = 'subvolume';
  private readonly subvolumes: string;
  /** btrfs.min_space: no layer's size= may be below it */
  private readonly minSpace: number | undefined;
  /** btrfs.size: the size= of a layer that gives none */
  private readonly defaultSize: string | undefined;

  /** options: --storage-opt (btrfs.min_space, btrfs.size; btrfs.imagestore refused), refused before anything is made */
  /** runHome: <runroot>/btrfs, where the idmapped-mount probe's answer is cached */
  constructor(home: string, options: readonly string[] = [], readonly runHome?: string) {
    super();
    this.options = driverOptions('btrfs', options, ['min_space', 'size', IMAGESTORE, 'mountopt']);
    if (this.options.mountopt !== undefined) throw unsupportedOption('btrfs', 'mountopt', 'nothing is mounted (the peer refuses it too)');
    // (the peer's btrfs has no image stores either: its suite skips them there; docs/sharing.md)
    if (this.options[IMAGESTORE] !== undefined)
      throw unsupportedOption('btrfs', IMAGESTORE, 'additional image stores are read by the vfs and overlay drivers only (a btrfs layer is a snapshot of its parent\'s subvolume, which a read-only store, perhaps on another filesystem, cannot give)');
    this.minSpace = this.options.min_space === undefined ? undefined : parseSize('btrfs', this.options.min_space);
    this.defaultSize = this.options.size;
    if (this.defaultSize !== undefined) this.checkedSize(this.defaultSize);
    this.home = home;
    this.subvolumes = path.join(home, 'subvolumes');
    // checked on the nearest existing ancestor, so a wrong root fails before anything is made there
    let probe = home;
    while (!fs.existsSync(probe)) probe = path.dirname(probe);
    const type = fsType(probe);
    if (type !== FS_MAGIC.btrfs)
      throw new LayersError(
        'EDRIVER',
        `btrfs: ${home} is not on a btrfs filesystem (statfs type 0x${type.toString(16)}); the btrfs driver needs its root on btrfs`,
      );
    fs.mkdirSync(this.subvolumes, { recursive: true, mode: 0o700 });
  }

  dir(id: string): string {
    return path.join(this.subvolumes, id);
  }

  layerDir(id: string): string {
    return this.dir(id);
  }

  async create(id: string, parent: string | undefined, opts: CreateOptions = {}): Promise<void> {
    const n = native();
    const size = this.sizeOption(opts);
    if (parent) {
      // the snapshot's root keeps the parent's owner, mode, xattrs and times
      n.btrfsSnapshot(this.existing(parent), this.subvolumes, id);
      this.recordIdmap(id, parent, opts);
    } else {
      const m = opts.idMappings;
      const uid = toHost(m?.uidmap ?? [], 0);
      const gid = toHost(m?.gidmap ?? [], 0);
      if (uid === undefined || gid === undefined) throw new LayersError('EUSAGE', `btrfs: the id mappings of layer ${id} have no root (container id 0)`);
      n.btrfsSubvolCreate(this.subvolumes, id);
      const d = this.dir(id);
      fs.chownSync(d, uid, gid);
      fs.chmodSync(d, BASE_ROOT_MODE);
    }
    if (size !== undefined) await this.limit(id, size);
  }

  /**
   * Cap what the layer's subvolume may reference, as the peer does for `size=`: quota groups are
   * turned on for the whole filesystem the first time (they cost every write some accounting, so
   * only when asked). A deleted subvolume's qgroup goes with it (Linux 6.9+).
   */
  private async limit(id: string, bytes: number): Promise<void> {
    const n = native();
    n.btrfsQuotaEnable(this.home);
    n.btrfsQgroupLimit(this.dir(id), bytes);
  }

  async createFromTemplate(id: string, template: string, opts: CreateOptions = {}): Promise<void> {
    const size = this.sizeOption(opts);
    // a writable snapshot: the store shifts its owners afterwards with updateIdMappings, which
    // unshares only the metadata it changes
    native().btrfsSnapshot(this.existing(template), this.subvolumes, id);
    if (size !== undefined) await this.limit(id, size);
  }

  /**
   * Delete the layer's subvolume and every subvolume made inside it (a container may have made
   * some), deepest first, as the kernel refuses to delete a subvolume that holds another. Each is
   * made writable first: a read-only subvolume cannot lose a nested one, and a layer may have
   * been made read-only (`btrfs property set ... ro true`) or be a read-only snapshot.
   */
  async remove(id: string): Promise<void> {
    const d = this.dir(id);
    await this.removeIdmap(id);
    if (!fs.existsSync(d)) return;
    const n = native();
    // a directory that is no subvolume (made by another tool or by hand) goes as a plain tree
    if (!n.btrfsIsSubvolume(d)) return removeTree(d);
    const subvols = [d];
    // only subvolumes of this filesystem: another btrfs mounted inside is not the layer's to delete
    const fsid = n.btrfsFsid(d);
    // walkTree yields parents before their children, so the reverse order is deepest first
    for (const node of walkTree(d, { xattrs: false })) {
      if (!node.st.isDirectory() || node.st.ino !== SUBVOL_ROOT_INO) continue;
      const abs = path.join(d, node.rel);
      if (n.btrfsIsSubvolume(abs) && n.btrfsFsid(abs) === fsid) subvols.push(abs);
    }
    for (const s of subvols) if (n.btrfsGetReadOnly(s)) n.btrfsSetReadOnly(s, false);
    for (const s of subvols.reverse()) n.btrfsSubvolDelete(path.dirname(s), path.basename(s));
  }

  /** The peer prints its libbtrfs build and library versions; ours has none, so it says what it uses. */
  async status(): Promise<Array<[string, string]>> {
    const s = fs.statfsSync(this.home);
    // the kernel lists a qgroups directory for the filesystem while quota groups are on
    const fsid = native().btrfsFsid(this.home);
    const quota = fs.existsSync(`/sys/fs/btrfs/${fsid}/qgroups`);
    return [
      ['Backing Filesystem', 'btrfs'],
      ['Layers As', 'subvolumes (children and template copies are snapshots)'],
      ['Quota', quota ? 'enabled' : 'disabled'],
      ['Id mappings', idmapPath(await this.idmappedMounts().catch((err: Error) => ({ supported: false, why: err.message })))],
      ['Space Total', String(s.blocks * s.bsize)],
      ['Space Available', String(s.bavail * s.bsize)],
    ];
  }

  /** The layer's `size=` (else btrfs.size) in bytes, checked against btrfs.min_space before anything is made. */
  private sizeOption(opts: CreateOptions): number | undefined {
    const v = opts.storageOpt?.size ?? this.defaultSize;
    return v === undefined ? undefined : this.checkedSize(v);
  }

  private checkedSize(value: string): number {
    const bytes = parseSize('btrfs', value);
    // the peer's words: "btrfs: storage size cannot be less than <min_space>"
    if (this.minSpace !== undefined && bytes < this.minSpace)
      throw new LayersError('EUSAGE', `btrfs: storage size cannot be less than ${this.options.min_space} (btrfs.min_space); size=${value} asked for ${bytes} bytes`);
    return bytes;
  }
}
