// The one typed loader for the C++ addon (native/). Everything that crosses into C++ goes
// through here, so the rest of the code sees typed functions and errno-coded errors.
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import type { IdMap } from './idmap.ts';
import { LayersError, type SystemErrorCode } from './errors.ts';
import { packageRoot } from './package-root.ts';
import { decodeName } from './tar/names.ts';

/** How a body was moved; reported so tests and benchmarks can check the data path. */
export type CopyMethod = 'ficlone' | 'copy_file_range' | 'sendfile' | 'splice' | 'readwrite';
export type CopyRequest = 'auto' | CopyMethod;

/** Errors thrown by the addon look like Node's own fs errors, message included:
 *  "ENOENT: no such file or directory, openat2 'a/b'". Two codes are the addon's own, both with
 *  errno ENODATA: 'ETARTRUNCATED' (apply batch: the input ended inside a body) and 'ESHRANK'
 *  (writeSegments: a file is shorter than its size, or a sparse range lies past its end).
 *  Libuv names EOPNOTSUPP 'ENOTSUP', as Node does. Every such error leaves native() as a
 *  NativeError, part of the one error family (lib/errors.ts); argument errors stay TypeErrors. */
export class NativeError extends LayersError {
  declare readonly code: SystemErrorCode; // 'ENOENT', 'EXDEV', ...
  declare errno: number; // positive errno
  declare syscall: string; // 'openat2', 'copy_file_range', ...
  /** the path (relative to the batch root for batch ops) the failure concerns; for a hardlink
   *  whose target cannot be resolved, the target */
  declare path?: string;
  declare index?: number; // for batch calls: the index of the op or segment that failed
}

/** An error from the addon as a NativeError, kept as it is (message, stack, fields): only its
 *  prototype changes. Anything else (a TypeError for a bad argument) is returned unchanged. */
function asNativeError(err: unknown): unknown {
  const e = err as { code?: unknown; errno?: unknown } | null;
  if (e instanceof Error && typeof e.code === 'string' && typeof e.errno === 'number' && !(e instanceof LayersError)) {
    Object.setPrototypeOf(e, NativeError.prototype);
    const p = (e as { path?: unknown }).path;
    if (Buffer.isBuffer(p)) (e as { path?: unknown }).path = decodeName(p); // not UTF-8: native/names.h
  }
  return err;
}

export interface CopyResult {
  bytes: number;
  method: CopyMethod;
}

export interface Timespec {
  sec: number;
  nsec: number;
}

/** One operation of an apply batch. Paths are relative to the batch root, already normalized
 *  (no '.', '..' or empty components, no leading '/'); the addon resolves each parent directory
 *  with openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS) and acts on the last component with
 *  *at() calls that never follow it, so no op can touch anything outside the root; an escape
 *  attempt fails with EXDEV from openat2. Missing parent directories of a created entry are
 *  made (0755, owned like the root), as tar does. 
 *  An existing entry at the path that is not a directory, or that is a directory where a
 *  non-directory is wanted, is removed first (recursively). An existing directory where a
 *  directory is wanted is kept; its owner, mode and xattrs are updated. Owner is set before mode
 *  (chown clears setuid bits). Directory times are not set by 'dir': send a 'times' op at the end. */
export type ApplyOp =
  | {
      op: 'file';
      path: string;
      mode: number; // permission bits (07777)
      uid: number;
      gid: number;
      mtime: Timespec;
      atime?: Timespec; // defaults to mtime
      xattrs?: Array<[string, Buffer]>;
      srcFd: number; // where the body is read from
      srcOffset: number; // offset of the body in srcFd; -1 = read sequentially from the fd's position (pipes)
      size: number; // bytes stored in srcFd
      /** sparse file: the stored bytes are these data segments of the real file, in order; holes stay holes */
      sparse?: { realSize: number; map: Array<{ offset: number; length: number }> };
      /** feed the body bytes to this hash as they are copied (pipe input: the caller feeds headers and padding) */
      hash?: Sha256;
    }
  | { op: 'dir'; path: string; mode: number; uid: number; gid: number; xattrs?: Array<[string, Buffer]> }
  | {
      op: 'symlink';
      path: string;
      target: string;
      uid: number;
      gid: number;
      mtime: Timespec;
      atime?: Timespec;
      xattrs?: Array<[string, Buffer]>;
    }
  /** only the missing parent directories of path are made (0755, as any op makes them): the peer
   *  makes those of every name in a tar, a whiteout's or a global header's too (docs/tar-engine.md, K3, K8) */
  | { op: 'parents'; path: string }
  /** link path to target (both relative to root); the target is resolved beneath the root and never followed */
  | {
      op: 'hardlink';
      path: string;
      target: string;
      /** with uid: the entry's owner, xattrs and (unless the inode is a symlink) mode and times are
       *  set on the linked inode, as the peer does (docs/tar-engine.md, K4) */
      uid?: number;
      gid?: number;
      mode?: number;
      mtime?: Timespec;
      atime?: Timespec;
      xattrs?: Array<[string, Buffer]>;
      /** the mode and times are set only if this name (the target as the tar wrote it), looked up
       *  as in a chroot to the root without following its last component, is there and is no
       *  symlink: the peer's os.Lstat(linkname) in its chroot (docs/tar-engine.md, K9) */
      statTarget?: string;
    }
  | {
      op: 'mknod';
      path: string;
      mode: number; // includes the file type bits: S_IFCHR, S_IFBLK or S_IFIFO
      major: number;
      minor: number;
      uid: number;
      gid: number;
      mtime: Timespec;
      atime?: Timespec;
      xattrs?: Array<[string, Buffer]>;
    }
  /** remove whatever is at path, recursively; a missing path is not an error */
  | { op: 'remove'; path: string }
  /** remove every child of the directory at path (opaque directory on a full-tree driver); '.' is the root */
  | { op: 'clear'; path: string }
  /** set times without following a symlink */
  | { op: 'times'; path: string; mtime: Timespec; atime?: Timespec };

export interface BatchResult {
  /** body bytes moved, by method */
  bytes: Partial<Record<CopyMethod, number>>;
  ops: number;
}

/** One segment of a tar being written by writeSegments. */
export type TarSegment =
  /** bytes of `data` (headers, padding, end blocks) from `offset` for `length` */
  | { kind: 'bytes'; offset: number; length: number }
  /** `size` bytes of the file at `path` (relative to rootFd; opened O_NOFOLLOW beneath the root),
   *  or of `fd` when given. The file must still have at least `size` bytes (else ENODATA-like error
   *  naming the path: the file shrank). For a sparse file only the `map` ranges are read. */
  | {
      kind: 'file';
      path: string;
      fd?: number;
      size: number;
      sparse?: Array<{ offset: number; length: number }>;
      /** a body of a tar-split record: the file must have exactly `size` bytes, else ELAYERCHANGED
       *  (syscall 'fstat'); when WriteOptions.verifyAfterNs selects it, its CRC-64 must be `crc`
       *  (8 bytes, big-endian), else ELAYERCHANGED (syscall 'read') */
      exact?: boolean;
      crc?: Buffer | null;
    };

export interface WriteOptions {
  rootFd: number; // directory the file paths are relative to
  outOffset: number; // where the first segment goes; -1 = write at the fd's position (pipes, sockets, O_APPEND)
  /** 'auto' picks per the rules in docs/tar-engine.md, "Copy paths"; the others force a method (tests, benchmarks) */
  method?: CopyRequest;
  /** `exact` bodies whose file's ctime (ns) is later than this also have their CRC-64 checked
   *  (0n: all; absent or negative: none) */
  verifyAfterNs?: bigint;
}

export interface WriteResult {
  bytes: Partial<Record<CopyMethod, number>>; // body bytes by method
  written: number; // total bytes written, headers included
}

export interface StatFs {
  type: number; // f_type magic
  bsize: number;
  blocks: number;
  bfree: number;
  bavail: number;
}

/** A running sha256 (OpenSSL's EVP from the Node binary), fed from JS and from native copies. */
export interface Sha256 {
  update(data: Buffer): void;
  /** 'sha256:<hex>'; the hash cannot be updated afterwards */
  digest(): string;
}

/** A running CRC-64 with the ISO table, as Go's hash/crc64 computes it: the checksum tar-split
 *  records for each file body (docs/tar-engine.md, "tar-split records"). */
export interface Crc64 {
  update(data: Buffer): void;
  /** the checksum so far as 8 bytes, big-endian (Go's Sum); the CRC can still be updated */
  sum(): Buffer;
  /** back to the checksum of no bytes */
  reset(): void;
}

/** One child of a directory as scanDir returns it (an array, to keep the crossing cheap):
 *  [name, mode, uid, gid, size, mtimeSec, mtimeNsec, rdev, nlink, ino, dev, linkTarget?, xattrs?].
 *  A name, target or xattr name that is not valid UTF-8 comes as a Buffer of its bytes
 *  (lib/tar/names.ts decodeName makes it a name; docs/tar-engine.md, "Names"). Paths passed to
 *  the addon are names: their exact bytes are used (a Buffer is taken too). */
export type ScanEntry = [
  string | Buffer, number, number, number, number, number, number, number, number, number, number,
  (string | Buffer | undefined)?,
  (Array<[string | Buffer, Buffer]> | undefined)?,
];

export interface Native {
  /** every child of a directory (not following a final symlink), sorted by name bytes */
  scanDir(path: string, withXattrs: boolean): ScanEntry[];
  /** a new running sha256; not to be updated from JS while a hashRange or batch is feeding it */
  sha256(): Sha256;
  /** feed `length` bytes of fd from `offset` to hash on a worker thread (length -1: to EOF); resolves to the bytes hashed */
  hashRange(fd: number, offset: number, length: number, hash: Sha256): Promise<number>;
  /**
   * hashRange of a whole tar file, and with recordFd, on the way, the tar's tar-split record
   * (native/tar-split.cc; docs/tar-engine.md, "tar-split records"), written gzipped to recordFd
   * from offset 0 as it is made (memory stays flat): `tarSplit` true when it is whole there, the
   * bytes disassembleTar would write (`tarSplitSize` of them, `entries` lines); or `declined`
   * says what that walk left to disassembleTar (sparse members, a name twice, a cut tar, a failed
   * write, ...), and what it wrote is to be dropped.
   */
  hashTar(fd: number, hash: Sha256, recordFd?: number): Promise<{ size: number; tarSplit?: boolean; tarSplitSize?: number; entries?: number; declined?: string }>;
  /** a new running CRC-64/ISO; not to be updated from JS while a crc64Range is feeding it */
  crc64(): Crc64;
  /** feed `length` bytes of fd from `offset` to crc on a worker thread (length -1: to EOF); resolves to the bytes read */
  crc64Range(fd: number, offset: number, length: number, crc: Crc64): Promise<number>;
  /**
   * Inflate zstd input into outFd (written at its position) with the system libzstd
   * (libzstd.so.1), on a worker thread (native/zstd.cc): `prefix` (bytes already read from a pipe)
   * first, then inFd read at inOffset (a file) or, with -1, at its position (a pipe) to EOF.
   * Every input byte is fed to `hash`; progress[0] is the input bytes read so far. Bad or cut
   * data rejects with code ECOMPRESSION ("bad zstd data: ..."); an I/O error with its errno and
   * syscall ('read', 'pread' or 'write'). Before each 1 MiB chunk it stops with ECANCELED once
   * cancel() was called or abort[0] (set by the caller when its AbortSignal fires) is non-zero.
   */
  zstdDecompress(inFd: number, inOffset: number, outFd: number, prefix: Buffer, hash: Sha256, progress: Float64Array, abort?: Int32Array): Promise<{ read: number; written: number }>;
  /**
   * Compress inFd (a regular file, read from offset 0 to EOF) into outFd (a file or pipe, written
   * at its position) at `level` (3: the zstd command's default), one frame with a checksum, on a
   * worker thread in fixed buffers (native/zstd.cc); stops with ECANCELED as zstdDecompress does.
   */
  zstdCompress(inFd: number, outFd: number, level: number, abort?: Int32Array): Promise<{ read: number; written: number }>;
  /** the libzstd version linked in ("1.5.4") */
  zstdVersion: string;
  /** copy `length` bytes; offsets of -1 mean "the fd's position". Returns fewer bytes only at EOF of the input.
   *  'auto' tries copy_file_range, then sendfile (output pipe/socket) or splice (input pipe), then read/write;
   *  the fallbacks are taken on EXDEV, ENOSYS, EOPNOTSUPP, EINVAL, EPERM, EIO, EBADF or a first call that copies 0.
   *  'auto' starts with splice for a pipe input read at its position, with sendfile for an output written at its
   *  position, and on btrfs/xfs with read/write unless both offsets are block-aligned. A forced method still
   *  falls back when it cannot run; 'ficlone' here means 'auto' (use ficlone() for a whole-file clone).
   *  `method` is the one that moved the bytes. */
  copyRange(inFd: number, inOffset: number, outFd: number, outOffset: number, length: number, method?: CopyRequest): CopyResult;
  /** FICLONE: whole-file reflink of src into dst */
  ficlone(srcFd: number, dstFd: number): void;
  /** undefined when the attribute does not exist (ENODATA) */
  lgetxattr(path: string, name: string): Buffer | undefined;
  lsetxattr(path: string, name: string, value: Buffer, flags?: number): void;
  llistxattr(path: string): string[];
  lremovexattr(path: string, name: string): void;
  /** mode includes the file type bits (S_IFCHR, S_IFBLK, S_IFIFO) */
  mknod(path: string, mode: number, major: number, minor: number): void;
  lchown(path: string, uid: number, gid: number): void;
  /** utimensat(AT_SYMLINK_NOFOLLOW) with nanoseconds */
  lutimes(path: string, atime: Timespec, mtime: Timespec): void;
  /** openat2(2); dirfd may be AT_FDCWD (-100). O_CLOEXEC is always added. Returns the new fd. */
  openat2(dirfd: number, path: string, flags: number, mode: number, resolve: number): number;
  fstatfs(fd: number): StatFs;
  /** every owner in the tree at root (root included, not following symlinks, each inode once)
   *  moved from host ids under the `from` maps to the same container ids under the `to` maps
   *  (an empty map: the identity), on a worker thread; setuid/setgid bits and
   *  security.capability, which chown clears, are put back. Resolves to the count of ids with
   *  no place in `to`, which became 65534 */
  shiftOwners(root: string, fromUid: IdMap[], fromGid: IdMap[], toUid: IdMap[], toGid: IdMap[]): Promise<number>;
  /** the data ranges of the file at path beneath dirfd (SEEK_DATA/SEEK_HOLE), flattened
   *  [offset, length, ...]; [] for a file that is all hole, [0, size] where holes are not reported */
  dataRanges(dirfd: number, path: string): number[];
  /** flock(fd, LOCK_EX | LOCK_NB): true when taken, false while another open file holds it;
   *  the kernel drops it when the holder's fd closes, also when the process is killed */
  tryLockExclusive(fd: number): boolean;
  /** fcntl(F_OFD_SETLKW) on the whole file, waiting on a worker thread: 'r' shared, 'w' exclusive.
   *  Open-file-description locks conflict with the POSIX record locks containers/storage takes and
   *  with each other (also between two open files of one process); closing another fd of the
   *  file does not drop them (docs/sharing.md, "Locks") */
  ofdLock(fd: number, type: 'r' | 'w'): Promise<void>;
  /** fcntl(F_OFD_SETLK): true when taken, false while a conflicting lock is held */
  ofdTryLock(fd: number, type: 'r' | 'w'): boolean;
  /** fcntl(F_OFD_SETLK, F_UNLCK) on the whole file */
  ofdUnlock(fd: number): void;
  /** fcntl(F_OFD_GETLK): null when a lock of that type could be taken now, else a conflicting one;
   *  pid is its holder's for a POSIX lock, -1 for an OFD lock */
  ofdGetLock(fd: number, type: 'r' | 'w'): { type: 'r' | 'w'; pid: number } | null;
  /** the process-wide cancel flag (native/cancel.h), never cleared: from now on apply batches,
   *  writeSegments and shiftOwners fail with ECANCELED before their next file (the CLI's
   *  SIGINT/SIGTERM handler, docs/cli.md "Signals"); a body being copied is finished first */
  cancel(): void;
  /** run an apply batch on a worker thread beneath rootFd */
  /** parentOwner [uid, gid]: the owner of the missing parent directories the ops make (default:
   *  the root's; in a setgid directory the group stays the one the kernel gives) */
  applyBatch(rootFd: number, ops: ApplyOp[], parentOwner?: [number, number]): Promise<BatchResult>;
  /** the same on the calling thread (used for pipe input, where each body must be read before the next header) */
  applyBatchSync(rootFd: number, ops: ApplyOp[], parentOwner?: [number, number]): BatchResult;
  /** write segments to outFd on a worker thread; `data` holds the bytes segments */
  writeSegments(outFd: number, data: Buffer, segments: TarSegment[], opts: WriteOptions): Promise<WriteResult>;
  /** mount(2); a null source, fstype or data is passed as NULL. flags from mountFlags */
  mount(source: string | null, target: string, fstype: string | null, flags: number, data: string | null): void;
  /** umount2(2); flags from mountFlags (MNT_DETACH, ...) */
  umount2(target: string, flags: number): void;
  /** an fd of a new user namespace whose uid_map and gid_map hold these texts (/proc/PID/uid_map lines); the caller closes it */
  createUserns(uidMap: string, gidMap: string): number;
  /** an idmapped clone of source's mount (open_tree, mount_setattr MOUNT_ATTR_IDMAP with the user namespace fd, move_mount) onto target */
  mountIdmapped(source: string, target: string, usernsFd: number, recursive?: boolean): void;
  /** BTRFS_IOC_SUBVOL_CREATE: a new empty subvolume `name` in directory `dir` */
  btrfsSubvolCreate(dir: string, name: string): void;
  /** BTRFS_IOC_SNAP_CREATE_V2: a snapshot of the subvolume at `src` as `name` in `dir` */
  btrfsSnapshot(src: string, dir: string, name: string, readOnly?: boolean): void;
  /** BTRFS_IOC_SNAP_DESTROY of subvolume `name` in `dir`; ENOTEMPTY while it holds another subvolume */
  btrfsSubvolDelete(dir: string, name: string): void;
  /** whether path (not followed if a symlink) is a directory on btrfs with inode 256, a subvolume root */
  btrfsIsSubvolume(path: string): boolean;
  /** the subvolume's read-only property (BTRFS_IOC_SUBVOL_GETFLAGS / SETFLAGS) */
  btrfsGetReadOnly(path: string): boolean;
  btrfsSetReadOnly(path: string, readOnly: boolean): void;
  /** BTRFS_IOC_QUOTA_CTL(ENABLE) on the filesystem holding path; a no-op when quotas are on */
  btrfsQuotaEnable(path: string): void;
  /** BTRFS_IOC_QGROUP_LIMIT: cap the bytes the subvolume at path references */
  btrfsQgroupLimit(path: string, maxReferenced: number): void;
  /** BTRFS_IOC_FS_INFO: the filesystem's uuid, as /sys/fs/btrfs/<uuid> names it */
  btrfsFsid(path: string): string;
  mountFlags: {
    MS_RDONLY: number;
    MS_NOSUID: number;
    MS_NODEV: number;
    MS_REC: number;
    MS_PRIVATE: number;
    MNT_FORCE: number;
    MNT_DETACH: number;
    UMOUNT_NOFOLLOW: number;
  };
  constants: {
    RESOLVE_NO_XDEV: number;
    RESOLVE_NO_MAGICLINKS: number;
    RESOLVE_NO_SYMLINKS: number;
    RESOLVE_BENEATH: number;
    RESOLVE_IN_ROOT: number;
    O_PATH: number;
    AT_FDCWD: number;
    BTRFS_SUPER_MAGIC: number;
    XFS_SUPER_MAGIC: number;
    EXT4_SUPER_MAGIC: number;
    TMPFS_MAGIC: number;
    OVERLAYFS_SUPER_MAGIC: number;
  };
}

/** Where the addon is looked for, in node-gyp-build's order (docs/api.md, "Installing"): a local
 *  build (build/Release or build/Debug: hack/build-native.sh, or `npm rebuild` in a consumer), then
 *  the prebuilt binary the package ships (prebuilds/<platform>-<arch>/layers.glibc.node). */
export const addonPlaces = [
  path.join(packageRoot, 'build', '{Release,Debug}', '*.node'),
  path.join(packageRoot, 'prebuilds', `${process.platform}-${process.arch}`, '*.node'),
];

/** How to build the addon here: a git checkout has hack/; an installed package builds through npm
 *  (its install script, `node-gyp-build`, runs node-gyp when no prebuilt binary matches). */
function howToBuild(): string {
  return fs.existsSync(path.join(packageRoot, 'hack', 'build-native.sh'))
    ? "build it with 'bash hack/build-native.sh'"
    : "build it with 'npm rebuild layers' in the project that installed it, its install script allowed (docs/api.md, \"Installing\")";
}

/** The addon is not built, or cannot be loaded: one line saying where it looked (or which file
 *  failed to load, and why) and how to build it; what node-gyp-build or require said is in `tried`. */
export class AddonMissingError extends LayersError {
  constructor(readonly tried: string[], loadFailure?: string) {
    super(
      'ENATIVE',
      `${loadFailure ? `the native addon cannot be loaded (${loadFailure})` : `the native addon is not built for ${process.platform}-${process.arch} (looked for ${addonPlaces.join(' and ')})`}: ${howToBuild()} (needs python3, make and g++)`,
    );
    this.name = 'AddonMissingError';
  }
}

/** Every function of the addon, with its errors (thrown, or a rejected promise) made NativeErrors. */
function withNativeErrors(addon: Record<string, unknown>): Native {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(addon)) {
    if (typeof value !== 'function') {
      out[key] = value;
      continue;
    }
    const fn = value as (...args: unknown[]) => unknown;
    out[key] = (...args: unknown[]) => {
      try {
        const r = fn(...args);
        return r instanceof Promise ? r.catch((err: unknown) => Promise.reject(asNativeError(err))) : r;
      } catch (err) {
        throw asNativeError(err);
      }
    };
  }
  return out as unknown as Native;
}

let loaded: Native | undefined;

/**
 * The addon, loaded on first use and kept. Nothing loads it at import time, so commands that
 * need no native call (`--help`, `version`) run where the build failed, and say so only when a
 * command needs it (docs/architecture.md, "Native addon").
 */
export function native(): Native {
  if (loaded) return loaded;
  const require = createRequire(import.meta.url);
  const firstLine = (err: unknown): string => (err as Error).message.split('\n')[0] ?? '';
  let file: string;
  try {
    file = (require('node-gyp-build') as { path(dir: string): string }).path(packageRoot);
  } catch (err) {
    throw new AddonMissingError([firstLine(err)]);
  }
  try {
    loaded = withNativeErrors(require(file) as Record<string, unknown>);
  } catch (err) {
    throw new AddonMissingError([`${file}: ${firstLine(err)}`], `${file}: ${firstLine(err)}`);
  }
  return loaded;
}
