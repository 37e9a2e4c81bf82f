// Mount refcounts in <runroot>/<driver>-layers/mountpoints.json, as containers/storage keeps
// them: [{id, path, count}]. They live in the run root so a reboot (tmpfs /run) forgets them
// along with the mounts themselves.
import path from 'node:path';
import { readJsonFile, writeJsonAtomic } from '../atomic.ts';

export interface MountRecord {
  id: string;
  path: string;
  count: number;
}

export class MountRecords {
  readonly file: string;
  private records: MountRecord[] = [];

  constructor(dir: string) {
    this.file = path.join(dir, 'mountpoints.json');
  }

  load(): void {
    this.records = readJsonFile<MountRecord[]>(this.file, []).filter((m) => m.count > 0);
  }

  save(): Promise<void> {
    return writeJsonAtomic(this.file, this.records);
  }

  get(id: string): MountRecord | undefined {
    return this.records.find((m) => m.id === id);
  }

  count(id: string): number {
    return this.get(id)?.count ?? 0;
  }

  all(): MountRecord[] {
    return [...this.records];
  }

  /** one more user of the mount at mountPath; returns the new count */
  add(id: string, mountPath: string): number {
    const m = this.get(id);
    if (m) {
      m.path = mountPath;
      return ++m.count;
    }
    this.records.push({ id, path: mountPath, count: 1 });
    return 1;
  }

  /** one user less (all of them when force); returns the remaining count */
  release(id: string, force = false): number {
    const m = this.get(id);
    if (!m) return 0;
    m.count = force ? 0 : m.count - 1;
    if (m.count <= 0) this.drop(id);
    return Math.max(m.count, 0);
  }

  drop(id: string): void {
    this.records = this.records.filter((m) => m.id !== id);
  }
}
