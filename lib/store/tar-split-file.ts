// A layer's tar-split record, <driver>-layers/<id>.tar-split.gz (docs/tar-engine.md, "tar-split
// records"; docs/on-disk-format.md): made while its diff is applied, used by diff to give back
// the exact tar, removed with the layer (removeLayer).
import fs from 'node:fs';
import path from 'node:path';
import { AtomicFile } from '../atomic.ts';
import { TarError } from '../tar/errors.ts';
import { TarSplitWriter, assembleTar, disassembleTar, type AssembleResult } from '../tar/tar-split.ts';
import type { StoreContext } from './context.ts';

export function tarSplitPath(ctx: StoreContext, id: string): string {
  return path.join(ctx.layersDir, `${id}.tar-split.gz`);
}

/**
 * Run `apply` (the driver's ApplyDiff of the tar in tarFd, a regular file) and write the layer's
 * record (`file`, tarSplitPath). The record comes with the apply's result, made natively in the
 * read that hashes the tar (lib/tar/extract.ts, native/tar-split.cc), written to the record's
 * temp file as it is made (memory stays flat): no second walk. Only a
 * tar that walk declines (sparse members, a name twice, a tar cut short, member types it leaves
 * alone) is read again here by disassembleTar, the JS reference, which makes the record or finds
 * that the peer's format cannot hold it. The old record goes first (the layer is incomplete
 * meanwhile; a record describes one applied tar); the new one is renamed into place only when
 * both succeed, before the caller marks the layer complete. A tar the peer's format cannot hold
 * gets no record: diff then takes the driver's way, as the peer does for a layer without one.
 */
export async function applyRecording<T extends { tarSplit?: boolean }>(file: string, tarFd: number, apply: (recordFd: number) => Promise<T>): Promise<{ result: T; recorded: boolean }> {
  fs.rmSync(file, { force: true });
  const record = await AtomicFile.create(file);
  let result: T;
  try {
    result = await apply(record.fd);
  } catch (err) {
    await record.abort();
    throw err;
  }
  if (result.tarSplit) {
    delete result.tarSplit; // the caller keeps the result; the record is written
    await record.commit();
    return { result, recorded: true };
  }
  await record.abort();
  const writer = await TarSplitWriter.create(file);
  try {
    await disassembleTar(tarFd, writer);
  } catch (err) {
    await writer.abort();
    // the extractor took this tar: what the record's format cannot hold is no reason to refuse it
    if (err instanceof TarError) return { result, recorded: false };
    throw err;
  }
  await writer.commit();
  return { result, recorded: true };
}

/** The layer's record, when it has one. */
export function layerTarSplit(ctx: StoreContext, id: string): string | undefined {
  const file = tarSplitPath(ctx, id);
  return fs.existsSync(file) ? file : undefined;
}

/**
 * Write the tar the layer was applied from to fd, from its record and its files. Bodies whose
 * inode changed after the record was written (ctime later than the record's mtime) are checked
 * against the record's CRC-64 as well; any file that is not what the record says fails with
 * ELAYERCHANGED naming it.
 */
export async function assembleLayerTar(ctx: StoreContext, id: string, record: string, fd: number): Promise<AssembleResult> {
  return assembleTar(record, ctx.driver.layerDir(bodiesOf(ctx, id)), fd, { verify: 'changed' });
}

/**
 * The layer whose files hold the bodies of id's record: id itself, or on overlay, for a mapped
 * top layer, the image's top layer it was made from (a template copy keeps only shifted metadata
 * in its own uppers; its data is the template's, which the record names).
 */
function bodiesOf(ctx: StoreContext, id: string): string {
  if (ctx.driver.name !== 'overlay') return id;
  const image = ctx.images.records.find((i) => i['mapped-layers']?.includes(id));
  return image?.layer ?? id;
}
