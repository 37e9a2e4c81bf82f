// `layers layers --tree`: layers under their parents, drawn as the peer draws them: a root line
// ("(base)" for layers without a parent, or the id of a parent that is not a layer), then
// children with ├─ / └─, and each child's notes (names, mounts) indented beneath it.

export interface TreeNode {
  parent: string;
  id: string;
  notes: string[];
}

export function drawTree(nodes: TreeNode[]): string {
  const kids = new Map<string, TreeNode[]>();
  for (const n of nodes) kids.set(n.parent, [...(kids.get(n.parent) ?? []), n]);
  const ids = new Set(nodes.map((n) => n.id));
  const roots = [...kids.keys()].filter((p) => !ids.has(p));
  const lines: string[] = [];
  const walk = (parent: string, prefix: string) => {
    const children = kids.get(parent) ?? [];
    children.forEach((c, i) => {
      const last = i === children.length - 1;
      lines.push(`${prefix}${last ? '└─' : '├─'}${c.id}`);
      for (const note of c.notes) lines.push(`${prefix}${last ? ' ' : '│'} ${note}`);
      walk(c.id, prefix + (last ? '  ' : '│ '));
    });
  };
  for (const r of roots) {
    lines.push(r);
    walk(r, '');
  }
  return lines.map((l) => l + '\n').join('');
}
