// The shapes every part of the tar engine shares: one entry of a tar as we see it after the
// header codec has folded PAX, GNU long names and sparse maps into it.
import type { Timespec } from '../native.ts';

export type EntryType = 'file' | 'hardlink' | 'symlink' | 'char' | 'block' | 'dir' | 'fifo';

export interface SparseMap {
  /** size of the file with its holes */
  realSize: number;
  /** data segments of the real file, stored one after another in the tar body */
  map: Array<{ offset: number; length: number }>;
}

export interface TarEntry {
  /** relative path as stored, normalized: no leading './' or '/', no trailing '/' ('.' is the root) */
  name: string;
  type: EntryType;
  /** permission bits including setuid, setgid and sticky (07777) */
  mode: number;
  uid: number;
  gid: number;
  uname?: string;
  gname?: string;
  /** bytes of body stored in the tar (for a sparse file: the data segments only) */
  size: number;
  mtime: Timespec;
  atime?: Timespec;
  ctime?: Timespec;
  /** symlink target, or the hardlink's target name */
  linkname?: string;
  /** a hardlink's target as the tar wrote it, when normalizing changed it ('a/../b', 'b/'): the
   *  peer stats this name (docs/tar-engine.md, "One tree", K9) */
  linknameAsWritten?: string;
  devmajor?: number;
  devminor?: number;
  /** extended attributes with raw byte values (SCHILY.xattr.*) */
  xattrs?: Map<string, Buffer>;
  sparse?: SparseMap;
  /** any other PAX records, kept so nothing is silently dropped */
  pax?: Record<string, string>;
}

/** An entry as read from a tar: where its header blocks start and where its body starts. */
export interface ReadEntry extends TarEntry {
  /** offset of the first header block (PAX/GNU extension blocks included) */
  headerOffset: number;
  /** offset of the body's first byte (for PAX 1.0 sparse files: after the in-body map) */
  dataOffset: number;
}
