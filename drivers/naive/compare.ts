// The two-tree comparison behind the naive Diff, Changes and DiffSize: walk a layer's full
// tree and its parent's side by side in sorted order and report what was added, modified and
// deleted. It streams: memory grows with the depth of the tree, not its size.
import { childNodes, compareNames, walkBelow, type NodeStat, type TreeNode } from '../../lib/tar/tree.ts';
import { isIdentity, OVERFLOW_ID, sameMappings, toContainer, type IdMappings } from '../../lib/idmap.ts';
import type { ChangeKind } from '../driver.ts';

export interface TreeChange {
  kind: ChangeKind;
  rel: string;
  /** the node in the layer (absent for Delete) */
  node?: TreeNode;
}

/**
 * Changes of `layer` against `parent` (undefined: everything is added), parents before children.
 * As the peer does, a directory whose own metadata did not change is still reported (Modify)
 * when something inside it changed, so that its owner and mode travel with the diff.
 */
export function* compareTrees(layer: string, parent: string | undefined, mappings: OwnerMappings = {}): Generator<TreeChange> {
  if (!parent) {
    for (const node of walkBelow(layer, '.')) yield { kind: 'Add', rel: node.rel, node };
    return;
  }
  const changed = sameMappings(mappings.layer, mappings.parent ?? mappings.layer) ? changedOnDisk : changedInContainer(mappings);
  yield* compareDir(layer, parent, '.', [], changed);
}

/** The id mappings of the two trees: owners compare as container ids when they differ. */
export interface OwnerMappings {
  layer?: IdMappings;
  /** default: the layer's */
  parent?: IdMappings;
}

type Changed = (a: TreeNode, b: TreeNode) => boolean;

/** `pending`: ancestor directories not yet reported, reported as Modify before the first change below them. */
function* compareDir(layer: string, parent: string, dir: string, pending: TreeNode[], changed: Changed): Generator<TreeChange> {
  const a = childNodes(layer, dir);
  const b = childNodes(parent, dir);
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    const node = i < a.length ? a[i] : undefined;
    const old = j < b.length ? b[j] : undefined;
    if (node && (!old || compareNames(node.rel, old.rel) < 0)) {
      i++;
      yield* flush(pending);
      yield { kind: 'Add', rel: node.rel, node };
      if (node.st.isDirectory()) for (const n of walkBelow(layer, node.rel)) yield { kind: 'Add', rel: n.rel, node: n };
      continue;
    }
    if (!node || (old && compareNames(old.rel, node.rel) < 0)) {
      j++;
      yield* flush(pending);
      yield { kind: 'Delete', rel: old!.rel };
      continue;
    }
    i++;
    j++;
    const rel = node.rel;
    const bothDirs = node.st.isDirectory() && old!.st.isDirectory();
    if (!bothDirs && node.st.isDirectory()) {
      // was something else: the whole directory is new
      yield* flush(pending);
      yield { kind: 'Modify', rel, node };
      for (const n of walkBelow(layer, rel)) yield { kind: 'Add', rel: n.rel, node: n };
      continue;
    }
    if (changed(node, old!)) {
      yield* flush(pending);
      yield { kind: 'Modify', rel, node };
      if (bothDirs) yield* compareDir(layer, parent, rel, [], changed);
      continue;
    }
    if (bothDirs) {
      pending.push(node);
      yield* compareDir(layer, parent, rel, pending, changed);
      if (pending[pending.length - 1] === node) pending.pop();
    }
  }
}

function* flush(pending: TreeNode[]): Generator<TreeChange> {
  for (const node of pending) yield { kind: 'Modify', rel: node.rel, node };
  pending.length = 0;
}

/** The peer's rule: type, mode, owner, rdev, link target and xattrs; size and mtime (with
 *  nanoseconds) for everything but directories, whose size and mtime say nothing reliable. */
function changedOnDisk(a: TreeNode, b: TreeNode): boolean {
  return a.st.uid !== b.st.uid || a.st.gid !== b.st.gid || changedBesidesOwner(a, b);
}

/** The same rule with each side's owner seen as the container sees it (an id outside the mappings as the overflow id). */
function changedInContainer(m: OwnerMappings): Changed {
  const seen = (map: IdMappings | undefined, which: 'uidmap' | 'gidmap', id: bigint | number) =>
    isIdentity(map) ? Number(id) : (toContainer(map![which], Number(id)) ?? OVERFLOW_ID);
  const parent = m.parent ?? m.layer;
  return (a, b) =>
    seen(m.layer, 'uidmap', a.st.uid) !== seen(parent, 'uidmap', b.st.uid) ||
    seen(m.layer, 'gidmap', a.st.gid) !== seen(parent, 'gidmap', b.st.gid) ||
    changedBesidesOwner(a, b);
}

function changedBesidesOwner(a: TreeNode, b: TreeNode): boolean {
  const x: NodeStat = a.st;
  const y: NodeStat = b.st;
  if (x.mode !== y.mode || x.rdev !== y.rdev) return true;
  if (!x.isDirectory() && (x.size !== y.size || x.mtimeNs !== y.mtimeNs)) return true;
  if (a.link !== b.link) return true;
  return !sameXattrs(a.xattrs, b.xattrs);
}

function sameXattrs(a: Map<string, Buffer> | undefined, b: Map<string, Buffer> | undefined): boolean {
  const an = a?.size ?? 0;
  if (an !== (b?.size ?? 0)) return false;
  if (an === 0) return true;
  for (const [k, v] of a!) {
    const w = b!.get(k);
    if (!w || !w.equals(v)) return false;
  }
  return true;
}
