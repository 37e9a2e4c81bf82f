// One JSON file of records (layers.json, images.json, containers.json; docs/on-disk-format.md):
// loaded whole, replaced atomically, looked up as containers/storage looks records up, ids and
// names kept unique within it (one reservation for new layers, images and containers alike).
import { randomBytes } from 'node:crypto';
import { readJsonFile, writeJsonAtomic } from '../atomic.ts';
import { LayersError, type ErrorCode } from '../errors.ts';
import { findExact, findRecord, isIncomplete, normalize, type AnyRecord } from './records.ts';

/** What an id may be: it names files and directories of the store. */
const ID_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

export class RecordTable<T extends AnyRecord> {
  /** this store's records: the ones saved */
  records: T[] = [];
  /** records of additional (read-only) image stores, after ours (docs/sharing.md, "Additional
   *  image stores"): found and listed, never saved; a record of ours with the same id hides one */
  private readOnly: T[] = [];
  private readonly readOnlySet = new WeakSet<T>();

  constructor(
    readonly file: string,
    /** 'layer', 'image', 'container': in messages */
    readonly kind: string,
    private readonly fields: readonly string[],
    private readonly unknownCode: ErrorCode,
    /** the lock of the file: assertWritable() before every write throws unless it is held
     *  exclusively; written() after it records us as the last writer (lib/lock.ts) */
    private readonly lock: { assertWritable(): void; written(): void },
  ) {}

  load(): void {
    this.records = readJsonFile<T[]>(this.file, []);
  }

  /** Replace the file with the records as they are now (awaited before the next step: lib/atomic.ts). */
  async save(): Promise<void> {
    this.lock.assertWritable();
    await writeJsonAtomic(
      this.file,
      this.records.map((r) => normalize(r, this.fields)),
    );
    this.lock.written();
  }

  /** Replace the records of the additional stores (loaded by the caller under their read locks). */
  setReadOnly(records: T[]): void {
    this.readOnly = records;
    for (const r of records) this.readOnlySet.add(r);
  }

  /** Whether rec came from an additional (read-only) store. */
  isReadOnly(rec: T): boolean {
    return this.readOnlySet.has(rec);
  }

  /** Throws EREADONLY for a record of an additional store: called before changing one. */
  assertOwn(rec: T, what = 'changed'): void {
    if (this.isReadOnly(rec))
      throw new LayersError('EREADONLY', `${this.kind} ${rec.id} belongs to an additional (read-only) image store and cannot be ${what}`);
  }

  /** ours, then those of the additional stores whose ids we do not have */
  private all(): T[] {
    if (this.readOnly.length === 0) return this.records;
    const ours = new Set(this.records.map((r) => r.id));
    return [...this.records, ...this.readOnly.filter((r) => !ours.has(r.id))];
  }

  /** records not marked incomplete, in creation order (ours first, then the additional stores') */
  complete(): T[] {
    return this.all().filter((r) => !isIncomplete(r));
  }

  get(id: string): T | undefined {
    return this.records.find((r) => r.id === id) ?? this.readOnly.find((r) => r.id === id);
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
    // ends with the peer's words ("image not known"): scripts written for the peer grep them
    if (!r) throw new LayersError(this.unknownCode, `${role} "${ref}": ${this.kind} not known`);
    return r;
  }

  /**
   * The id and names of a new record of this table, checked before anything is made: the id
   * given (or 64 random hex digits) must be well formed (EUSAGE) and no record's (EIDINUSE), and
   * no other record may have one of the names (ENAMEINUSE). Duplicate names are dropped.
   */
  reserve(id: string | undefined, names: string[] | undefined): { id: string; names: string[] } {
    const newId = id ?? randomBytes(32).toString('hex');
    if (!ID_RE.test(newId)) throw new LayersError('EUSAGE', `bad ${this.kind} id "${newId}": use letters, digits, '.', '_' and '-'`);
    if (this.get(newId)) throw new LayersError('EIDINUSE', `${this.kind} id ${newId} is already in use`);
    const unique = [...new Set(names ?? [])];
    for (const n of unique) {
      const owner = this.records.find((r) => r.names?.includes(n));
      if (owner) throw new LayersError('ENAMEINUSE', `name "${n}" is already in use by ${this.kind} ${owner.id}`);
    }
    return { id: newId, names: unique };
  }

  /** Give rec exactly these names; a name another record has moves to rec (as the peer does). Saves. */
  async takeNames(rec: T, names: string[]): Promise<void> {
    this.assertOwn(rec, 'renamed');
    const wanted = [...new Set(names)];
    for (const other of this.records) if (other !== rec && other.names) other.names = other.names.filter((n) => !wanted.includes(n));
    rec.names = wanted;
    await this.save();
  }

  push(rec: T): void {
    this.records.push(rec);
  }

  drop(rec: T): void {
    this.records = this.records.filter((r) => r !== rec);
  }
}
