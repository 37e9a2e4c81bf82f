// The overlay driver (docs/on-disk-format.md, "overlay"), laid out as containers/storage lays it out so either
// tool can read the other's store:
//   <home>/<id>/diff    the layer's own files (the upper dir when mounted read-write)
//   <home>/<id>/work    overlayfs's work dir; <home>/<id>/merged the mount point
//   <home>/<id>/link    the layer's 26-char short name; <home>/l/<name> -> ../<id>/diff
//   <home>/<id>/lower   'l/A:l/B:...', the short names of every ancestor, nearest first
//   <home>/<id>/empty   base layers only: the lower dir a layer without ancestors mounts on
// Mount data names lowers by their short l/ paths relative to the home (the mount is made with the
// process's cwd there), so 128 lowers fit in the one page the kernel takes.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { toHost, type IdMappings } from '../../lib/idmap.ts';
import { LayersError } from '../../lib/errors.ts';
import type { ApplyDiffOptions, ApplyDiffResult, Change, CreateOptions, DiffOptions, Driver, MountOptions } from '../driver.ts';
import { removeTree } from '../naive/remove.ts';
import { backingFs, FS_MAGIC, fsType } from '../naive/backing-fs.ts';
import { chownTree, applyTar, treeChanges, treeDiff, treeDiffSize } from '../naive/index.ts';
import { native } from '../../lib/native.ts';
import { metacopySupport } from './features.ts';
import { copyUpHardlinks, hasMetacopyOrRedirect, overlayChanges, writeOverlayDiff } from './items.ts';

/** A base layer's root before any tar sets it, as containers/storage makes it. */
const BASE_ROOT_MODE = 0o555;
/** The kernel copies at most one page of mount data; with a 64-char id, 128 short lowers need ~3.9 KiB. */
const MOUNT_DATA_LIMIT = 4096 - 1;
const LINK_DIR = 'l';
/** overlayfs's own xattrs (origin, metacopy, redirect, ...): never carried to another inode */
const OVERLAY_XATTR_PREFIX = 'trusted.overlay.';
const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';


/** A short name as the peer makes them: 26 base32 characters (128 random bits). */
function newLinkName(): string {
  const bytes = randomBytes(17);
  let bits = 0;
  let acc = 0;
  let out = '';
  for (const b of bytes) {
    acc = (acc << 8) | b;
    bits += 8;
    while (bits >= 5 && out.length < 26) {
      bits -= 5;
      out += BASE32[(acc >> bits) & 31];
    }
  }
  return out;
}

function readText(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

export class OverlayDriver implements Driver {
  readonly name = 'overlay' as const;
  /** none: the peer's size= needs xfs project quotas, which this driver does not set */
  readonly layerOptions = [] as const;
  readonly home: string;
  private readonly links: string;
  /** <runroot>/overlay: cached feature probes (undefined: probe once per driver) */
  readonly runHome: string | undefined;
  /** whether the kernel copies up metadata only (metacopy=on), asked once per driver */
  private metacopy: Promise<boolean> | undefined;

  constructor(home: string, runHome?: string) {
    this.home = home;
    this.runHome = runHome;
    this.links = path.join(home, LINK_DIR);
    fs.mkdirSync(this.links, { recursive: true, mode: 0o700 });
    // overlayfs refuses an upper dir on overlayfs; say so now rather than at the first mount
    if (fsType(home) === FS_MAGIC.overlayfs)
      throw new LayersError('EDRIVER', `overlay: ${home} is on overlayfs, which cannot hold overlay upper layers; use --storage-driver vfs`);
  }

  dir(id: string): string {
    return path.join(this.home, id);
  }

  /** the layer's own files */
  diffDir(id: string): string {
    return path.join(this.home, id, 'diff');
  }

  private existing(id: string): string {
    const d = this.diffDir(id);
    if (!fs.existsSync(d)) throw new LayersError('EDRIVER', `overlay: layer ${id} has no directory ${d}`);
    return d;
  }

  /** 'l/A:l/B' of the layer's ancestors, nearest first ('' for a base layer) */
  lowers(id: string): string {
    return readText(path.join(this.dir(id), 'lower')) ?? '';
  }

  async create(id: string, parent: string | undefined, opts: CreateOptions = {}): Promise<void> {
    const d = this.dir(id);
    let uid: number | undefined;
    let gid: number | undefined;
    let mode = BASE_ROOT_MODE;
    let lower = '';
    if (parent) {
      // the new root starts as the parent's: the parent's diff root is what a mount shows at /
      const st = fs.statSync(this.existing(parent));
      [uid, gid, mode] = [st.uid, st.gid, st.mode & 0o7777];
      const parentLower = this.lowers(parent);
      lower = `${LINK_DIR}/${this.ensureLink(parent)}${parentLower ? ':' + parentLower : ''}`;
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
      const link = newLinkName();
      fs.symlinkSync(`../${id}/diff`, path.join(this.links, link));
      fs.writeFileSync(path.join(d, 'link'), link);
      for (const sub of ['work', 'merged']) fs.mkdirSync(path.join(d, sub), { mode: 0o700 });
      if (lower) fs.writeFileSync(path.join(d, 'lower'), lower);
      else fs.mkdirSync(path.join(d, 'empty'), { mode: 0o700 });
    } catch (err) {
      await this.remove(id);
      throw err;
    }
  }

  /** The new layer is a child of the template: O(1), and the template's files are its lowers. */
  async createFromTemplate(
    id: string,
    template: string,
    _templateMappings: IdMappings | undefined,
    _parent: string | undefined,
    _parentMappings: IdMappings | undefined,
    opts?: CreateOptions,
  ): Promise<void> {
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
   * Shift the owners of the layer's visible tree, as the peer's UpdateLayerIDMap does: chown
   * through a read-write mount (with metacopy=on overlayfs copies up metadata only, no file
   * bodies; lowers stay as they are), unmount, then rotate the upper: diff becomes diff1 (an
   * older diff1 becomes diff2, ...) and a fresh empty diff takes its place, so what is written
   * into the layer afterwards stays apart from what the shift copied up.
   */
  async updateIdMappings(id: string, from: IdMappings | undefined, to: IdMappings | undefined): Promise<void> {
    this.existing(id);
    // the upper of a live mount cannot be rotated (the peer renames it under the mount)
    if (this.isMounted(id)) throw new LayersError('EDRIVER', `overlay: layer ${id} is mounted; unmount it before shifting its owners`);
    const merged = path.join(this.dir(id), 'merged');
    // index=on: copying up one name of a lower hardlink records the upper inode in the index,
    // so the walk (which shifts each inode once) shifts every name, and copying up the other
    // names links them to it instead of making copies
    const options = ['index=on'];
    if (await this.usingMetacopy()) options.push('metacopy=on');
    fs.mkdirSync(merged, { recursive: true, mode: 0o700 });
    await this.mountAt(id, merged, { options });
    try {
      await chownTree(merged, from, to);
      copyUpHardlinks(merged);
    } finally {
      await this.unmount(id);
    }
    await this.rotateUpper(id);
  }

  /** The layer's rotated uppers, newest first: 'diff1', 'diff2', ... */
  rotatedUppers(id: string): string[] {
    const out: string[] = [];
    for (let n = 1; fs.existsSync(path.join(this.dir(id), `diff${n}`)); n++) out.push(`diff${n}`);
    return out;
  }

  /**
   * diff -> diff1 (diffN -> diffN+1 first) and a fresh empty diff, as the peer rotates them. The
   * fresh diff is the root a mount shows, so it takes the shifted root's owner, mode, xattrs and
   * times (the peer gives it the mode and the new mapping's root as owner: the same for a root
   * owned by container root). work is made anew: its index names inodes of the old upper.
   */
  private async rotateUpper(id: string): Promise<void> {
    const d = this.dir(id);
    const diff = path.join(d, 'diff');
    const fresh = path.join(d, 'diff-rotating');
    const st = fs.lstatSync(diff, { bigint: true });
    removeTree(fresh); // left by a process that died here
    fs.mkdirSync(fresh, { mode: 0o700 });
    native().lchown(fresh, Number(st.uid), Number(st.gid));
    fs.chmodSync(fresh, Number(st.mode & 0o7777n));
    for (const name of native().llistxattr(diff)) {
      if (name.startsWith(OVERLAY_XATTR_PREFIX)) continue;
      const value = native().lgetxattr(diff, name);
      if (value !== undefined) native().lsetxattr(fresh, name, value);
    }
    const n = this.rotatedUppers(id).length + 1;
    for (let i = n; i > 1; i--) fs.renameSync(path.join(d, `diff${i - 1}`), path.join(d, `diff${i}`));
    fs.renameSync(diff, path.join(d, 'diff1'));
    fs.renameSync(fresh, diff);
    const ts = (ns: bigint) => ({ sec: Number(ns / 1_000_000_000n), nsec: Number(ns % 1_000_000_000n) });
    native().lutimes(diff, ts(st.atimeNs), ts(st.mtimeNs));
    const work = path.join(d, 'work');
    removeTree(work);
    fs.mkdirSync(work, { mode: 0o700 });
    fs.chmodSync(work, 0o555);
    native().lchown(work, Number(st.uid), Number(st.gid));
  }

  async remove(id: string): Promise<void> {
    if (this.isMounted(id)) await this.unmount(id);
    const link = readText(path.join(this.dir(id), 'link'));
    if (link) fs.rmSync(path.join(this.links, link), { force: true });
    removeTree(this.dir(id));
  }

  async exists(id: string): Promise<boolean> {
    return fs.existsSync(this.diffDir(id));
  }

  /** Mounted at <id>/merged (once: the store counts the users). Read-only mounts stack the layer's diff on its lowers. */
  async mount(id: string, opts: MountOptions = {}): Promise<string> {
    this.existing(id);
    const merged = path.join(this.dir(id), 'merged');
    if (this.isMounted(id)) return merged;
    fs.mkdirSync(merged, { recursive: true, mode: 0o700 });
    await this.mountAt(id, merged, opts);
    return merged;
  }

  /**
   * The lower dirs of a mount of the layer, top first, relative to the home: its own rotated
   * uppers, then each ancestor's l/ path followed by that ancestor's rotated uppers, named through
   * the link as the peer names them ('l/X/../diff1': the kernel resolves '..' after the symlink).
   * `rotated`: some layer of the stack has been id-shifted, so metacopy files may be in it.
   */
  private stack(id: string, lowers: string): { dirs: string[]; rotated: boolean } {
    const dirs = this.rotatedUppers(id).map((r) => `${id}/${r}`);
    let rotated = dirs.length > 0;
    for (const l of lowers ? lowers.split(':') : []) {
      dirs.push(l);
      let owner: string | undefined;
      try {
        owner = /^\.\.\/([^/]+)\/diff$/.exec(fs.readlinkSync(path.join(this.home, l)))?.[1];
      } catch {
        // not a link of this home's form: a lower without rotated uppers
      }
      if (owner === undefined) continue;
      for (const r of this.rotatedUppers(owner)) {
        dirs.push(`${l}/../${r}`);
        rotated = true;
      }
    }
    return { dirs, rotated };
  }

  /**
   * Mount options of the layer's mounts beyond the caller's: `metacopy=on` wherever a shifted
   * layer is in the stack (the kernel refuses to follow a metacopy file without it), and only
   * there, since it implies redirect_dir=on, whose renamed directories the direct Diff cannot
   * write. A `metacopy=on` the kernel does not have is dropped, as the peer drops it.
   */
  private async mountOptions(rotated: boolean, asked: string[]): Promise<string[]> {
    const wants = asked.includes('metacopy=on') || (rotated && !asked.some((o) => o.startsWith('metacopy=')));
    const out = asked.filter((o) => o !== 'metacopy=on');
    if (wants && (await this.usingMetacopy())) out.push('metacopy=on');
    return out;
  }

  private async mountAt(id: string, target: string, opts: MountOptions = {}): Promise<void> {
    const lowers = this.checkedLowers(id);
    const { dirs, rotated } = this.stack(id, lowers);
    const below = dirs.length ? dirs.join(':') : `${id}/empty`;
    const data: string[] = [];
    if (opts.readOnly) {
      data.push(`lowerdir=${id}/diff:${below}`);
    } else {
      fs.mkdirSync(path.join(this.dir(id), 'work'), { recursive: true, mode: 0o700 });
      data.push(`lowerdir=${below}`, `upperdir=${id}/diff`, `workdir=${id}/work`);
    }
    data.push(...(await this.mountOptions(rotated, opts.options ?? [])));
    const text = data.join(',');
    const bytes = Buffer.byteLength(text);
    if (bytes > MOUNT_DATA_LIMIT) {
      const n = lowers ? lowers.split(':').length : 0;
      throw new LayersError(
        'EDRIVER',
        `overlay: cannot mount layer ${id}: its mount data is ${bytes} bytes for ${n} lower layers, over the kernel's limit of one page (${MOUNT_DATA_LIMIT} bytes)`,
      );
    }
    const flags = opts.readOnly ? native().mountFlags.MS_RDONLY : 0;
    // relative lower paths are resolved against the cwd at mount(2); nothing else runs in between
    const cwd = process.cwd();
    process.chdir(this.home);
    try {
      native().mount('overlay', target, 'overlay', flags, text);
    } catch (err) {
      const e = err as Error;
      e.message = `overlay: mounting layer ${id} at ${target}: ${e.message}`;
      throw e;
    } finally {
      process.chdir(cwd);
    }
  }

  /**
   * The layer's lowers, every l/ link in place: a missing link (or link file) is recreated from
   * the other one, as the peer does on start-up. A lower that names no layer any more is an error.
   */
  private checkedLowers(id: string): string {
    this.ensureLink(id);
    const lowers = this.lowers(id);
    if (!lowers) return '';
    const missing = lowers.split(':').filter((l) => !fs.existsSync(path.join(this.home, l)));
    if (missing.length === 0) return lowers;
    this.recreateLinks();
    const still = missing.filter((l) => !fs.existsSync(path.join(this.home, l)));
    if (still.length > 0) throw new LayersError('EDRIVER', `overlay: layer ${id} has lower layers that no longer exist: ${still.join(', ')}`);
    return lowers;
  }

  /** The layer's short name, its link file and l/ symlink made good when one of them is missing. */
  private ensureLink(id: string): string {
    const file = path.join(this.dir(id), 'link');
    let link = readText(file);
    if (!link) {
      link = this.linkPointingAt(id) ?? newLinkName();
      fs.writeFileSync(file, link);
    }
    const sym = path.join(this.links, link);
    if (!fs.lstatSync(sym, { throwIfNoEntry: false })) {
      try {
        fs.symlinkSync(`../${id}/diff`, sym);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
    }
    return link;
  }

  /** the l/ entry whose target is this layer's diff, if any */
  private linkPointingAt(id: string): string | undefined {
    for (const name of fs.readdirSync(this.links)) {
      try {
        if (fs.readlinkSync(path.join(this.links, name)) === `../${id}/diff`) return name;
      } catch {
        // not a symlink: not ours
      }
    }
    return undefined;
  }

  /** Every layer's link and l/ symlink made good. */
  private recreateLinks(): void {
    for (const id of this.layerIds()) this.ensureLink(id);
  }

  private layerIds(): string[] {
    return fs.readdirSync(this.home).filter((n) => n !== LINK_DIR && fs.existsSync(path.join(this.home, n, 'diff')));
  }

  /** merged is a mount point when it sits on another device than the layer's directory */
  isMounted(id: string): boolean {
    try {
      return fs.statSync(path.join(this.dir(id), 'merged')).dev !== fs.statSync(this.dir(id)).dev;
    } catch {
      return false;
    }
  }

  async unmount(id: string): Promise<void> {
    if (!this.isMounted(id)) return;
    const target = path.join(this.dir(id), 'merged');
    try {
      native().umount2(target, native().mountFlags.UMOUNT_NOFOLLOW);
    } catch (err) {
      // busy (an open file, a process's cwd): detach now, the kernel finishes when it is released
      if ((err as NodeJS.ErrnoException).code !== 'EBUSY') throw err;
      native().umount2(target, native().mountFlags.UMOUNT_NOFOLLOW | native().mountFlags.MNT_DETACH);
    }
  }

  /**
   * Whether diff can be read straight from the layer's diff dir: parent is its nearest lower (or
   * both are absent), the layer has no rotated uppers (its tree is diff over the copies a shift
   * made, which differ from the parent by owner), and, when a shifted layer is in its stack (so
   * it was mounted with metacopy=on and redirect_dir=on), diff holds no metacopy file (metadata
   * whose data is in a lower) and no redirected directory (a rename whose contents are elsewhere).
   */
  private async direct(id: string, parent: string | undefined): Promise<boolean> {
    const lowers = this.lowers(id);
    const first = lowers.split(':')[0];
    if (parent ? first === '' || first !== `${LINK_DIR}/${readText(path.join(this.dir(parent), 'link'))}` : first !== '') return false;
    if (this.rotatedUppers(id).length > 0) return false;
    if (!this.stack(id, lowers).rotated) return true;
    return !hasMetacopyOrRedirect(this.diffDir(id));
  }

  /**
   * Run fn on the full tree of a layer (undefined: no tree) without touching <id>/merged, which
   * the store may have mounted read-write: a base layer's tree is its diff dir, any other (or a
   * shifted base layer) gets a read-only overlay mount of its own in a temp dir, unmounted afterwards.
   */
  private async withTree<T>(id: string | undefined, fn: (dir: string | undefined) => Promise<T>): Promise<T> {
    if (id === undefined) return fn(undefined);
    this.existing(id);
    if (!this.lowers(id) && this.rotatedUppers(id).length === 0) return fn(this.diffDir(id));
    const view = fs.mkdtempSync(path.join(os.tmpdir(), 'layers-overlay-view-'));
    try {
      await this.mountAt(id, view, { readOnly: true });
      try {
        return await fn(view);
      } finally {
        native().umount2(view, native().mountFlags.MNT_DETACH);
      }
    } finally {
      fs.rmdirSync(view);
    }
  }

  async diff(id: string, parent: string | undefined, fd: number, opts: DiffOptions = {}): Promise<void> {
    const diffDir = this.existing(id);
    if (await this.direct(id, parent)) return writeOverlayDiff(diffDir, fd, opts);
    await this.withTree(id, (layer) => this.withTree(parent, (base) => treeDiff(layer!, base, fd, opts)));
  }

  async applyDiff(id: string, _parent: string | undefined, fd: number, opts: ApplyDiffOptions = {}): Promise<ApplyDiffResult> {
    return applyTar(this.existing(id), fd, { whiteouts: 'overlay', idMappings: opts.idMappings });
  }

  async changes(id: string, parent: string | undefined, opts: DiffOptions = {}): Promise<Change[]> {
    const diffDir = this.existing(id);
    if (await this.direct(id, parent)) {
      return this.withTree(parent, async (base) => overlayChanges(diffDir, base));
    }
    return this.withTree(id, (layer) => this.withTree(parent, (base) => treeChanges(layer!, base, opts)));
  }

  async diffSize(id: string, parent: string | undefined, opts: DiffOptions = {}): Promise<number> {
    const diffDir = this.existing(id);
    // the diff dir holds exactly the bodies the direct Diff writes (whiteouts are devices: no size)
    if (await this.direct(id, parent)) return treeDiffSize(diffDir, undefined);
    return this.withTree(id, (layer) => this.withTree(parent, (base) => treeDiffSize(layer!, base, opts)));
  }

  /** Every layer with this one among its lowers: its children and theirs, and copies made from it as a template. */
  async dependents(id: string): Promise<string[]> {
    const link = readText(path.join(this.dir(id), 'link'));
    if (!link) return [];
    const mine = `${LINK_DIR}/${link}`;
    return this.layerIds().filter((other) => other !== id && this.lowers(other).split(':').includes(mine));
  }

  async status(): Promise<Array<[string, string]>> {
    return [
      ['Backing Filesystem', backingFs(this.home)],
      ['Supports d_type', 'true'],
      ['Native Overlay Diff', 'true'],
      ['Using metacopy', String(await this.usingMetacopy().catch(() => false))],
    ];
  }

  /** Unmount every layer this driver left mounted (the store unmounts the ones it counts first). */
  async cleanup(): Promise<void> {
    for (const id of this.layerIds()) if (this.isMounted(id)) await this.unmount(id);
  }
}

