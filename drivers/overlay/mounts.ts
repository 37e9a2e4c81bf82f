// The mount stack of the overlay driver: which dirs a layer's mount stacks (its diff on its own
// rotated uppers, then each ancestor's l/ path with that ancestor's rotated uppers), the mount data
// and flags, and mounting and unmounting. No refcount here: the store counts the users of
// <id>/merged; the private read-only views the diffs use are mounted and unmounted per call.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { LayersError, wrapError } from '../../lib/errors.ts';
import { composeMappings, mountIdmapped, type IdMappings } from '../../lib/idmap.ts';
import { native } from '../../lib/native.ts';
import type { MountOptions } from '../driver.ts';
import type { LinkNames } from './links.ts';

/**
 * <id>/idmap: the layer's mappings (JSON {uidmap, gidmap}), written when it is created idmapped,
 * for a driver used without the store's records (which say every layer's mappings): its own dirs
 * (diff, rotated uppers) hold host ids through them, and every mount of it shows each lower in
 * them, through an idmapped view of the home where the lower's own layer holds other ids
 * (docs/images-and-containers.md, "Idmapped mounts").
 * <id>/mapped/<n> is where the views are attached while the overlay is mounted, as the peer's.
 */
export const IDMAP_FILE = 'idmap';
const MAPPED_DIR = 'mapped';

/** The kernel copies at most one page of mount data; with a 64-char id, 128 short lowers need ~3.9 KiB. */
const MOUNT_DATA_LIMIT = 4096 - 1;

/**
 * mount(8)'s flag words (<linux/mount.h> values, the same on every Linux architecture): an option
 * that is one of these becomes a mount flag, as the peer's mount.ParseOptions makes it, not
 * overlay mount data (which the kernel would refuse). [bits set, bits cleared]
 */
const MOUNT_FLAG_WORDS: Record<string, [number, number]> = {
  ro: [0x1, 0],
  rw: [0, 0x1],
  nosuid: [0x2, 0],
  suid: [0, 0x2],
  nodev: [0x4, 0],
  dev: [0, 0x4],
  noexec: [0x8, 0],
  exec: [0, 0x8],
  sync: [0x10, 0],
  async: [0, 0x10],
  noatime: [0x400, 0],
  atime: [0, 0x400],
  nodiratime: [0x800, 0],
  diratime: [0, 0x800],
  relatime: [0x200000, 0],
  strictatime: [0x1000000, 0],
};

/** Mount options split as mount(2) takes them: flag words to flags, the rest to data. */
export function splitMountOptions(options: readonly string[]): { flags: number; data: string[] } {
  let flags = 0;
  const data: string[] = [];
  for (const o of options) {
    const word = MOUNT_FLAG_WORDS[o];
    if (word) flags = (flags | word[0]) & ~word[1];
    else data.push(o);
  }
  return { flags, data };
}

export class MountStack {
  /**
   * @param metacopy whether the kernel copies up metadata only (asked when a mount wants it)
   * @param extra overlay.mountopt: options added to every mount
   */
  constructor(
    private readonly names: LinkNames,
    private readonly metacopy: () => Promise<boolean>,
    private readonly extra: readonly string[],
  ) {}

  /** ours, or an additional store's (links.ts) */
  private dir(id: string): string {
    return this.names.dirOf(id);
  }

  /** The layer's rotated uppers, newest first: 'diff1', 'diff2', ... */
  rotatedUppers(id: string): string[] {
    const out: string[] = [];
    for (let n = 1; fs.existsSync(path.join(this.dir(id), `diff${n}`)); n++) out.push(`diff${n}`);
    return out;
  }

  /**
   * The lower dirs of a mount of the layer, top first, relative to the home (absolute for a
   * layer of an additional store, links.ts): its own rotated
   * uppers, then each ancestor's l/ path followed by that ancestor's rotated uppers, named through
   * the link as the peer names them ('l/X/../diff1': the kernel resolves '..' after the symlink).
   * `rotated`: some layer of the stack has been id-shifted, so metacopy files may be in it.
   */
  stack(id: string, lowers: string): { dirs: string[]; rotated: boolean; mappings: Array<IdMappings | undefined> } {
    const dirs = this.rotatedUppers(id).map((r) => `${this.names.mountPath(id)}/${r}`);
    let rotated = dirs.length > 0;
    // the ids each dir holds: its layer's mappings (IDMAP_FILE); everything below a shifted layer
    // (one with rotated uppers) counts as in that layer's, since its copies hide all of it
    let shifted: IdMappings | undefined = rotated ? this.idmap(id) : undefined;
    const mappings: Array<IdMappings | undefined> = dirs.map(() => this.idmap(id));
    for (const l of lowers ? lowers.split(':') : []) {
      // not a link of this home's form: a lower without rotated uppers, its ids unknown
      const owner = this.names.layerOfLink(l);
      const own = rotated ? shifted : owner === undefined ? undefined : this.idmap(owner);
      dirs.push(l);
      mappings.push(own);
      if (owner === undefined) continue;
      for (const r of this.rotatedUppers(owner)) {
        dirs.push(`${l}/../${r}`);
        mappings.push(own);
        if (!rotated) [rotated, shifted] = [true, own];
      }
    }
    return { dirs, rotated, mappings };
  }

  /** the store's answer to which mappings a layer has (its record); without it, IDMAP_FILE */
  layerMappings: ((id: string) => IdMappings | undefined) | undefined;

  /** the layer's mappings: the ids its own dirs hold (undefined: none) */
  idmap(id: string): IdMappings | undefined {
    const known = this.layerMappings?.(id);
    if (known) return known;
    try {
      return JSON.parse(fs.readFileSync(path.join(this.dir(id), IDMAP_FILE), 'utf8')) as IdMappings;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw wrapError(`overlay: reading the id mappings of layer ${id}`, err);
    }
  }

  /** merged is a mount point when it sits on another device than the layer's directory */
  isMounted(id: string): boolean {
    try {
      return fs.statSync(path.join(this.dir(id), 'merged')).dev !== fs.statSync(this.dir(id)).dev;
    } catch {
      return false;
    }
  }

  /** <id>/merged, once (the store counts the users) */
  async mount(id: string, opts: MountOptions = {}): Promise<string> {
    const merged = path.join(this.dir(id), 'merged');
    if (this.isMounted(id)) return merged;
    fs.mkdirSync(merged, { recursive: true, mode: 0o700 });
    await this.mountAt(id, merged, opts);
    return merged;
  }

  async unmount(id: string): Promise<void> {
    if (!this.isMounted(id)) return;
    const target = path.join(this.dir(id), 'merged');
    const f = native().mountFlags;
    try {
      native().umount2(target, f.UMOUNT_NOFOLLOW);
    } catch (err) {
      // busy (an open file, a process's cwd): detach now, the kernel finishes when it is released
      if ((err as NodeJS.ErrnoException).code !== 'EBUSY') throw err;
      native().umount2(target, f.UMOUNT_NOFOLLOW | f.MNT_DETACH);
    }
  }

  /**
   * Run fn on the full tree of a layer without touching <id>/merged, which the store may have
   * mounted read-write: a base layer's tree is its diff dir, any other (or a shifted base layer)
   * gets a read-only overlay mount of its own in a temp dir, unmounted afterwards.
   */
  async view<T>(id: string, fn: (dir: string) => Promise<T>): Promise<T> {
    if (!this.names.lowers(id) && this.rotatedUppers(id).length === 0) return fn(path.join(this.dir(id), 'diff'));
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

  /**
   * Mount options of the layer's mounts beyond the caller's: `metacopy=on` wherever a shifted
   * layer is in the stack (the kernel refuses to follow a metacopy file without it), and only
   * there, since it implies redirect_dir=on, whose renamed directories the direct Diff cannot
   * write. A `metacopy=on` the kernel does not have is dropped, as the peer drops it.
   */
  private async mountOptions(rotated: boolean, asked: string[]): Promise<string[]> {
    const wants = asked.includes('metacopy=on') || (rotated && !asked.some((o) => o.startsWith('metacopy=')));
    const out = asked.filter((o) => o !== 'metacopy=on');
    if (wants && (await this.metacopy())) out.push('metacopy=on');
    return out;
  }

  /**
   * Mount the layer's stack at target: read-only (diff as the top lower) or with diff as the upper.
   * Each lower is shown in `viewAs` (the layer's own mappings unless given; the shift asks for its
   * parent's): where a lower's layer holds other ids, through an idmapped view of the home.
   */
  async mountAt(id: string, target: string, opts: MountOptions = {}, viewAs: IdMappings | undefined = this.idmap(id)): Promise<void> {
    const lowers = this.names.checkedLowers(id);
    const stack = this.stack(id, lowers);
    const { rotated } = stack;
    const self = this.names.mountPath(id);
    // the idmapped views the lowers need, one per distinct mapping: <id>/mapped/<n>
    const views: IdMappings[] = [];
    const viewOf = new Map<string, number>();
    const shown = stack.dirs.map((_, i) => composeMappings(stack.mappings[i], viewAs));
    for (const [i, m] of shown.entries()) {
      if (m === undefined) continue;
      // the view covers our home only: another store's lower holding other ids cannot be shown
      if (path.isAbsolute(stack.dirs[i])) throw new LayersError('EDRIVER', `overlay: cannot mount layer ${id}: its lower ${stack.dirs[i]} (of an additional image store) holds other ids than the layer shows, and idmapped views cover ${this.names.home} only`);
      const key = JSON.stringify(m);
      if (!viewOf.has(key)) viewOf.set(key, views.push(m) - 1);
    }
    const mappedDir = path.join(this.dir(id), MAPPED_DIR);
    // with views the mount's cwd is <id>/mapped: a view's lower is named '<n>/l/X', a plain one '../../l/X'
    const named = (dir: string, m: IdMappings | undefined) =>
      m !== undefined ? `${viewOf.get(JSON.stringify(m))}/${dir}` : views.length && !path.isAbsolute(dir) ? `../../${dir}` : dir;
    const below = stack.dirs.length ? stack.dirs.map((dir, i) => named(dir, shown[i])).join(':') : named(`${self}/empty`, undefined);
    const data: string[] = [];
    // the layer's own diff and work are never idmapped (an idmapped upper is refused: overlayfs
    // makes its work files as the mounter, whom the mapping need not hold), as the peer mounts them
    const own = views.length ? this.dir(id) : self;
    if (opts.readOnly) {
      data.push(`lowerdir=${own}/diff:${below}`);
    } else {
      fs.mkdirSync(path.join(this.dir(id), 'work'), { recursive: true, mode: 0o700 });
      data.push(`lowerdir=${below}`, `upperdir=${own}/diff`, `workdir=${own}/work`);
    }
    const asked = splitMountOptions([...this.extra, ...(opts.options ?? [])]);
    if (opts.readOnly) asked.flags |= native().mountFlags.MS_RDONLY;
    else if (opts.volatile) {
      // a volatile mount leaves work/work/incompat/volatile behind, and the kernel refuses that
      // workdir until it is gone: removed before each mount, as the peer does
      fs.rmSync(path.join(this.dir(id), 'work', 'work', 'incompat'), { recursive: true, force: true });
      asked.data.push('volatile');
    }
    data.push(...(await this.mountOptions(rotated, asked.data)));
    const text = data.join(',');
    const bytes = Buffer.byteLength(text);
    if (bytes > MOUNT_DATA_LIMIT) {
      const n = lowers ? lowers.split(':').length : 0;
      throw new LayersError(
        'EDRIVER',
        `overlay: cannot mount layer ${id}: its mount data is ${bytes} bytes for ${n} lower layers, over the kernel's limit of one page (${MOUNT_DATA_LIMIT} bytes)`,
      );
    }
    // from here to the end nothing awaits: no other mount of this process uses <id>/mapped meanwhile
    const attached: string[] = [];
    const cwd = process.cwd();
    try {
      for (const [n, m] of views.entries()) {
        const at = path.join(mappedDir, String(n));
        fs.mkdirSync(at, { recursive: true, mode: 0o700 });
        try {
          mountIdmapped(this.names.home, at, m);
        } catch (err) {
          throw wrapError(`overlay: an idmapped mount of ${this.names.home} for the lowers of layer ${id}`, err);
        }
        attached.push(at);
      }
      // relative lower paths are resolved against the cwd at mount(2); nothing else runs in between
      process.chdir(views.length ? mappedDir : this.names.home);
      try {
        native().mount('overlay', target, 'overlay', asked.flags, text);
      } catch (err) {
        throw wrapError(`overlay: mounting layer ${id} at ${target}`, err);
      }
    } finally {
      process.chdir(cwd);
      // overlayfs holds its own references to its lowers: the idmapped views can go at once
      for (const at of attached) native().umount2(at, native().mountFlags.MNT_DETACH);
    }
  }

  /** Record the layer's mappings (see IDMAP_FILE). */
  recordIdmap(id: string, m: IdMappings): void {
    fs.writeFileSync(path.join(this.dir(id), IDMAP_FILE), JSON.stringify({ uidmap: m.uidmap, gidmap: m.gidmap }));
  }
}
