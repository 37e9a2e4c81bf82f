// Extract an uncompressed tar from a file descriptor into a directory (docs/tar-engine.md).
// Headers are scanned here; bodies are copied by the native apply batch straight from their
// offsets in the tar file (in the kernel wherever the filesystem allows), or spliced one at a
// time when the input is a pipe. The sha256 of the tar is computed natively too: in parallel
// from the file, or fed as the bytes pass when the input is a pipe.
import fs from 'node:fs';
import path from 'node:path';
import { markNothingWritten } from '../errors.ts';
import { native } from '../native.ts';
import type { ApplyOp, Sha256 } from '../native.ts';
import { hostMapper, type IdMappings } from '../idmap.ts';
import { readEntry, padding } from './header.ts';
import { FileSource, PipeSource, type BlockSource } from './source.ts';
import { OPAQUE_WHITEOUT, overlayOpaqueXattr, overlayWhiteoutOp, parseWhiteout, WHITEOUT_META_PREFIX, WHITEOUT_PREFIX } from './whiteout.ts';
import { nativeToTarError } from './native-errors.ts';
import { TarError } from './errors.ts';
import { decodeName, fsPath } from './names.ts';
import { entryOp, givableOwners, peerTimes, peerXattr } from './ops.ts';
import type { ReadEntry } from './types.ts';
import { SectionView } from './sections.ts';

export interface ExtractOptions {
  /** container ids in the tar -> host ids on disk */
  idMappings?: IdMappings;
  /** 'delete': a whiteout removes what it names (full-tree drivers); 'overlay': converted to
   *  overlayfs's form by whiteout.ts (char 0/0 device, trusted.overlay.opaque=y); 'keep': extracted as files */
  whiteouts: 'delete' | 'overlay' | 'keep';
  /**
   * An owner the process cannot give (an id outside its user namespace: chown fails with EINVAL)
   * is left as the file is created, the process's own, as the peer's ignore_chown_errors does.
   */
  ignoreChownErrors?: boolean;
  /** checked between entries: aborting fails the extraction (what was written stays; the store removes the layer) */
  signal?: AbortSignal;
  /** tar bytes scanned and entries done, every PROGRESS_ENTRIES entries and at the end */
  onProgress?: (tarBytes: number, entries: number) => void;
  /** extract only the entries under this name prefix, the prefix removed; the rest is skipped
   *  (bodies never read from a file). digest and tarSize are then the section's as a tar of its
   *  own (SectionView, lib/tar/sections.ts) and no tar-split record is made */
  section?: string;
  /** from a file: make the tar's tar-split record in the read that hashes it and write it here
   *  (gzip, from offset 0; lib/store/tar-split-file.ts) */
  tarSplitFd?: number;
  /** false: the section's digest is not wanted ('' is returned), so bodies are copied as from any
   *  file (copy_file_range, batched) instead of read through the hash one by one (host directories) */
  sectionDigest?: boolean;
}

export interface ExtractResult {
  /** bytes of file bodies written */
  size: number;
  /** bytes of tar read, end blocks and trailing bytes included */
  tarSize: number;
  /** 'sha256:<hex>' of the tar bytes read */
  digest: string;
  /** true when the tar's tar-split record is whole in opts.tarSplitFd (made by native().hashTar
   *  in the read that hashes the tar); else that walk declined it or none was asked for */
  tarSplit?: boolean;
  entries: number;
  /** distinct owners seen (host ids after mapping), sorted */
  uids: number[];
  gids: number[];
}

const BATCH_OPS = 4096;
const PROGRESS_ENTRIES = 256;
/** the xattr namespaces Linux has (xattr(7)) */
const XATTR_NAMESPACE = /^(security|system|trusted|user)\./;

export async function extractTar(inFd: number, root: string, opts: ExtractOptions): Promise<ExtractResult> {
  const st = fs.fstatSync(inFd);
  const fromFile = st.isFile();
  const hash = native().sha256();
  const section = opts.section !== undefined ? new SectionView(opts.section, { digest: opts.sectionDigest !== false }) : undefined;
  const sectionHash = section?.digesting ? section.hash : undefined;
  const src: BlockSource = fromFile ? new FileSource(inFd, 0) : new PipeSource(inFd, { onBytes: section ? undefined : (b) => hash.update(b) });
  // from a file the same read also makes the layer's tar-split record
  const hashed = fromFile && !section ? native().hashTar(inFd, hash, opts.tarSplitFd) : undefined;
  hashed?.catch(() => undefined); // awaited below; a failure must not count as unhandled meanwhile
  const rootFd = fs.openSync(root, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
  // missing parents are owned as the root was before the tar's '.' (K2) changed it (found by the fuzzer)
  const rootSt = fs.fstatSync(rootFd);
  const parentOwner: [number, number] = [rootSt.uid, rootSt.gid];
  const plan = new Planner(inFd, root, opts, section ? sectionHash : fromFile ? undefined : hash, !fromFile);
  let pending: Promise<void> = Promise.resolve();
  let wrote = false;
  const run = async (ops: ApplyOp[]) => {
    wrote ||= ops.length > 0;
    await pending; // batches depend on the ones before (parent dirs, hardlink targets)
    pending = native().applyBatch(rootFd, ops, parentOwner).then(
      () => undefined,
      (err) => {
        throw nativeToTarError(err, ops, 'extracting');
      },
    );
    pending.catch(() => undefined);
  };
  try {
    // a PAX global header's name makes parent directories (K8), as in the peer; not within a section
    const onGlobal = section ? undefined : (name: string) => plan.globalHeader(name);
    for (let e = readEntry(src, onGlobal); e; e = readEntry(src, onGlobal)) {
      opts.signal?.throwIfAborted();
      const taken = section ? section.take(e) : e;
      if (!taken) {
        src.skip(e.size + padding(e.size), e.name); // another section's: a seek on a file
        continue;
      }
      plan.add(taken);
      if (opts.onProgress && plan.entries % PROGRESS_ENTRIES === 0) opts.onProgress(src.position, plan.entries);
      if (plan.rootEntry) {
        // the tar's '.': set on the root where it comes, so what follows inherits as in the peer
        await run(plan.take());
        await pending;
        plan.applyRootEntry(rootFd);
      }
      if (plan.pendingOpaque !== undefined) {
        await run(plan.take());
        await pending;
        plan.opaqueAfter();
      }
      if (sectionHash && fromFile && e.type === 'file') {
        // the body is hashed as it is copied, after its header: one op at a time, in order
        wrote = true;
        await run(plan.take());
        await pending;
        section!.body(e.size);
        src.skip(e.size + padding(e.size));
      } else if (!fromFile && e.type === 'file') {
        // the body is next in the pipe: copy it now, before the next header is read
        wrote = true;
        runSync(rootFd, plan.take(), parentOwner);
        section?.body(e.size);
        src.advance(e.size);
        src.skip(padding(e.size));
      } else {
        src.skip(e.size + padding(e.size));
        section?.body(e.size);
        if (plan.ops.length >= BATCH_OPS) await run(plan.take());
      }
    }
    await run(plan.finish());
    await pending;
    if (plan.rootTimes) native().lutimes(root, plan.rootTimes.atime, plan.rootTimes.mtime);
    if (plan.rootOpaque) native().lsetxattr(root, ...overlayOpaqueXattr());
    opts.onProgress?.(src.position, plan.entries);
    let tarSize: number;
    let tarSplit: boolean | undefined;
    let digest: string | undefined;
    if (hashed) ({ size: tarSize, tarSplit } = await hashed);
    else tarSize = src.position + (fromFile ? 0 : drainPipe(inFd, hash));
    if (section) ({ tarSize, digest } = section.end());
    return {
      size: plan.size,
      tarSize,
      tarSplit,
      digest: digest ?? hash.digest(),
      entries: plan.entries,
      uids: [...plan.uids].sort((a, b) => a - b),
      gids: [...plan.gids].sort((a, b) => a - b),
    };
  } catch (err) {
    // before any op ran (a garbage or cut first header): the tree is as it was
    if (!wrote) markNothingWritten(err);
    throw err;
  } finally {
    await pending.catch(() => undefined);
    await hashed?.catch(() => undefined);
    fs.closeSync(rootFd);
  }
}

function runSync(rootFd: number, ops: ApplyOp[], parentOwner: [number, number]): void {
  try {
    native().applyBatchSync(rootFd, ops, parentOwner);
  } catch (err) {
    throw nativeToTarError(err, ops, 'extracting');
  }
}

/** Read what follows the end of the archive in a pipe, so the digest covers the whole input (as the peer's does). */
function drainPipe(fd: number, hash: Sha256): number {
  const buf = Buffer.allocUnsafe(64 << 10);
  let total = 0;
  for (;;) {
    let n: number;
    try {
      n = fs.readSync(fd, buf, 0, buf.length, null);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EAGAIN') continue;
      throw err;
    }
    if (n === 0) return total;
    hash.update(buf.subarray(0, n));
    total += n;
  }
}

/** Turns tar entries into apply ops: owners mapped, whiteouts converted, directory times last. */
class Planner {
  ops: ApplyOp[] = [];
  size = 0;
  entries = 0;
  readonly uids = new Set<number>();
  readonly gids = new Set<number>();
  private readonly mapOwner;
  /** with ignoreChownErrors: the ids chown can give in this process's user namespace */
  private readonly givable?: (uid: number, gid: number) => [number, number];
  /** directory ops of this tar, to set their times at the end and re-mark them opaque */
  private readonly dirs = new Map<string, { op: ApplyOp & { op: 'dir' }; mtime: ReadEntry['mtime']; atime?: ReadEntry['atime'] }>();
  /** the names of the entries this tar made (the peer's unpackedPaths): an opaque marker keeps these */
  private readonly unpacked = new Set<string>();
  /** an opaque marker (full-tree drivers) after entries of this tar in its directory: what to keep
   *  is decided on the tree as it is then, so the ops before it run first (K7) */
  pendingOpaque: string | undefined;
  /** overlay: the tar marked the layer root opaque ('.wh..wh..opq' at the top) */
  rootOpaque = false;
  /** the tar's own '.' directory entry, waiting to be set on the layer root (K2) */
  rootEntry: { mode: number; uid: number; gid: number; xattrs?: Array<[string, Buffer]> } | undefined;
  /** its times, set once everything is in (as for every directory) */
  rootTimes: ReturnType<typeof peerTimes> | undefined;
  private readonly keepXattr;

  constructor(
    private readonly inFd: number,
    private readonly root: string,
    private readonly opts: ExtractOptions,
    private readonly pipeHash: Sha256 | undefined,
    /** bodies are spliced from the pipe (srcOffset -1), else copied from their offsets */
    private readonly fromPipe: boolean,
  ) {
    this.mapOwner = hostMapper(opts.idMappings);
    if (opts.ignoreChownErrors) this.givable = givableOwners();
    this.keepXattr = peerXattr(opts.whiteouts === 'overlay');
  }

  take(): ApplyOp[] {
    const ops = this.ops;
    this.ops = [];
    return ops;
  }

  /** the remaining ops, then the times of every directory the tar made (after all their children) */
  finish(): ApplyOp[] {
    for (const [p, d] of this.dirs) this.ops.push({ op: 'times', path: p, mtime: d.mtime, atime: d.atime });
    return this.take();
  }

  add(e: ReadEntry): void {
    this.entries++;
    for (const k of e.xattrs?.keys() ?? []) {
      // the kernel answers EOPNOTSUPP, which reads "operation not supported on socket"
      if (!XATTR_NAMESPACE.test(k)) throw new TarError('ETARFORMAT', `${e.name}: xattr '${k}' is in no namespace Linux has (security., system., trusted., user.): it cannot be set`, e.name, e.headerOffset);
    }
    if (e.name === '.') {
      // the peer merges a '.' directory into the layer root: owner, mode, xattrs, times (K2); any
      // other type there it cannot apply (it fails removing the root), so it is ignored
      if (e.type !== 'dir') return;
      const [uid, gid] = this.owner(e);
      const op = entryOp(e, uid, gid, undefined, this.keepXattr);
      this.rootEntry = { mode: e.mode, uid, gid, xattrs: op.op === 'dir' ? op.xattrs : undefined };
      this.rootTimes = peerTimes(e);
      return;
    }
    const dir = path.posix.dirname(e.name);
    const base = path.posix.basename(e.name);
    if (this.opts.whiteouts !== 'keep') {
      // AUFS bookkeeping: the peer skips every name a top-level '.wh..wh.*' starts (its hardlink
      // dir '.wh..wh.plnk' and what is in it) once it made its parents (K3); deeper down such a
      // name is a plain whiteout of '.wh.*' there (found by the differential fuzzer)
      if (e.name.startsWith(WHITEOUT_META_PREFIX) && e.name !== OPAQUE_WHITEOUT) {
        if (dir !== '.') this.ops.push({ op: 'parents', path: e.name });
        return;
      }
      const parsed = parseWhiteout(base);
      const wh = parsed?.kind === 'meta' ? { kind: 'whiteout' as const, target: base.slice(WHITEOUT_PREFIX.length) } : parsed;
      if (wh) return this.whiteout(e, dir, wh);
    }
    if (e.sparse && e.sparse.realSize > this.capacity()) {
      // a few KB of tar must not claim a file no copy of the layer could ever hold: its size
      // is what a diff without holes, a child copy or `diffsize` would then have to deal with
      throw new TarError('ETARTOOBIG', `${e.name}: a sparse file of ${e.sparse.realSize} bytes, larger than the filesystem of the layer (${this.capacity()} bytes)`, e.name, e.headerOffset);
    }
    const [uid, gid] = this.owner(e);
    this.note(dir, base);
    const times = peerTimes(e);
    const timed = times.mtime === e.mtime && times.atime === e.atime ? e : { ...e, ...times };
    const op = entryOp(timed, uid, gid, e.type === 'file' ? { srcFd: this.inFd, srcOffset: this.fromPipe ? -1 : e.dataOffset, hash: this.pipeHash } : undefined, this.keepXattr);
    // the peer sets a hardlink entry's owner, mode, xattrs and times on the linked inode (K4)
    if (op.op === 'hardlink') Object.assign(op, { uid, gid, mode: e.mode, ...times, ...(e.xattrs ? { xattrs: [...e.xattrs].filter(([k]) => this.keepXattr(k)) } : {}), ...(e.linknameAsWritten !== undefined ? { statTarget: e.linknameAsWritten } : {}) });
    this.ops.push(op);
    if (op.op === 'file') this.size += e.sparse ? e.sparse.realSize : e.size;
    if (op.op === 'dir') this.dirs.set(e.name, { op, ...times });
  }

  /** K8: the peer makes the parent directories of a PAX global header's name, as of any entry's
   *  (GNU tar names it /tmp/GlobalHead.%p.%n), then ignores it; the name is taken as the peer's
   *  chroot sees it ('/' and '..' at the top stay at the layer root) */
  globalHeader(name: string): void {
    const rel = path.posix.normalize(`/${name}`).replace(/^\/+/, '');
    // the peer (Go's reader hands it these members too) applies one named as a whiteout as a
    // whiteout; GNU tar ignores it: refused (found by the differential fuzzer, seed 2216113716)
    if (this.opts.whiteouts !== 'keep' && parseWhiteout(path.posix.basename(rel)) && !(rel.startsWith(WHITEOUT_META_PREFIX) && rel !== OPAQUE_WHITEOUT))
      throw new TarError('ETARFORMAT', `${name}: a volume label or PAX global header named as a whiteout: the peer applies it as one, other readers ignore it`, name);
    if (rel.includes('/')) this.ops.push({ op: 'parents', path: rel });
    if (this.opts.whiteouts === 'keep') return;
    // the peer's UnpackLayer removes what is at a member's name unless both are directories, and
    // only then ignores a global header or label: what the tar made there goes (fuzzer seed
    // 3973979510); at the layer root it fails, so that is refused here
    if (rel === '') throw new TarError('ETARFORMAT', `${name}: a volume label or PAX global header named as the layer root: the peer tries to remove the root`, name);
    this.ops.push({ op: 'remove', path: rel });
  }

  /** K2: the tar's '.' on the layer root, chown before chmod (chown clears setuid and setgid) */
  applyRootEntry(rootFd: number): void {
    const r = this.rootEntry!;
    this.rootEntry = undefined;
    fs.fchownSync(rootFd, r.uid, r.gid);
    fs.fchmodSync(rootFd, r.mode & 0o7777);
    for (const [k, v] of r.xattrs ?? []) native().lsetxattr(this.root, k, v);
  }

  private capacityBytes: number | undefined;
  /** the size of the filesystem the layer is on (statfs once, on the first sparse entry) */
  private capacity(): number {
    if (this.capacityBytes === undefined) {
      const st = fs.statfsSync(this.root);
      this.capacityBytes = st.blocks * st.bsize;
    }
    return this.capacityBytes;
  }

  private owner(e: ReadEntry): [number, number] {
    const ids: [number, number] = this.mapOwner ? this.mapOwner(e.uid, e.gid, e.name) : [e.uid, e.gid];
    if (this.givable) [ids[0], ids[1]] = this.givable(ids[0], ids[1]);
    this.uids.add(ids[0]);
    this.gids.add(ids[1]);
    return ids;
  }

  private note(dir: string, base: string): void {
    this.unpacked.add(dir === '.' ? base : `${dir}/${base}`);
  }

  private whiteout(e: ReadEntry, dir: string, wh: NonNullable<ReturnType<typeof parseWhiteout>>): void {
    if (wh.kind === 'meta') return; // AUFS bookkeeping such as .wh..wh.plnk: nothing to make
    const overlay = this.opts.whiteouts === 'overlay';
    if (wh.kind === 'whiteout') {
      const target = dir === '.' ? wh.target : `${dir}/${wh.target}`;
      // the peer makes the missing parents of every name, a whiteout's too (K3)
      if (!overlay) return void this.ops.push({ op: 'parents', path: target }, { op: 'remove', path: target });
      const [uid, gid] = this.owner(e);
      this.note(dir, wh.target);
      this.ops.push(overlayWhiteoutOp(target, uid, gid, e));
      return;
    }
    // opaque directory: what lower layers had in it is hidden
    if (overlay) {
      const known = this.dirs.get(dir);
      const opaque = overlayOpaqueXattr();
      if (dir === '.') {
        // the layer root: no apply op touches it (it is the driver's); only the marker is set,
        // once the tar is in, as the peer accepts a root-level opaque marker
        this.rootOpaque = true;
      } else if (known) {
        known.op.xattrs = [...(known.op.xattrs ?? []), opaque];
        this.ops.push({ ...known.op });
      } else {
        const [uid, gid] = this.owner(e);
        this.ops.push({ op: 'dir', path: dir, mode: 0o755, uid, gid, xattrs: [opaque] });
      }
      return;
    }
    this.ops.push({ op: 'parents', path: e.name }); // K3: the directory itself, if missing
    const under = dir === '.' ? '' : `${dir}/`;
    if (![...this.unpacked].some((n) => n.startsWith(under))) return void this.ops.push({ op: 'clear', path: dir });
    this.pendingOpaque = dir; // rare: entries of this tar are in it; see opaqueAfter
  }

  /**
   * K7, the peer's rule for an opaque marker after entries of the same tar in its directory: every
   * name beneath it that is not an entry of the tar goes, with all it holds; directories the tar
   * made only as parents of its entries too (the peer walks the tree and removes what is not in
   * its unpackedPaths). Run once the ops before the marker are applied.
   */
  opaqueAfter(): void {
    const dir = this.pendingOpaque!;
    this.pendingOpaque = undefined;
    const walk = (d: string) => {
      for (const name of this.existingChildren(d).sort()) {
        const rel = d === '.' ? name : `${d}/${name}`;
        if (!this.unpacked.has(rel)) this.ops.push({ op: 'remove', path: rel });
        else if (fs.lstatSync(path.join(this.root, rel)).isDirectory()) walk(rel);
      }
    };
    walk(dir);
  }

  private existingChildren(dir: string): string[] {
    const abs = path.join(this.root, dir);
    let real: string;
    try {
      real = decodeName(fs.realpathSync(fsPath(abs), { encoding: 'buffer' }));
    } catch {
      return [];
    }
    const rootReal = fs.realpathSync(this.root);
    if (real !== rootReal && !real.startsWith(rootReal + '/')) throw new TarError('ETARPATH', `${dir}: path escapes the layer through a symlink`, dir);
    return fs.readdirSync(fsPath(real), { encoding: 'buffer' }).map((b) => decodeName(b));
  }
}
