// The vfs driver (docs/on-disk-format.md, "vfs"): every layer is a full tree in <home>/dir/<id>. A child
// starts as a copy of its parent (reflinked on btrfs and xfs by copyTree), so nothing is ever
// mounted and any filesystem works. Diffs are naive: two trees compared.
import fs from 'node:fs';
import path from 'node:path';
import { toHost } from '../../lib/idmap.ts';
import { LayersError } from '../../lib/errors.ts';
import { idmapPath, type CreateOptions, type Driver } from '../driver.ts';
import { backingFs } from '../backing-fs.ts';
import { FullTreeDriver } from '../full-tree.ts';
import type { NaiveApplyOptions } from '../naive/index.ts';
import { boolOption, driverOptions, IMAGESTORE, imageStorePaths, unsupportedOption } from '../options.ts';
import { copyTree, removeTree } from '../trees.ts';

/** A base layer's root before any tar sets it, as containers/storage makes it. */
const BASE_ROOT_MODE = 0o555;

export class VfsDriver extends FullTreeDriver implements Driver {
  readonly name = 'vfs' as const;
  readonly layerOptions = [] as const;
  readonly home: string;
  readonly options: Readonly<Record<string, string>>;
  protected readonly what = 'directory';
  private readonly dirs: string;
  private readonly ignoreChownErrors: boolean;
  /** the additional image stores' roots, searched for layers not ours */
  private readonly imageStores: string[];

  /** options: --storage-opt (vfs.ignore_chown_errors, vfs.imagestore), refused before anything is made */
  /** runHome: <runroot>/vfs, where the idmapped-mount probe's answer is cached */
  constructor(home: string, options: readonly string[] = [], readonly runHome?: string) {
    super();
    this.options = driverOptions('vfs', options, ['ignore_chown_errors', IMAGESTORE, 'mountopt']);
    if (this.options.mountopt !== undefined) throw unsupportedOption('vfs', 'mountopt', 'nothing is mounted (the peer refuses it too)');
    this.ignoreChownErrors = boolOption('vfs', 'ignore_chown_errors', this.options.ignore_chown_errors);
    this.imageStores = imageStorePaths('vfs', options);
    this.home = home;
    this.dirs = path.join(home, 'dir');
    fs.mkdirSync(this.dirs, { recursive: true, mode: 0o700 });
  }

  dir(id: string): string {
    return path.join(this.dirs, id);
  }

  layerDir(id: string): string {
    return this.existing(id);
  }

  /** A layer's tree: ours, else one of an additional image store's (`vfs.imagestore`), read only
   *  (parents, templates, diffs), as the peer's vfs looks there too. */
  protected override existing(id: string): string {
    const own = this.dir(id);
    if (fs.existsSync(own)) return own;
    const other = this.imageStores.map((s) => path.join(s, 'vfs', 'dir', id)).find((d) => fs.existsSync(d));
    return other ?? super.existing(id);
  }

  async create(id: string, parent: string | undefined, opts: CreateOptions = {}): Promise<void> {
    const d = this.dir(id);
    if (parent) {
      const pd = this.existing(parent);
      fs.mkdirSync(d, { mode: 0o700 });
      // copyTree sets the root's owner, mode, xattrs and times from the parent's root
      await copyTree(pd, d, this.applyOptions());
      this.recordIdmap(id, parent, opts);
      return;
    }
    fs.mkdirSync(d, { mode: 0o700 });
    const m = opts.idMappings;
    const uid = toHost(m?.uidmap ?? [], 0);
    const gid = toHost(m?.gidmap ?? [], 0);
    if (uid === undefined || gid === undefined) throw new LayersError('EUSAGE', `vfs: the id mappings of layer ${id} have no root (container id 0)`);
    fs.chownSync(d, uid, gid);
    fs.chmodSync(d, BASE_ROOT_MODE);
  }

  async createFromTemplate(id: string, template: string): Promise<void> {
    // a plain copy: the store shifts its owners afterwards with updateIdMappings
    const td = this.existing(template);
    const d = this.dir(id);
    fs.mkdirSync(d, { mode: 0o700 });
    await copyTree(td, d, this.applyOptions());
  }

  async remove(id: string): Promise<void> {
    await this.removeIdmap(id);
    removeTree(this.dir(id));
  }

  async status(): Promise<Array<[string, string]>> {
    return [
      ['Backing Filesystem', backingFs(this.home)],
      ...this.imageStores.map((s): [string, string] => ['Image Store', s]),
      ['Id mappings', idmapPath(await this.idmappedMounts().catch((err: Error) => ({ supported: false, why: err.message })))],
    ];
  }

  /** vfs.ignore_chown_errors: an owner outside the process's user namespace is left as created */
  protected override applyOptions(): NaiveApplyOptions {
    return { ignoreChownErrors: this.ignoreChownErrors };
  }
}
