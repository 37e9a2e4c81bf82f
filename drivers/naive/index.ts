// The naive differ (docs/architecture.md, "Driver interface"), as containers/storage's
// NaiveDiffDriver: Diff, ApplyDiff, Changes and DiffSize built only on a driver's core, by reading
// the layer's full tree and its parent's and comparing them (compare.ts), or extracting a tar into
// the layer's tree with whiteouts as deletions. A driver implementing only DriverCore extends
// NaiveDiffDriver and gets all four; a driver with a faster path (overlay) overrides them and
// keeps a NaiveDiffer for the cases its fast path cannot take.
import type { IdMappings } from '../../lib/idmap.ts';
import { containerMapper } from '../../lib/idmap.ts';
import { extractTar } from '../../lib/tar/extract.ts';
import { treeItems, nodeItem, writeTar, type TarItem, type WriteTarOptions } from '../../lib/tar/write.ts';
import { inodeKey } from '../../lib/tar/tree.ts';
import { whiteoutEntry } from '../../lib/tar/whiteout.ts';
import type {
  ApplyDiffOptions,
  ApplyDiffResult,
  Change,
  CreateOptions,
  DiffOptions,
  Differ,
  Driver,
  DriverCore,
  DriverName,
  MountOptions,
} from '../driver.ts';
import { compareTrees, type OwnerMappings, type TreeChange } from './compare.ts';

export { compareTrees, type TreeChange };

/** How the naive differ reaches a layer's full tree: the peer's Get ... Put around each operation. */
export interface LayerTrees {
  /** the layer's full tree, to read, for the duration of fn */
  read<T>(id: string, fn: (dir: string) => Promise<T>): Promise<T>;
  /** the layer's full tree, to apply a tar into, for the duration of fn */
  write<T>(id: string, fn: (dir: string) => Promise<T>): Promise<T>;
}

/**
 * Trees through the core's own mount and unmount. Right for a driver whose mount is a lookup
 * (vfs, btrfs); a driver whose mount the store shares (overlay's <id>/merged) passes trees of
 * its own instead, so that a diff never unmounts what the store has mounted.
 */
export function mountedTrees(core: Pick<DriverCore, 'mount' | 'unmount'>): LayerTrees {
  const use = async <T>(id: string, opts: MountOptions, fn: (dir: string) => Promise<T>): Promise<T> => {
    const dir = await core.mount(id, opts);
    try {
      return await fn(dir);
    } finally {
      await core.unmount(id);
    }
  };
  return { read: (id, fn) => use(id, { readOnly: true }, fn), write: (id, fn) => use(id, {}, fn) };
}

export interface NaiveApplyOptions {
  /** owners the process cannot give (outside its user namespace) are left as created (the driver's ignore_chown_errors) */
  ignoreChownErrors?: boolean;
}

/** Diff, ApplyDiff, Changes and DiffSize on full trees. */
export class NaiveDiffer implements Differ {
  constructor(
    private readonly trees: LayerTrees,
    private readonly applyOpts: NaiveApplyOptions = {},
  ) {}

  /** fn on the layer's tree and its parent's (undefined: no parent) */
  private both<T>(id: string, parent: string | undefined, fn: (layer: string, base: string | undefined) => Promise<T>): Promise<T> {
    return this.trees.read(id, (layer) => (parent === undefined ? fn(layer, undefined) : this.trees.read(parent, (base) => fn(layer, base))));
  }

  diff(id: string, parent: string | undefined, fd: number, opts: DiffOptions = {}): Promise<void> {
    return this.both(id, parent, (layer, base) => treeDiff(layer, base, fd, opts));
  }

  /** Returns the whole ExtractResult (digest, tar size, owners), which the store records. */
  applyDiff(id: string, _parent: string | undefined, fd: number, opts: ApplyDiffOptions = {}): Promise<ApplyDiffResult> {
    return this.trees.write(id, (dir) => extractTar(fd, dir, { whiteouts: 'delete', idMappings: opts.idMappings, signal: opts.signal, onProgress: opts.onProgress, section: opts.section, tarSplitFd: opts.tarSplitFd, ...this.applyOpts }));
  }

  changes(id: string, parent: string | undefined, opts: DiffOptions = {}): Promise<Change[]> {
    return this.both(id, parent, (layer, base) => treeChanges(layer, base, opts));
  }

  diffSize(id: string, parent: string | undefined, opts: DiffOptions = {}): Promise<number> {
    return this.both(id, parent, (layer, base) => treeDiffSize(layer, base, opts));
  }
}

/**
 * A driver from its core alone (the peer's NewNaiveDiffDriver): subclasses implement DriverCore,
 * the four diff operations run the naive differ on the subclass's own mount and unmount.
 */
export abstract class NaiveDiffDriver implements Driver {
  abstract readonly name: DriverName;
  abstract readonly home: string;
  abstract readonly layerOptions: readonly string[];
  abstract readonly options: Readonly<Record<string, string>>;
  abstract layerDir(id: string): string;
  abstract create(id: string, parent: string | undefined, opts?: CreateOptions): Promise<void>;
  abstract createFromTemplate(id: string, template: string, opts?: CreateOptions): Promise<void>;
  abstract updateIdMappings(id: string, from: IdMappings | undefined, to: IdMappings | undefined): Promise<void>;
  abstract remove(id: string): Promise<void>;
  abstract exists(id: string): Promise<boolean>;
  abstract mount(id: string, opts?: MountOptions): Promise<string>;
  abstract unmount(id: string): Promise<void>;
  abstract status(): Promise<Array<[string, string]>>;
  abstract cleanup(): Promise<void>;

  /** what ApplyDiff passes to the tar engine beyond the tar (a subclass's ignore_chown_errors) */
  protected applyOptions(): NaiveApplyOptions {
    return {};
  }

  /** where the differ reads and writes a layer's full tree: its mount (a subclass may name another) */
  protected trees(): LayerTrees {
    return mountedTrees(this);
  }

  private differ?: NaiveDiffer;
  private get naive(): NaiveDiffer {
    return (this.differ ??= new NaiveDiffer(this.trees(), this.applyOptions()));
  }

  diff(id: string, parent: string | undefined, fd: number, opts?: DiffOptions): Promise<void> {
    return this.naive.diff(id, parent, fd, opts);
  }

  applyDiff(id: string, parent: string | undefined, fd: number, opts?: ApplyDiffOptions): Promise<ApplyDiffResult> {
    return this.naive.applyDiff(id, parent, fd, opts);
  }

  changes(id: string, parent: string | undefined, opts?: DiffOptions): Promise<Change[]> {
    return this.naive.changes(id, parent, opts);
  }

  diffSize(id: string, parent: string | undefined, opts?: DiffOptions): Promise<number> {
    return this.naive.diffSize(id, parent, opts);
  }
}

// ---- the operations on two directories, which the differ runs on the trees it gets ----

/** Tar items for the changes of layerDir against parentDir: deletions become AUFS whiteouts. */
export function* diffItems(layerDir: string, parentDir: string | undefined, opts: DiffOptions = {}): Generator<TarItem> {
  const mapOwner = containerMapper(opts.idMappings);
  if (!parentDir) return yield* treeItems(layerDir, mapOwner);
  const seen = new Map<string, string>();
  for (const c of compareTrees(layerDir, parentDir, ownerMappings(opts))) {
    if (c.kind === 'Delete') {
      // a fixed time, not "now": the same two trees always give the same tar
      yield { entry: whiteoutEntry(c.rel, { mode: 0o644, uid: 0, gid: 0, mtime: { sec: 0, nsec: 0 } }) };
      continue;
    }
    const item = nodeItem(c.node!, seen, mapOwner);
    if (item) yield item;
  }
}

/** Write the changes of layerDir against parentDir (undefined: everything) as a tar to fd. */
export async function treeDiff(
  layerDir: string,
  parentDir: string | undefined,
  fd: number,
  opts: DiffOptions & WriteTarOptions = {},
): Promise<void> {
  await writeTar(layerDir, diffItems(layerDir, parentDir, opts), fd, opts);
}

/** The two trees' mappings as the comparison takes them. */
function ownerMappings(opts: DiffOptions): OwnerMappings {
  return { layer: opts.idMappings, parent: opts.parentIdMappings };
}

/** The change list, sorted by path as the peer prints it. */
export async function treeChanges(layerDir: string, parentDir: string | undefined, opts: DiffOptions = {}): Promise<Change[]> {
  const out: Change[] = [];
  for (const c of compareTrees(layerDir, parentDir, ownerMappings(opts))) out.push({ path: '/' + c.rel, kind: c.kind });
  return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/** The apparent size (st_size, holes included) of every added or changed name but directories,
 *  each inode once: the peer's archive.ChangesSize, which counts a symlink as its target's length. */
export async function treeDiffSize(layerDir: string, parentDir: string | undefined, opts: DiffOptions = {}): Promise<number> {
  const seen = new Set<string>();
  let size = 0;
  for (const c of compareTrees(layerDir, parentDir, ownerMappings(opts))) {
    const st = c.node?.st;
    if (!st || st.isDirectory()) continue;
    const key = inodeKey(st);
    if (seen.has(key)) continue;
    seen.add(key);
    size += Number(st.size);
  }
  return size;
}
