// Link names of the overlay driver (docs/on-disk-format.md, "overlay"): each layer has a 26-char
// short name in <home>/<id>/link and a symlink <home>/l/<name> -> ../<id>/diff; <home>/<id>/lower
// lists its ancestors' short paths ('l/A:l/B', nearest first). Mount data names lowers by these
// short paths, so 128 lowers fit in the one page the kernel takes.
// Additional image stores (docs/sharing.md, "Additional image stores"): a layer not in our home is
// looked for in each other store's overlay home, and an 'l/X' lower not in our l/ in each other
// home's l/, as the peer's dir2() and get() look; nothing there is ever written.
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

/** The link names of the layers in one overlay home, and of the additional stores' homes it reads. */
export class LinkNames {
  /** <home>/l */
  readonly links: string;

  /** @param otherHomes the additional image stores' overlay homes (<root>/overlay), searched in order, read only */
  constructor(
    readonly home: string,
    readonly otherHomes: readonly string[] = [],
  ) {
    this.links = path.join(home, LINK_DIR);
  }

  /** whether the layer's directory is in our home (else it is another store's, or none) */
  isOurs(id: string): boolean {
    return fs.existsSync(path.join(this.home, id));
  }

  /** The layer's directory: ours, else the first additional store's that has it (else ours, absent). */
  dirOf(id: string): string {
    const own = path.join(this.home, id);
    if (fs.existsSync(own)) return own;
    return this.otherHomes.map((h) => path.join(h, id)).find((d) => fs.existsSync(d)) ?? own;
  }

  /** The layer's directory as mount data names it: relative to our home (the mount's cwd) when ours, absolute when another store's. */
  mountPath(id: string): string {
    return this.isOurs(id) ? id : this.dirOf(id);
  }

  /** the layer's short name, from its link file (undefined: none) */
  linkOf(id: string): string | undefined {
    return readText(path.join(this.dirOf(id), 'link'));
  }

  /** 'l/A:l/B' of the layer's ancestors, nearest first ('' for a base layer) */
  lowers(id: string): string {
    return readText(path.join(this.dirOf(id), 'lower')) ?? '';
  }

  /**
   * The lower file of a child of parent: the parent's short path, then the parent's own lowers.
   * A parent in another store keeps the names its home gave it (each resolved at mount time, as
   * the peer's getLower writes them); its link is read there, never made.
   */
  childLowers(parent: string): string {
    const parentLower = this.lowers(parent);
    const link = this.isOurs(parent) ? this.ensureLink(parent) : this.linkOf(parent);
    if (!link) throw new LayersError('EDRIVER', `overlay: layer ${parent} of an additional image store has no link file in ${this.dirOf(parent)}`);
    return `${LINK_DIR}/${link}${parentLower ? ':' + parentLower : ''}`;
  }

  /**
   * Where an 'l/X' lower is, as mount data names it: 'l/X' when our l/ has it, else the absolute
   * path of the first additional store's l/X (undefined: nowhere).
   */
  resolveLower(lower: string): string | undefined {
    if (fs.existsSync(path.join(this.home, lower))) return lower;
    return this.otherHomes.map((h) => path.join(h, lower)).find((p) => fs.existsSync(p));
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
   * The layer's lowers as mount data names them (resolveLower), every l/ link of ours in place: a
   * missing link (or link file) is recreated from the other one, as the peer does on start-up. A
   * lower that names no layer any more is an error. A layer of another store is only read.
   */
  checkedLowers(id: string): string {
    if (this.isOurs(id)) this.ensureLink(id);
    const lowers = this.lowers(id);
    if (!lowers) return '';
    const names = lowers.split(':');
    let resolved = names.map((l) => this.resolveLower(l));
    if (resolved.includes(undefined)) {
      for (const other of this.layerIds()) this.ensureLink(other);
      resolved = names.map((l) => this.resolveLower(l));
      const still = names.filter((_, i) => resolved[i] === undefined);
      if (still.length > 0) throw new LayersError('EDRIVER', `overlay: layer ${id} has lower layers that no longer exist: ${still.join(', ')}`);
    }
    return resolved.join(':');
  }

  /** the layer whose diff an l/ path names ('l/X', or another store's absolute one -> id), if it is a link of a home's form */
  layerOfLink(lower: string): string | undefined {
    try {
      return /^\.\.\/([^/]+)\/diff$/.exec(fs.readlinkSync(path.resolve(this.home, lower)))?.[1];
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
