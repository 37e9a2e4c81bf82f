// The store's locks: the peer's lock files (docs/sharing.md, "Locks"; lib/lockfile.ts), so that
// `layers` and containers/storage (containers-storage, podman, skopeo, buildah) exclude each other
// and each reloads what the other wrote.
//
//   storage.lock      <root>/storage.lock                         the driver's state (taken for mounts and diffs)
//   layers            <root>/<driver>-layers/layers.lock          layers.json and layer contents
//   mountpoints       <runroot>/<driver>-layers/mountpoints.lock  mountpoints.json
//   images            <root>/<driver>-images/images.lock          images.json
//   containers        <root>/<driver>-containers/containers.lock  containers.json
//
// Every operation takes the locks it needs in the peer's global order (the order of LOCK_ORDER),
// all of them before its work and held until it ends, so no two operations of either tool can
// wait on each other in a cycle. After taking them, the records behind each lock whose last-writer
// token changed since we last held it (modified()) are reloaded; every save touches the lock of
// the file written. A kernel lock dies with its holder, so a SIGKILLed writer frees the store at
// once; what it left half done is repaired by the next writer (repair.ts).
import path from 'node:path';
import { LayersError } from './errors.ts';
import { LockFile } from './lockfile.ts';

/** The store's lock files, in the order the peer takes them (never another). */
export const LOCK_ORDER = ['storage', 'layers', 'mountpoints', 'images', 'containers'] as const;
export type LockName = (typeof LOCK_ORDER)[number];

/** Which locks an operation takes, and how: 'r' shared (readers), 'w' exclusive (writers). */
export type LockPlan = Partial<Record<LockName, 'r' | 'w'>>;

/** Readers of records: shared locks on the four record files. */
export const READ: LockPlan = { layers: 'r', mountpoints: 'r', images: 'r', containers: 'r' };
/** Writers of records: exclusive locks on the four record files. */
export const WRITE: LockPlan = { layers: 'w', mountpoints: 'w', images: 'w', containers: 'w' };
/** Writers that mount or unmount: the peer holds storage.lock through a mount. */
export const MOUNT: LockPlan = { storage: 'w', ...WRITE };
/** Diffs (the driver may mount to compare): storage.lock, then the records shared, as the peer's Diff. */
export const DIFF: LockPlan = { storage: 'w', ...READ };

/** The paths of a store's lock files. */
export function lockPaths(root: string, runroot: string, driverName: string): Record<LockName, string> {
  return {
    storage: path.join(root, 'storage.lock'),
    layers: path.join(root, `${driverName}-layers`, 'layers.lock'),
    mountpoints: path.join(runroot, `${driverName}-layers`, 'mountpoints.lock'),
    images: path.join(root, `${driverName}-images`, 'images.lock'),
    containers: path.join(root, `${driverName}-containers`, 'containers.lock'),
  };
}

/** A lock of an additional (read-only) image store: opened read-only, only ever shared. */
export interface ReadOnlyLock {
  /** what `changed` calls it: '<index>:layers' or '<index>:images' */
  name: string;
  path: string;
}

export class StoreLocks {
  private readonly files: Record<LockName, LockFile>;
  private readonly readOnly: Array<{ name: string; file: LockFile }>;
  /** true until the records were first read, and after an operation failed while writing: the
   *  records in memory may then differ from the files, whatever the tokens say */
  private stale = true;

  /**
   * @param onLocked called once the locks of an operation are taken, before its work, with the
   *   lock names whose records must be read again (changed by someone else, or never read);
   *   `write` says whether the operation holds the record locks exclusively
   * @param readOnly the additional image stores' locks: every operation takes them shared after
   *   ours, in this order, as the peer does
   */
  constructor(
    paths: Record<LockName, string>,
    private readonly onLocked: (changed: Set<string>, write: boolean) => void | Promise<void>,
    readOnly: ReadOnlyLock[] = [],
  ) {
    this.files = Object.fromEntries(LOCK_ORDER.map((n) => [n, LockFile.get(paths[n])])) as Record<LockName, LockFile>;
    this.readOnly = readOnly.map((r) => ({ name: r.name, file: LockFile.get(r.path, { readOnly: true }) }));
  }

  /** Run fn holding the locks of plan (taken in LOCK_ORDER, released in reverse). */
  async with<T>(plan: LockPlan, fn: () => Promise<T> | T): Promise<T> {
    const taken: Array<{ name: string; file: LockFile }> = [];
    const write = plan.layers === 'w';
    try {
      for (const name of LOCK_ORDER) {
        const how = plan[name];
        if (!how) continue;
        if (how === 'w') await this.files[name].lock();
        else await this.files[name].rLock();
        taken.push({ name, file: this.files[name] });
      }
      for (const ro of this.readOnly) {
        await ro.file.rLock();
        taken.push(ro);
      }
      const changed = new Set<string>();
      // modified() on each lock held: it also remembers the token, so it is asked every time
      for (const { name, file } of taken) if (file.modified() || this.stale) changed.add(name);
      await this.onLocked(changed, write);
      this.stale = false;
      return await fn();
    } catch (err) {
      if (write) this.stale = true;
      throw err;
    } finally {
      for (const { file } of taken.reverse()) file.unlock();
    }
  }

  /** Throws unless this process holds the lock of `name` exclusively (every record write checks it). */
  assertWritable(name: LockName): void {
    if (!this.files[name].locked) throw new LayersError('ELOCK', `writing the store without holding its lock ${this.files[name].path} exclusively`);
  }

  /** Record a write of the file `name` protects: a fresh last-writer token, so other holders reload it. */
  written(name: LockName): void {
    this.files[name].touch();
  }

  /** The lock file of `name` (for tests and status). */
  file(name: LockName): LockFile {
    return this.files[name];
  }
}
