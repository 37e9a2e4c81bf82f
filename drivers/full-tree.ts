// The core parts every full-tree driver shares: a layer is one directory holding its whole tree
// (vfs: a plain directory, btrfs: a subvolume), so "mounting" is returning it and an id shift is a
// chown walk. Diffs are the naive differ's, on that directory (NaiveDiffDriver). Drivers add how a
// layer is made, removed and described.
import fs from 'node:fs';
import type { IdMappings } from '../lib/idmap.ts';
import { LayersError } from '../lib/errors.ts';
import { NaiveDiffDriver } from './naive/index.ts';
import { chownTree } from './trees.ts';

export abstract class FullTreeDriver extends NaiveDiffDriver {
  abstract override readonly name: 'vfs' | 'btrfs';
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

  async cleanup(): Promise<void> {
    // nothing mounted, nothing to release
  }
}
