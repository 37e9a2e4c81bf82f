// The graph driver interface (docs/architecture.md, "Driver interface"). A driver owns file trees: how a layer is laid
// out, created, mounted, copied and diffed. It knows nothing of images or containers.
//
// In two parts, as containers/storage splits ProtoDriver from its NaiveDiffDriver: DriverCore is what
// every driver implements; Differ (Diff, ApplyDiff, Changes, DiffSize) comes for free from the naive
// differ (drivers/naive), built only on the core's trees, and a driver with a faster path overrides it.
import type { IdMappings } from '../lib/idmap.ts';

export interface CreateOptions {
  /** the mappings the layer's root directory owner follows (root dir owned by container root) */
  idMappings?: IdMappings;
  /** driver-specific options (--storage-opt for this layer), e.g. size= */
  storageOpt?: Record<string, string>;
  /**
   * what the layer inherits from its parent stays in the parent's ids and every mount of the
   * layer shows it through idmapped mounts with idMappings (docs/images-and-containers.md,
   * "Idmapped mounts"): the store then makes no shifted copy; only for a driver whose
   * idmappedMounts() says yes, on a parent without mappings unless it says `anyParent`
   */
  idmapped?: boolean;
}

export interface MountOptions {
  readOnly?: boolean;
  /** mount options beyond the driver's own (overlay: added to the mount data) */
  options?: string[];
  /** a volatile container's layer (the peer's MountOpts.Volatile): overlay mounts it with
   *  `volatile` (no syncs); the other drivers ignore it, as the peer's do */
  volatile?: boolean;
}

export type ChangeKind = 'Modify' | 'Add' | 'Delete';
export interface Change {
  /** absolute path inside the layer, '/etc/passwd' */
  path: string;
  kind: ChangeKind;
}

export interface ApplyDiffOptions {
  /** container -> host mappings applied to owners while extracting */
  idMappings?: IdMappings;
  /** stops the extraction between entries (lib/tar/extract.ts, ExtractOptions) */
  signal?: AbortSignal;
  /** tar bytes scanned and entries done, as the extraction goes */
  onProgress?: (tarBytes: number, entries: number) => void;
  /** apply only the entries under this name prefix of the stream, the prefix removed (lib/tar/sections.ts) */
  section?: string;
  /** write the tar's tar-split record here as it is read (lib/tar/extract.ts, ExtractOptions) */
  tarSplitFd?: number;
}

export interface ApplyDiffResult {
  /** bytes of file bodies written into the layer */
  size: number;
  /** bytes of uncompressed tar read, and its 'sha256:<hex>' (the layer's diff-size and diff-digest) */
  tarSize: number;
  digest: string;
  /** true when the tar's tar-split record is whole in opts.tarSplitFd (lib/tar/extract.ts) */
  tarSplit?: boolean;
  /** distinct owners written (host ids), sorted */
  uids: number[];
  gids: number[];
  /** tar entries extracted */
  entries?: number;
}

export interface DiffOptions {
  /** host -> container mappings applied to owners while writing */
  idMappings?: IdMappings;
  /**
   * the mappings of the layer compared with (default: idMappings): owners compare in container
   * ids, so a layer shifted from its parent's mappings does not differ from it by owner alone
   */
  parentIdMappings?: IdMappings;
  /** Diff only: which files with holes become sparse entries (WriteTarOptions.sparse: unset, those mostly holes) */
  sparse?: boolean;
}

export type DriverName = 'overlay' | 'btrfs' | 'vfs';

/** What every driver implements (the peer's ProtoDriver). */
export interface DriverCore {
  readonly name: DriverName;
  /** the driver's home, <root>/<name> */
  readonly home: string;
  /** the keys CreateOptions.storageOpt may hold for this driver (btrfs: size); the store refuses others */
  readonly layerOptions: readonly string[];
  /** the driver's global options (--storage-opt), as parsed when it was opened */
  readonly options: Readonly<Record<string, string>>;
  /**
   * The directory holding the files the layer's own diff was applied into (vfs: dir/<id>, btrfs:
   * subvolumes/<id>, overlay: <id>/diff): the root the names of its tar-split record stand under.
   */
  layerDir(id: string): string;
  create(id: string, parent: string | undefined, opts?: CreateOptions): Promise<void>;
  /** a new layer with the template's files (the store shifts its owners afterwards with updateIdMappings) */
  createFromTemplate(id: string, template: string, opts?: CreateOptions): Promise<void>;
  /** shift every owner in the layer's tree from one mapping to another */
  updateIdMappings(id: string, from: IdMappings | undefined, to: IdMappings | undefined): Promise<void>;
  remove(id: string): Promise<void>;
  exists(id: string): Promise<boolean>;
  /** mount (or for vfs/btrfs: return the directory of) the layer; the store keeps the refcount */
  mount(id: string, opts?: MountOptions): Promise<string>;
  unmount(id: string): Promise<void>;
  /**
   * Layers whose files stand on this one though their records may name another parent: a
   * driver whose CreateFromTemplate keeps the template underneath (overlay) reports the copies,
   * so the store never removes a template before them. Absent: there are none.
   */
  dependents?(id: string): Promise<string[]>;
  /**
   * Whether layers can be created with CreateOptions.idmapped here (kernel and backing
   * filesystem probed, cached under the run root), and why. Absent: never. `anyParent`: also
   * on a parent with mappings (overlay: each lower is shown through a view of its own).
   */
  idmappedMounts?(): Promise<{ supported: boolean; why: string; anyParent?: boolean }>;
  /**
   * The store tells the driver where each layer's mappings are (its record): a driver that shows
   * lowers of other layers through idmapped views (overlay) asks it which ids a lower holds.
   */
  useLayerMappings?(lookup: (id: string) => IdMappings | undefined): void;
  status(): Promise<Array<[string, string]>>;
  cleanup(): Promise<void>;
}

/** The four diff operations (the peer's DiffDriver): drivers/naive gives them to any core. */
export interface Differ {
  /** write the layer's changes against parent as an uncompressed tar to fd */
  diff(id: string, parent: string | undefined, fd: number, opts?: DiffOptions): Promise<void>;
  applyDiff(id: string, parent: string | undefined, fd: number, opts?: ApplyDiffOptions): Promise<ApplyDiffResult>;
  changes(id: string, parent: string | undefined, opts?: DiffOptions): Promise<Change[]>;
  diffSize(id: string, parent: string | undefined, opts?: DiffOptions): Promise<number>;
}

export interface Driver extends DriverCore, Differ {}

/** The `layers status` line of a driver's answer to idmappedMounts(): which path a container with new mappings takes, and why. */
export function idmapPath(answer: { supported: boolean; why: string }): string {
  return answer.supported ? `idmapped mounts (${answer.why})` : `mapped top layers (${answer.why})`;
}
