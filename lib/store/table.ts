// One JSON file of records (layers.json, images.json, containers.json): loaded whole, replaced
// atomically, looked up as containers/storage looks records up, names kept unique within it.
import { readJsonFile, writeJsonAtomic } from '../atomic.ts';
import { LayersError, type ErrorCode } from '../errors.ts';
import { findExact, findRecord, isIncomplete, normalize, type AnyRecord } from './records.ts';

export class RecordTable<T extends AnyRecord> {
  records: T[] = [];

  constructor(
    readonly file: string,
    /** 'layer', 'image', 'container': in messages */
    readonly kind: string,
    private readonly fields: readonly string[],
    private readonly unknownCode: ErrorCode,
    /** called before every write: throws unless the store lock is held */
    private readonly assertHeld: () => void,
  ) {}

  load(): void {
    this.records = readJsonFile<T[]>(this.file, []);
  }

  save(): void {
    this.assertHeld();
    writeJsonAtomic(
      this.file,
      this.records.map((r) => normalize(r, this.fields)),
    );
  }

  /** records not marked incomplete, in creation order */
  complete(): T[] {
    return this.records.filter((r) => !isIncomplete(r));
  }

  get(id: string): T | undefined {
    return this.records.find((r) => r.id === id);
  }

  /** a complete record by exact id or name only */
  exact(ref: string): T | undefined {
    return findExact(this.complete(), ref);
  }

  /** a complete record by id, name or unambiguous id prefix */
  lookup(ref: string): T | undefined {
    return findRecord(this.complete(), ref);
  }

  find(ref: string, role = this.kind): T {
    const r = this.lookup(ref);
    if (!r) throw new LayersError(this.unknownCode, `${role} "${ref}" not known`);
    return r;
  }

  /** throws when a name is taken by another record of this table */
  checkNames(names: string[], except?: T): void {
    for (const n of names) {
      const owner = this.records.find((r) => r !== except && r.names?.includes(n));
      if (owner) throw new LayersError('ENAMEINUSE', `name "${n}" is already in use by ${this.kind} ${owner.id}`);
    }
  }

  /** Give rec exactly these names; a name another record has moves to rec (as the peer does). Saves. */
  takeNames(rec: T, names: string[]): void {
    const wanted = [...new Set(names)];
    for (const other of this.records) if (other !== rec && other.names) other.names = other.names.filter((n) => !wanted.includes(n));
    rec.names = wanted;
    this.save();
  }

  push(rec: T): void {
    this.records.push(rec);
  }

  drop(rec: T): void {
    this.records = this.records.filter((r) => r !== rec);
  }
}
