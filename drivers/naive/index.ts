// What the drivers share (DESIGN.md section 2): a two-tree diff, a tree copy with reflinks, a
// chown walk by id mappings, and applying a tar onto a full tree. Each is built on the tar
// engine (lib/tar) and the native apply batch, so there is one walk and one copy loop.
import type { IdMappings } from '../../lib/idmap.ts';
import type { Change, DiffOptions } from '../driver.ts';
import type { ExtractResult } from '../../lib/tar/extract.ts';

export interface ApplyTarOptions {
  idMappings?: IdMappings;
  /** 'delete': whiteouts remove what they name (full-tree drivers); 'overlay': they become char 0/0 devices and opaque xattrs */
  whiteouts: 'delete' | 'overlay';
}

/** Copy the contents of src into the existing empty directory dst, keeping owners, modes, times,
 *  xattrs, hardlinks, devices and fifos; file data is reflinked where the filesystem allows. */
export async function copyTree(src: string, dst: string): Promise<void> {
  throw new Error(`copyTree(${src}, ${dst}): not implemented yet`);
}

/** Write the changes of layerDir against parentDir (undefined: everything) as a tar to fd. */
export async function treeDiff(layerDir: string, parentDir: string | undefined, fd: number, opts?: DiffOptions): Promise<void> {
  void opts;
  throw new Error(`treeDiff(${layerDir}, ${parentDir}, ${fd}): not implemented yet`);
}

export async function treeChanges(layerDir: string, parentDir: string | undefined): Promise<Change[]> {
  throw new Error(`treeChanges(${layerDir}, ${parentDir}): not implemented yet`);
}

/** Bytes of file bodies that treeDiff would write. */
export async function treeDiffSize(layerDir: string, parentDir: string | undefined): Promise<number> {
  throw new Error(`treeDiffSize(${layerDir}, ${parentDir}): not implemented yet`);
}

/** Extract the uncompressed tar on fd into layerDir. */
export async function applyTar(layerDir: string, fd: number, opts: ApplyTarOptions): Promise<ExtractResult> {
  throw new Error(`applyTar(${layerDir}, ${fd}, ${opts.whiteouts}): not implemented yet`);
}

/** Shift every owner in dir from one mapping to another; returns how many ids fell outside and became 65534. */
export async function chownTree(dir: string, from: IdMappings | undefined, to: IdMappings | undefined): Promise<{ overflowed: number }> {
  void from; void to;
  throw new Error(`chownTree(${dir}): not implemented yet`);
}
