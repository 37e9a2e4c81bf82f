// The graph driver interface (docs/architecture.md, "Driver interface"). A driver owns file trees: how a layer is laid
// out, created, mounted, copied and diffed. It knows nothing of images or containers.
import type { IdMappings } from '../lib/idmap.ts';

export interface CreateOptions {
  readWrite?: boolean;
  /** the mappings the layer's root directory owner follows (root dir owned by container root) */
  idMappings?: IdMappings;
  mountLabel?: string;
  /** driver-specific options (--storage-opt for this layer), e.g. size= */
  storageOpt?: Record<string, string>;
}

export interface MountOptions {
  readOnly?: boolean;
  mountLabel?: string;
  options?: string[];
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
}

export interface ApplyDiffResult {
  /** bytes of file bodies written into the layer */
  size: number;
  /** bytes of uncompressed tar read, and its 'sha256:<hex>' (the layer's diff-size and diff-digest) */
  tarSize: number;
  digest: string;
  /** distinct owners written (host ids), sorted */
  uids: number[];
  gids: number[];
}

export interface DiffOptions {
  /** host -> container mappings applied to owners while writing */
  idMappings?: IdMappings;
  /**
   * the mappings of the layer compared with (default: idMappings): owners compare in container
   * ids, so a layer shifted from its parent's mappings does not differ from it by owner alone
   */
  parentIdMappings?: IdMappings;
  /** Diff only: files with holes become sparse entries (WriteTarOptions.sparse) */
  sparse?: boolean;
}

export interface DriverStatus {
  [key: string]: string;
}

export interface Driver {
  readonly name: 'overlay' | 'btrfs' | 'vfs';
  /** the driver's home, <root>/<name> */
  readonly home: string;
  /** the keys CreateOptions.storageOpt may hold for this driver (btrfs: size); the store refuses others */
  readonly layerOptions: readonly string[];
  create(id: string, parent: string | undefined, opts?: CreateOptions): Promise<void>;
  createFromTemplate(
    id: string,
    template: string,
    templateMappings: IdMappings | undefined,
    parent: string | undefined,
    parentMappings: IdMappings | undefined,
    opts?: CreateOptions,
  ): Promise<void>;
  /** shift every owner in the layer's tree from one mapping to another */
  updateIdMappings(id: string, from: IdMappings | undefined, to: IdMappings | undefined): Promise<void>;
  remove(id: string): Promise<void>;
  exists(id: string): Promise<boolean>;
  /** mount (or for vfs/btrfs: return the directory of) the layer; the store keeps the refcount */
  mount(id: string, opts?: MountOptions): Promise<string>;
  unmount(id: string): Promise<void>;
  /** write the layer's changes against parent as an uncompressed tar to fd */
  diff(id: string, parent: string | undefined, fd: number, opts?: DiffOptions): Promise<void>;
  applyDiff(id: string, parent: string | undefined, fd: number, opts?: ApplyDiffOptions): Promise<ApplyDiffResult>;
  changes(id: string, parent: string | undefined, opts?: DiffOptions): Promise<Change[]>;
  diffSize(id: string, parent: string | undefined, opts?: DiffOptions): Promise<number>;
  /**
   * Layers whose files stand on this one though their records may name another parent: a
   * driver whose CreateFromTemplate keeps the template underneath (overlay) reports the copies,
   * so the store never removes a template before them. Absent: there are none.
   */
  dependents?(id: string): Promise<string[]>;
  status(): Promise<Array<[string, string]>>;
  cleanup(): Promise<void>;
}
