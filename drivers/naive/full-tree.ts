// What every full-tree driver does alike: a layer is one directory holding its whole tree (vfs:
// a plain directory, btrfs: a subvolume), so "mounting" is returning it, Diff/Changes/DiffSize
// compare it with its parent's tree, ApplyDiff extracts into it with whiteouts as deletions,
// and an id shift is a chown walk. Drivers add how a layer is made, removed and described.
import fs from 'node:fs';
import type { IdMappings } from '../../lib/idmap.ts';
import { LayersError } from '../../lib/errors.ts';
import type { ApplyDiffOptions, ApplyDiffResult, Change, DiffOptions } from '../driver.ts';
import { applyTar, chownTree, treeChanges, treeDiff, treeDiffSize } from './index.ts';

export abstract class FullTreeDriver {
  abstract readonly name: 'vfs' | 'btrfs';
  abstract readonly home: string;
  /** what a layer's directory is, in errors: 'directory', 'subvolume' */
  protected abstract readonly what: string;
  abstract dir(id: string): string;

  protected existing(id: string): string {
    const d = this.dir(id);
    if (!fs.existsSync(d)) throw new LayersError('EDRIVER', `${this.name}: layer ${id} has no ${this.what} ${d}`);
    return d;
  }

  async exists(id: string): Promise<boolean> {
    return fs.existsSync(this.dir(id));
  }

  async mount(id: string): Promise<string> {
    return this.existing(id);
  }

  async unmount(_id: string): Promise<void> {
    // nothing is mounted: the layer's directory is its view
  }

  async updateIdMappings(id: string, from: IdMappings | undefined, to: IdMappings | undefined): Promise<void> {
    await chownTree(this.existing(id), from, to);
  }

  async diff(id: string, parent: string | undefined, fd: number, opts: DiffOptions = {}): Promise<void> {
    await treeDiff(this.existing(id), parent ? this.existing(parent) : undefined, fd, opts);
  }

  /** Returns the whole ExtractResult (digest, tar size, owners), which the store records. */
  async applyDiff(id: string, _parent: string | undefined, fd: number, opts: ApplyDiffOptions = {}): Promise<ApplyDiffResult> {
    return applyTar(this.existing(id), fd, { whiteouts: 'delete', idMappings: opts.idMappings });
  }

  async changes(id: string, parent: string | undefined, opts: DiffOptions = {}): Promise<Change[]> {
    return treeChanges(this.existing(id), parent ? this.existing(parent) : undefined, opts);
  }

  async diffSize(id: string, parent: string | undefined, opts: DiffOptions = {}): Promise<number> {
    return treeDiffSize(this.existing(id), parent ? this.existing(parent) : undefined, opts);
  }

  async cleanup(): Promise<void> {
    // nothing mounted, nothing to release
  }
}
