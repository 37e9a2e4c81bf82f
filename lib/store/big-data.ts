// Data items ("big data"): named blobs a layer, image or container keeps beside its record, in
// <driver>-<kind>s/<id>/ as containers/storage keeps them (docs/on-disk-format.md). Images and
// containers record each item's size and digest; a layer record has only the names, as the
// peer's has. One set of functions for the three kinds.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { writeFileAtomic } from '../atomic.ts';
import { LayersError } from '../errors.ts';
import { findContainer, tableOf, type Found, type StoreContext } from './context.ts';
import { MANIFEST_KEY_PREFIX } from './images.ts';
import type { AnyRecord, BigDataRecord, ImageRecord } from './records.ts';
import type { RecordTable } from './table.ts';

/** What can hold data items. */
export type DataOwnerKind = Found['kind'];

/** A data item's bytes, with the size and digest the record gives (or the bytes do). */
export interface BigDataItem {
  data: Buffer;
  size: number;
  digest: string;
}

/** The file name of an item: the key when it is the peer's safe alphabet (lower case, digits, '.'), else '=' and its base64. */
function bigDataFileName(key: string): string {
  return /^[a-z0-9.]+$/.test(key) ? key : '=' + Buffer.from(key).toString('base64');
}

function digestOf(data: Buffer): string {
  return 'sha256:' + createHash('sha256').update(data).digest('hex');
}

/** A record that holds data items, and the directory the peer keeps them in: <driver>-<kind>s/<id>/. */
function dataOwner(ctx: StoreContext, kind: DataOwnerKind, ref: string): { record: BigDataRecord; dir: string; table: RecordTable<AnyRecord> } {
  const table = tableOf(ctx, kind);
  const record: BigDataRecord = kind === 'container' ? findContainer(ctx, ref) : table.find(ref);
  const base = { layer: ctx.layersDir, image: ctx.imagesDir, container: ctx.containersDir }[kind];
  return { record, dir: path.join(base, record.id), table };
}

/** The names of the data items of a layer, image or container. */
export function bigDataNames(ctx: StoreContext, kind: DataOwnerKind, ref: string): string[] {
  return [...(dataOwner(ctx, kind, ref).record['big-data-names'] ?? [])];
}

/** A data item, with its size and digest (recorded for images and containers, worked out from the bytes for a layer). */
export function bigData(ctx: StoreContext, kind: DataOwnerKind, ref: string, key: string): BigDataItem {
  const { record, dir } = dataOwner(ctx, kind, ref);
  if (!record['big-data-names']?.includes(key)) throw new LayersError('EBIGDATAUNKNOWN', `data item "${key}" of ${kind} ${record.id} does not exist`);
  const data = fs.readFileSync(path.join(dir, bigDataFileName(key)));
  return { data, size: record['big-data-sizes']?.[key] ?? data.length, digest: record['big-data-digests']?.[key] ?? digestOf(data) };
}

/** Store an item (replacing one of that name): the file first, atomically, then the record. */
export async function setBigData(ctx: StoreContext, kind: DataOwnerKind, ref: string, key: string, data: Buffer): Promise<void> {
  const { record, dir, table } = dataOwner(ctx, kind, ref);
  table.assertOwn(record);
  if (key === '') throw new LayersError('EUSAGE', 'a data item needs a name');
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  await writeFileAtomic(path.join(dir, bigDataFileName(key)), data);
  record['big-data-names'] = [...new Set([...(record['big-data-names'] ?? []), key])];
  if (kind !== 'layer') {
    record['big-data-sizes'] = { ...record['big-data-sizes'], [key]: data.length };
    record['big-data-digests'] = { ...record['big-data-digests'], [key]: digestOf(data) };
  }
  // an image's first manifest gives it its digest when it has none, as the peer's does (images.ts, imageDigests)
  if (kind === 'image' && key.startsWith(MANIFEST_KEY_PREFIX) && !(record as ImageRecord).digest) (record as ImageRecord).digest = digestOf(data);
  await table.save();
}
