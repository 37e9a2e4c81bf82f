// Layers (docs/on-disk-format.md, "layers.json" and "Writes, locking and recovery"): create,
// import (apply a tar), diff/changes/size, mount and unmount, and removal, over the layer table
// and the driver. A layer's record is saved incomplete before the driver makes anything and
// completed last; removal marks it incomplete before its data goes, so a crash at any point
// leaves an incomplete record the next writer removes (repair.ts).
import fs from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Change, MountOptions } from '../../drivers/driver.ts';
import { cleanupFailed, LayersError, markNothingWritten, wrapError, wroteNothing } from '../errors.ts';
import { isIdentity, sameMappings, toContainer, type IdMap, type IdMappings } from '../idmap.ts';
import { findLayer, mappingsOf, resolveRef, saveMounts, type StoreContext } from './context.ts';
import { callerOwnsFd, compressFile, prepareInput, prepareStreamInput, tempFile, type LayerInput, type OutputCompression } from './input.ts';
import { Compression, isIncomplete, rfc3339, type LayerRecord } from './records.ts';
import { applyRecording, assembleLayerTar, layerTarSplit, tarSplitPath } from './tar-split-file.ts';
import type { AppendResult, TarAppender } from '../tar/sections.ts';
import { layerUsers, whyLayerStays, type Going, type LayerUsers, type StoreGraph } from './removal.ts';

export interface CreateLayerOptions {
  /** default: 64 random hex digits */
  id?: string;
  /** parent layer id, name or id prefix */
  parent?: string;
  names?: string[];
  metadata?: string;
  mountLabel?: string;
  uidmap?: IdMap[];
  gidmap?: IdMap[];
  /** per-layer driver options (btrfs: size=); a key the driver does not take is refused before anything is made */
  storageOpt?: Record<string, string>;
}

/** How far a long operation is (docs/api.md, "Progress and cancelling"); every count only grows. */
export interface Progress {
  /** bytes of input read (as given: compressed bytes of a compressed input), or of output written */
  bytes: number;
  /** the input's size, when known (a file's size, or ImportOptions.size) */
  totalBytes?: number;
  /** tar entries (files, directories, ...) done; known once the tar has been read */
  entries?: number;
  totalEntries?: number;
  /** driver steps done, for an operation made of a few long driver calls (createContainer,
   *  createFromTemplate: a template copy, its shift, a new layer); `bytes` is then 0 */
  steps?: number;
  totalSteps?: number;
}

/** What every long operation takes: a signal that stops it, and a progress callback. */
export interface LongOperation {
  /** aborting fails the operation with EABORTED and leaves the store as it was (an import leaves no layer) */
  signal?: AbortSignal;
  onProgress?: (p: Progress) => void;
}

/** Options of an import (createLayer with an input, applyDiff). */
export interface ImportOptions extends LongOperation {
  /** 'sha256:<hex>' the input must have as given (the compressed blob; the tar itself when not compressed) */
  compressedDigest?: string;
  /** 'sha256:<hex>' the uncompressed tar must have (the layer's diff-digest) */
  uncompressedDigest?: string;
  /** the input's size when the caller knows it (an HTTP Content-Length), for progress */
  size?: number;
  /** apply only the section of the stream under this name prefix (lib/tar/sections.ts) */
  section?: string;
}

/**
 * A tar to apply: an open file descriptor (file, pipe or socket), a file path, or a stream of
 * bytes (a Readable, an HTTP response body, any AsyncIterable of Uint8Array).
 */
export type DiffInput = number | string | Readable | AsyncIterable<Uint8Array>;

export interface DiffOptions {
  /** compare with this layer instead of the parent */
  reference?: string;
  /** compress the output: gzip (the peer's diff --gzip) or zstd (ours); uncompressed when unset */
  compression?: OutputCompression;
  /** files with holes as PAX 1.0 sparse entries: true, all (GNU tar's --sparse); false, none
   *  (every byte, as the peer writes); unset, those mostly holes (WriteTarOptions.sparse) */
  sparse?: boolean;
}

// ---- records ----

/** A new layer record, its id and names reserved, saved incomplete before anything else is made for it. */
export async function recordNewLayer(ctx: StoreContext, fields: Partial<LayerRecord>): Promise<LayerRecord> {
  const { id, names } = ctx.layers.reserve(fields.id, fields.names);
  const rec: LayerRecord = { ...fields, id, names, created: rfc3339(), flags: { incomplete: true } };
  ctx.layers.push(rec);
  await ctx.layers.save();
  return rec;
}

export async function completeLayer(ctx: StoreContext, rec: LayerRecord): Promise<void> {
  delete rec.flags!.incomplete;
  await ctx.layers.save();
}

/** Mark the layer incomplete (saved), unless it is already. */
export async function markIncomplete(ctx: StoreContext, rec: LayerRecord): Promise<void> {
  if (isIncomplete(rec)) return;
  rec.flags = { ...rec.flags, incomplete: true };
  await ctx.layers.save();
}

/** Mark incomplete, unmount (every user), remove the data, then the record. Checks nothing: the caller decided it may go. */
export async function removeLayer(ctx: StoreContext, r: LayerRecord): Promise<void> {
  ctx.layers.assertOwn(r, 'removed');
  await markIncomplete(ctx, r);
  if (ctx.mounts.count(r.id) > 0) {
    await ctx.driver.unmount(r.id);
    ctx.mounts.drop(r.id);
    await saveMounts(ctx);
  }
  await ctx.driver.remove(r.id);
  fs.rmSync(tarSplitPath(ctx, r.id), { force: true });
  fs.rmSync(path.join(ctx.layersDir, r.id), { recursive: true, force: true });
  ctx.layers.drop(r);
  await ctx.layers.save();
}

// ---- may this layer go ----

/** Layers whose files stand on this one though their records name another parent (the driver knows). */
async function hiddenDependents(ctx: StoreContext, id: string): Promise<string[]> {
  const found = (await ctx.driver.dependents?.(id)) ?? [];
  return found.filter((d) => d !== id && ctx.layers.get(d) !== undefined && ctx.layers.get(d)!.parent !== id);
}

/** The records as removal.ts reads them, with the driver's hidden dependents of the layers `ids` and the mount counts. */
export async function storeGraph(ctx: StoreContext, ids: string[]): Promise<StoreGraph> {
  const hidden = new Map<string, string[]>();
  for (const id of ids) hidden.set(id, await hiddenDependents(ctx, id));
  return {
    layers: ctx.layers.records,
    images: ctx.images.records,
    containers: ctx.containers.records,
    hidden,
    mounts: new Map(ctx.mounts.all().map((m) => [m.id, m.count])),
  };
}

/** Everything that keeps layer `id` (removal.ts's layerUsers over this store), leaving out what is going. */
export async function usersOf(ctx: StoreContext, id: string, going?: Going): Promise<LayerUsers> {
  return layerUsers(await storeGraph(ctx, [id]), id, going);
}

// ---- create and import ----

/** Per-layer driver options must be ones the driver takes: refused before any record is made. */
export function checkLayerOptions(ctx: StoreContext, storageOpt: Record<string, string> | undefined): void {
  const { driver } = ctx;
  for (const key of Object.keys(storageOpt ?? {}))
    if (!driver.layerOptions.includes(key)) {
      const takes = driver.layerOptions.length ? `it takes ${driver.layerOptions.join(', ')}` : 'it takes none';
      throw new LayersError('EUSAGE', `${driver.name}: no per-layer option "${key}" (${takes})`);
    }
}

/** Create a layer (a child of opts.parent when given), and apply `input` to it when given. */
export async function createLayer(ctx: StoreContext, opts: CreateLayerOptions & ImportOptions, input?: DiffInput): Promise<LayerRecord> {
  checkLayerOptions(ctx, opts.storageOpt);
  const parent = opts.parent !== undefined ? findLayer(ctx, opts.parent, 'parent layer') : undefined;
  const mappings = { uidmap: opts.uidmap ?? [], gidmap: opts.gidmap ?? [] };
  const idmapped = await idmappedChild(ctx, parent, mappings, false);
  const rec = await recordNewLayer(ctx, { id: opts.id, names: opts.names, parent: parent?.id, metadata: opts.metadata, mountlabel: opts.mountLabel, ...mappings });
  try {
    await makeLayer(ctx, rec, parent, { storageOpt: opts.storageOpt, idmapped });
    if (input !== undefined) await applyInto(ctx, rec, input, opts, false);
  } catch (err) {
    // on failure the record stays incomplete; the next writer removes it if this cannot
    await removeLayer(ctx, rec).catch((e) => cleanupFailed(`removing the half-made layer ${rec.id}`, e));
    throw err;
  }
  await completeLayer(ctx, rec);
  return rec;
}

/**
 * Whether a layer with mappings `want` on `parent` shows what it inherits through idmapped mounts
 * (CreateOptions.idmapped) instead of a shifted copy (docs/images-and-containers.md, "Idmapped
 * mounts"): the mappings differ from the parent's, the driver can mount idmapped (on a parent with
 * mappings only where it says anyParent), and no layer of the chain is in an additional
 * (read-only) store, which the idmapped views do not cover.
 */
export async function idmappedChild(ctx: StoreContext, parent: LayerRecord | undefined, want: IdMappings, container: boolean): Promise<boolean> {
  if (!parent || sameMappings(mappingsOf(parent), want) || !ctx.driver.idmappedMounts) return false;
  for (let l: LayerRecord | undefined = parent; l; l = l.parent !== undefined ? ctx.layers.get(l.parent) : undefined) if (ctx.layers.isReadOnly(l)) return false;
  const answer = await ctx.driver.idmappedMounts();
  // vfs and btrfs keep an idmapped layer in container ids, which only a container's layer may
  // (a layer made to take tars holds host ids through its mappings, as ApplyDiff writes them)
  if (!container && answer.anyParent !== true) return false;
  return answer.supported && (answer.anyParent === true || isIdentity(mappingsOf(parent)));
}

/** The driver's part of a new layer on parent, with the owners of what it inherits shifted to rec's mappings. */
export async function makeLayer(
  ctx: StoreContext,
  rec: LayerRecord,
  parent: LayerRecord | undefined,
  opts: { storageOpt?: Record<string, string>; idmapped?: boolean },
): Promise<void> {
  const mappings = mappingsOf(rec);
  await ctx.driver.create(rec.id, parent?.id, { ...opts, idMappings: mappings });
  // the copy of the parent carries the parent's owners: shift them to this layer's mappings
  // (unless the driver shows them through idmapped mounts: CreateOptions.idmapped)
  if (parent && !opts.idmapped && !sameMappings(mappingsOf(parent), mappings)) await ctx.driver.updateIdMappings(rec.id, mappingsOf(parent), mappings);
}

/**
 * Apply a tar to an existing layer. Refused when other layers' files come from it (children would
 * not see the change, copies made from it would). If it fails the layer is left incomplete and
 * removed by the next writer.
 */
export async function applyDiff(ctx: StoreContext, ref: string, input: DiffInput, opts: ImportOptions = {}): Promise<LayerRecord> {
  const rec = findLayer(ctx, ref);
  ctx.layers.assertOwn(rec);
  const users = await usersOf(ctx, rec.id);
  if (users.children.length > 0)
    throw new LayersError('ELAYERHASCHILDREN', `layer ${rec.id} has child layers (${users.children.join(', ')}); they would not see the change`);
  if (users.templateCopies.length > 0)
    throw new LayersError('ELAYERHASCHILDREN', `layer ${rec.id} is the template of layers made from it (${users.templateCopies.join(', ')}); they would see the change`);
  await markIncomplete(ctx, rec);
  try {
    await applyInto(ctx, rec, input, opts, true);
  } catch (err) {
    // input refused before anything reached the layer (not a tar, bad compression, a garbage
    // first header): the layer is as it was, and stays, as the peer's does
    if (wroteNothing(err)) {
      await completeLayer(ctx, rec);
      throw err;
    }
    throw wrapError(`layer ${rec.id} is left incomplete and will be removed`, err);
  }
  await completeLayer(ctx, rec);
  return rec;
}

/** The error of an aborted operation: EABORTED, the signal's reason as its cause. */
export function abortError(signal: AbortSignal, what: string): LayersError {
  return new LayersError('EABORTED', `${what}: aborted`, { cause: signal.reason });
}

/** Throw EABORTED when the signal has fired. */
export function checkAborted(signal: AbortSignal | undefined, what: string): void {
  if (signal?.aborted) throw abortError(signal, what);
}

/**
 * The driver steps of an operation made of a few long driver calls (docs/api.md, "Progress and
 * cancelling"): the signal is checked before the first, and after each, once it is reported.
 * `total` may grow until the first step is done (a mapped top layer found missing adds two).
 */
export class Steps {
  private done = 0;
  constructor(
    private readonly op: LongOperation,
    public total: number,
    private readonly what: string,
  ) {
    checkAborted(op.signal, what);
  }

  step(): void {
    this.done += 1;
    this.op.onProgress?.({ bytes: 0, steps: this.done, totalSteps: this.total });
    checkAborted(this.op.signal, this.what);
  }
}

function checkDigest(expected: string | undefined, actual: string, which: string, what: string): void {
  if (expected !== undefined && expected !== actual)
    throw new LayersError('EDIGEST', `${what}: ${which} digest is ${actual}, expected ${expected}`);
}

/** sha256 of a regular file's bytes from offset 0 (the fd stays open). */
async function fileDigest(fd: number): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(fs.createReadStream('', { fd, start: 0, autoClose: false, highWaterMark: 1 << 20, fs: callerOwnsFd }), hash);
  return `sha256:${hash.digest('hex')}`;
}

/**
 * The input as the tar engine takes it (input.ts): a path is opened, a pipe or a stream spooled.
 * Bytes read are counted for progress and the signal is checked as they come.
 */
async function openDiffInput(input: DiffInput, what: string, tmpDir: string, opts: ImportOptions): Promise<{ prepared: LayerInput; size?: number }> {
  if (typeof input === 'number' || typeof input === 'string') {
    const fd = typeof input === 'string' ? openInput(input) : input;
    const st = fs.fstatSync(fd);
    if (!st.isFile()) {
      // a pipe or socket: read as a stream, like any other, so that progress and abort see its bytes
      return openDiffInput(fs.createReadStream('', { fd, autoClose: false, highWaterMark: 1 << 20, fs: callerOwnsFd }), what, tmpDir, opts);
    }
    try {
      return { prepared: withClose(await prepareInput(fd, what, tmpDir, opts.signal), () => typeof input === 'string' && fs.closeSync(fd)), size: st.size };
    } catch (err) {
      if (typeof input === 'string') fs.closeSync(fd);
      throw err;
    }
  }
  const { signal, onProgress } = opts;
  let bytes = 0;
  async function* counted(src: AsyncIterable<Uint8Array>) {
    for await (const chunk of src) {
      checkAborted(signal, what);
      bytes += chunk.length;
      onProgress?.({ bytes, totalBytes: opts.size });
      yield chunk;
    }
  }
  return { prepared: await prepareStreamInput(counted(input), what, tmpDir, signal), size: opts.size };
}

function withClose(prepared: LayerInput, also: () => void): LayerInput {
  return {
    ...prepared,
    close: () => {
      try {
        prepared.close();
      } finally {
        also();
      }
    },
  };
}

/**
 * Extract input into rec's layer and record its digests, sizes and owners as the peer does.
 * Expected digests are checked as soon as they can be: a compressed one once the input is read;
 * with `verifyFirst` (applyDiff: the layer must stay as it was) an uncompressed one by reading
 * the tar once more before applying; otherwise after applying (the caller removes the layer).
 */
async function applyInto(ctx: StoreContext, rec: LayerRecord, input: DiffInput, opts: ImportOptions, verifyFirst: boolean): Promise<void> {
  const what = describeInput(input);
  const { signal, onProgress } = opts;
  checkAborted(signal, what);
  const { prepared, size } = await openDiffInput(input, what, ctx.tmpDir, opts).catch((err: unknown) => {
    // a decompressor cut off by the abort reports bad data: the abort is the reason
    throw markNothingWritten(signal?.aborted ? abortError(signal, what) : err);
  });
  // a section's digests are those of the section as a tar of its own (docs/tar-engine.md,
  // "Sections"): known only once it is applied
  if (opts.section !== undefined) verifyFirst = false;
  try {
    try {
      checkAborted(signal, what);
      if (prepared.compressed) checkDigest(opts.compressedDigest, prepared.compressed.digest, 'compressed', what);
      else if (verifyFirst && (opts.uncompressedDigest !== undefined || opts.compressedDigest !== undefined)) {
        const digest = await fileDigest(prepared.fd);
        checkDigest(opts.uncompressedDigest, digest, 'uncompressed', what);
        checkDigest(opts.compressedDigest, digest, 'compressed (the input is not compressed)', what);
      }
      if (verifyFirst && prepared.compressed && opts.uncompressedDigest !== undefined)
        checkDigest(opts.uncompressedDigest, await fileDigest(prepared.fd), 'uncompressed', what);
    } catch (err) {
      throw markNothingWritten(err);
    }
    const mappings = mappingsOf(rec);
    // the tar's bytes are the input's when it is not compressed; a compressed input was all read already
    let bytes = prepared.bytesRead();
    const onTar = (tarBytes: number, entries: number) => {
      if (!prepared.compressed) bytes = Math.max(bytes, tarBytes);
      onProgress?.({ bytes, totalBytes: size, entries });
    };
    let result;
    try {
      const applyOpts = { idMappings: mappings, signal, onProgress: onProgress && onTar, section: opts.section };
      const apply = (tarSplitFd?: number) => ctx.driver.applyDiff(rec.id, rec.parent, prepared.fd, { ...applyOpts, tarSplitFd });
      // a section has no tar-split record: the stream's bytes are not the section's own tar
      // (docs/tar-engine.md, "Sections"); diff then writes it from the layer's files
      if (opts.section !== undefined) fs.rmSync(tarSplitPath(ctx, rec.id), { force: true });
      ({ result } = opts.section !== undefined ? { result: await apply() } : await applyRecording(tarSplitPath(ctx, rec.id), prepared.fd, apply));
    } catch (err) {
      if (signal?.aborted) {
        const aborted = abortError(signal, `applying ${what} to layer ${rec.id}`);
        throw wroteNothing(err) ? markNothingWritten(aborted) : aborted;
      }
      throw wrapError(`applying ${what} to layer ${rec.id}`, err);
    }
    checkAborted(signal, what);
    checkDigest(opts.uncompressedDigest, result.digest, 'uncompressed', what);
    if (!prepared.compressed) checkDigest(opts.compressedDigest, result.digest, 'compressed (the input is not compressed)', what);
    rec['diff-digest'] = result.digest;
    rec['diff-size'] = result.tarSize;
    // the peer records the owners as the tar has them (container ids)
    rec.uidset = [...new Set(result.uids.map((u) => toContainer(mappings.uidmap, u) ?? u))].sort((a, b) => a - b);
    rec.gidset = [...new Set(result.gids.map((g) => toContainer(mappings.gidmap, g) ?? g))].sort((a, b) => a - b);
    const c = prepared.compressed ?? { digest: result.digest, size: result.tarSize, compression: Compression.none };
    rec['compressed-diff-digest'] = c.digest;
    rec['compressed-size'] = c.size;
    rec.compression = c.compression;
    const read = Math.max(bytes, prepared.compressed ? c.size : result.tarSize);
    onProgress?.({ bytes: read, totalBytes: size ?? read, entries: result.entries, totalEntries: result.entries });
  } finally {
    prepared.close();
  }
}

function describeInput(input: DiffInput): string {
  if (typeof input === 'string') return input;
  if (typeof input === 'number') return input === 0 ? 'stdin' : `fd ${input}`;
  return 'the input stream';
}

function openInput(file: string): number {
  try {
    return fs.openSync(file, 'r');
  } catch (err) {
    throw new LayersError('EINPUT', `cannot open ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
  }
}

// ---- diff, changes, size ----

/**
 * The layer and what it is compared with: its parent or the reference layer, each with its id
 * mappings, so that owners compare in container ids (a mapped layer's files, shifted, are no
 * change against its parent's).
 */
function comparison(ctx: StoreContext, ref: string, reference: string | undefined) {
  const rec = findLayer(ctx, ref);
  const against = reference !== undefined ? findLayer(ctx, reference, 'reference layer') : rec.parent !== undefined ? ctx.layers.get(rec.parent) : undefined;
  return { rec, against: against?.id, opts: { idMappings: mappingsOf(rec), parentIdMappings: mappingsOf(against ?? rec) } };
}

/** Write the layer's changes against its parent (or opts.reference) as a tar to fd. */
export async function diff(ctx: StoreContext, ref: string, fd: number, opts: DiffOptions & LongOperation): Promise<void> {
  checkAborted(opts.signal, `diff of ${ref}`);
  await writeDiff(ctx, ref, fd, opts);
  checkAborted(opts.signal, `diff of ${ref}`);
  // the tar is written by the driver or the tar-split reassembly in native calls: progress is its end (bytes written, when fd is a file)
  if (opts.onProgress) {
    const st = fs.fstatSync(fd);
    if (st.isFile()) opts.onProgress({ bytes: st.size, totalBytes: st.size });
  }
}

async function writeDiff(ctx: StoreContext, ref: string, fd: number, opts: DiffOptions & LongOperation): Promise<void> {
  const { rec, against, opts: compared } = comparison(ctx, ref, opts.reference);
  const diffOpts = { ...compared, sparse: opts.sparse };
  // against the parent, an applied layer gives back the tar it was applied from, as the peer's Diff does
  // (sparse entries by default where files are mostly holes: a recorded tar is given back as it
  // was, sparse or not; only an explicit choice of sparse or dense entries writes a new one)
  const record = against === rec.parent && opts.sparse === undefined ? layerTarSplit(ctx, rec.id) : undefined;
  const writeTar = async (out: number) => {
    if (record) await assembleLayerTar(ctx, rec.id, record, out);
    else await ctx.driver.diff(rec.id, against, out, diffOpts);
  };
  if (opts.compression === undefined) return writeTar(fd);
  // the compressors need the tar as a stream: write it to an unlinked temp file, then compress from there
  const tmp = tempFile(ctx.tmpDir, 'diff');
  try {
    await writeTar(tmp);
    await compressFile(tmp, fd, opts.compression, `the diff of layer ${rec.id}`, opts.signal);
  } catch (err) {
    throw opts.signal?.aborted ? abortError(opts.signal, `diff of ${ref}`) : err;
  } finally {
    fs.closeSync(tmp);
  }
}

/**
 * Append the changes of a layer (or a container's layer) to an open tar under prefix: the diff is
 * written to a temp file in the store, then its entries are appended renamed, bodies copied from
 * the temp file by copy_file_range (docs/tar-engine.md, "Sections").
 */
export async function diffSection(ctx: StoreContext, ref: string, out: TarAppender, prefix: string, opts: DiffOptions = {}): Promise<AppendResult> {
  if (opts.compression) throw new LayersError('EUSAGE', 'a diff section is written uncompressed');
  const layer = mountTarget(ctx, ref).id;
  const tmp = tempFile(ctx.tmpDir, 'diff');
  try {
    await diff(ctx, layer, tmp, opts);
    return await out.addTar(tmp, prefix);
  } finally {
    fs.closeSync(tmp);
  }
}

export async function changes(ctx: StoreContext, ref: string, reference?: string): Promise<Change[]> {
  const { rec, against, opts } = comparison(ctx, ref, reference);
  return ctx.driver.changes(rec.id, against, opts);
}

/**
 * A layer's size as the peer's ImageSize counts it: its recorded diff-size when it has a diff
 * digest (it was applied from a tar), else what the driver's DiffSize works out.
 */
export async function layerSize(ctx: StoreContext, rec: LayerRecord): Promise<number> {
  if (rec['diff-digest']) return rec['diff-size'] ?? 0;
  return ctx.driver.diffSize(rec.id, rec.parent, { idMappings: mappingsOf(rec), parentIdMappings: mappingsOf(rec.parent !== undefined ? ctx.layers.get(rec.parent) : rec) });
}

/** Complete layers whose compressed (the blob as given) or uncompressed (the tar) digest is this one. */
export function layersByDigest(ctx: StoreContext, which: 'compressed' | 'uncompressed', digest: string): LayerRecord[] {
  const field = which === 'compressed' ? 'compressed-diff-digest' : 'diff-digest';
  return ctx.layers.complete().filter((l) => l[field] === digest);
}

export async function diffSize(ctx: StoreContext, ref: string, reference?: string): Promise<number> {
  const { rec, against, opts } = comparison(ctx, ref, reference);
  return ctx.driver.diffSize(rec.id, against, opts);
}

// ---- mount and unmount ----

/** The layer a mount or unmount of ref means: a container's read-write layer (as the peer looks first), or a layer. */
export function mountTarget(ctx: StoreContext, ref: string): LayerRecord {
  const found = resolveRef(ctx, ref, ['container', 'layer']);
  if (!found) throw new LayersError('ELAYERUNKNOWN', `layer or container "${ref}" not known`);
  return found.kind === 'container' ? ctx.layers.get(found.record.layer)! : (found.record as LayerRecord);
}

/** Mount a layer, or a container's layer (one more user); returns its path. */
export async function mount(ctx: StoreContext, ref: string, opts: MountOptions): Promise<string> {
  const rec = mountTarget(ctx, ref);
  // the peer mounts only its own layers: mount points are recorded in the store that owns the layer
  ctx.layers.assertOwn(rec, 'mounted here');
  // a volatile container's layer is mounted volatile, as the peer's Mount does
  const volatile = ctx.containers.records.some((c) => c.layer === rec.id && c.flags?.Volatile === true);
  const p = await ctx.driver.mount(rec.id, volatile ? { ...opts, volatile } : opts);
  ctx.mounts.add(rec.id, p);
  await saveMounts(ctx);
  return p;
}

/** One user less of a layer's or container's mount (every user when force); the last one really unmounts. Returns the users left. */
export async function unmount(ctx: StoreContext, ref: string, force: boolean): Promise<number> {
  const rec = mountTarget(ctx, ref);
  if (ctx.mounts.count(rec.id) === 0) return 0;
  const left = ctx.mounts.release(rec.id, force);
  if (left === 0) await ctx.driver.unmount(rec.id);
  await saveMounts(ctx);
  return left;
}

/** Unmount every mounted layer (refused unless force while any is); returns their ids. */
export async function unmountAll(ctx: StoreContext, force: boolean): Promise<string[]> {
  const mounted = ctx.mounts.all();
  if (mounted.length > 0 && !force) throw new LayersError('ELAYERINUSE', `layers are mounted: ${mounted.map((m) => m.id).join(', ')}; unmount them or use force`);
  for (const m of mounted) {
    await ctx.driver.unmount(m.id);
    ctx.mounts.drop(m.id);
  }
  if (mounted.length > 0) await saveMounts(ctx);
  return mounted.map((m) => m.id);
}

/**
 * The owners of the directories above the mount point of a layer that its id mappings cannot
 * map into the container, as containers/storage's ParentOwners works them out: a runtime must
 * let those ids through for the container to reach its root. Both stat and lstat of each
 * directory count. None when the layer has no mappings; an error when it is not mounted (there
 * is no mount point to look above).
 */
export function parentOwners(ctx: StoreContext, rec: LayerRecord): { uids: number[]; gids: number[] } {
  const { uidmap, gidmap } = mappingsOf(rec);
  if (uidmap.length === 0 && gidmap.length === 0) return { uids: [], gids: [] };
  const mounted = ctx.mounts.get(rec.id);
  if (!mounted || !fs.existsSync(mounted.path)) throw new LayersError('ENOTMOUNTED', `layer ${rec.id} is not mounted: mount it to know what is above its mount point`);
  const uids = new Set<number>();
  const gids = new Set<number>();
  for (let dir = path.dirname(mounted.path); ; dir = path.dirname(dir)) {
    if (dir === '/') break;
    for (const st of [fs.statSync(dir), fs.lstatSync(dir)]) {
      if (toContainer(uidmap, st.uid) === undefined) uids.add(st.uid);
      if (toContainer(gidmap, st.gid) === undefined) gids.add(st.gid);
    }
  }
  const sorted = (s: Set<number>) => [...s].sort((a, b) => a - b);
  return { uids: sorted(uids), gids: sorted(gids) };
}

// ---- delete ----

/** Delete a layer that nothing uses: no children or template copies, no image or container, no mount. */
export async function deleteLayer(ctx: StoreContext, ref: string): Promise<void> {
  const rec = findLayer(ctx, ref);
  ctx.layers.assertOwn(rec, 'removed');
  const why = whyLayerStays(rec.id, await usersOf(ctx, rec.id));
  if (why) throw why;
  await removeLayer(ctx, rec);
}

/**
 * containers-storage's `delete` of a layer: it goes though it is mounted (every user let go) or
 * images or containers use it (the caller drops their records after). Still refused: a layer
 * other layers' files stand on (children, or copies made from it as a template), since removing
 * it would break layers nobody named.
 */
export async function forceDeleteLayer(ctx: StoreContext, rec: LayerRecord): Promise<void> {
  const users = await usersOf(ctx, rec.id);
  const holders = [...users.children, ...users.templateCopies];
  if (holders.length > 0) throw new LayersError('ELAYERHASCHILDREN', `layer ${rec.id} holds files of layers ${holders.join(', ')}; delete them first`);
  await removeLayer(ctx, rec);
}
