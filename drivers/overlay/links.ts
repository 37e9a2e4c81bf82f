// Link names of the overlay driver (docs/on-disk-format.md, "overlay"): each layer has a 26-char
// short name in <home>/<id>/link and a symlink <home>/l/<name> -> ../<id>/diff; <home>/<id>/lower
// lists its ancestors' short paths ('l/A:l/B', nearest first). Mount data names lowers by these
// short paths, so 128 lowers fit in the one page the kernel takes.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { LayersError } from '../../lib/errors.ts';

export const LINK_DIR = 'l';
const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

/** A short name as the peer makes them: 26 base32 characters (128 random bits). */
export function newLinkName(): string {
  const bytes = randomBytes(17);
  let bits = 0;
  let acc = 0;
  let out = '';
  for (const b of bytes) {
    acc = (acc << 8) | b;
    bits += 8;
    while (bits >= 5 && out.length < 26) {
      bits -= 5;
      out += BASE32[(acc >> bits) & 31];
    }
  }
  return out;
}

export function readText(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** The link names of the layers in one overlay home. */
export class LinkNames {
  /** <home>/l */
  readonly links: string;

  constructor(readonly home: string) {
    this.links = path.join(home, LINK_DIR);
  }

  /** the layer's short name, from its link file (undefined: none) */
  linkOf(id: string): string | undefined {
    return readText(path.join(this.home, id, 'link'));
  }

  /** 'l/A:l/B' of the layer's ancestors, nearest first ('' for a base layer) */
  lowers(id: string): string {
    return readText(path.join(this.home, id, 'lower')) ?? '';
  }

  /** The lower file of a child of parent: the parent's short path, then the parent's own lowers. */
  childLowers(parent: string): string {
    const parentLower = this.lowers(parent);
    return `${LINK_DIR}/${this.ensureLink(parent)}${parentLower ? ':' + parentLower : ''}`;
  }

  /** A new short name for a new layer: its l/ symlink and link file. */
  makeLink(id: string): void {
    const link = newLinkName();
    fs.symlinkSync(`../${id}/diff`, path.join(this.links, link));
    fs.writeFileSync(path.join(this.home, id, 'link'), link);
  }

  removeLink(id: string): void {
    const link = this.linkOf(id);
    if (link) fs.rmSync(path.join(this.links, link), { force: true });
  }

  /** The layer's short name, its link file and l/ symlink made good when one of them is missing. */
  ensureLink(id: string): string {
    const file = path.join(this.home, id, 'link');
    let link = readText(file);
    if (!link) {
      link = this.linkPointingAt(id) ?? newLinkName();
      fs.writeFileSync(file, link);
    }
    const sym = path.join(this.links, link);
    if (!fs.lstatSync(sym, { throwIfNoEntry: false })) {
      try {
        fs.symlinkSync(`../${id}/diff`, sym);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
    }
    return link;
  }

  /** the l/ entry whose target is this layer's diff, if any */
  private linkPointingAt(id: string): string | undefined {
    for (const name of fs.readdirSync(this.links)) {
      try {
        if (fs.readlinkSync(path.join(this.links, name)) === `../${id}/diff`) return name;
      } catch {
        // not a symlink: not ours
      }
    }
    return undefined;
  }

  /**
   * The layer's lowers, every l/ link in place: a missing link (or link file) is recreated from
   * the other one, as the peer does on start-up. A lower that names no layer any more is an error.
   */
  checkedLowers(id: string): string {
    this.ensureLink(id);
    const lowers = this.lowers(id);
    if (!lowers) return '';
    const missing = lowers.split(':').filter((l) => !fs.existsSync(path.join(this.home, l)));
    if (missing.length === 0) return lowers;
    for (const other of this.layerIds()) this.ensureLink(other);
    const still = missing.filter((l) => !fs.existsSync(path.join(this.home, l)));
    if (still.length > 0) throw new LayersError('EDRIVER', `overlay: layer ${id} has lower layers that no longer exist: ${still.join(', ')}`);
    return lowers;
  }

  /** the layer whose diff an l/ path names ('l/X' -> id), if it is a link of this home's form */
  layerOfLink(lower: string): string | undefined {
    try {
      return /^\.\.\/([^/]+)\/diff$/.exec(fs.readlinkSync(path.join(this.home, lower)))?.[1];
    } catch {
      return undefined;
    }
  }

  /** every layer of the home (a directory with a diff dir) */
  layerIds(): string[] {
    return fs.readdirSync(this.home).filter((n) => n !== LINK_DIR && fs.existsSync(path.join(this.home, n, 'diff')));
  }

  /** Every layer with this one among its lowers. */
  dependents(id: string): string[] {
    const link = this.linkOf(id);
    if (!link) return [];
    const mine = `${LINK_DIR}/${link}`;
    return this.layerIds().filter((other) => other !== id && this.lowers(other).split(':').includes(mine));
  }
}
