// docs/architecture.md's "Files" section names every file of lib/ and drivers/ with what it
// holds; this keeps the list and the tree from drifting apart.
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { packageRoot } from '../lib/package-root.ts';

function sourceFiles(dir: string): string[] {
  return fs.readdirSync(path.join(packageRoot, dir), { withFileTypes: true }).flatMap((e) => {
    const p = `${dir}/${e.name}`;
    if (e.isDirectory()) return sourceFiles(p);
    return e.name.endsWith('.ts') ? [p] : [];
  });
}

test('docs/architecture.md lists every file of lib/ and drivers/, and only those', (t) => {
  const doc = fs.readFileSync(path.join(packageRoot, 'docs', 'architecture.md'), 'utf8');
  const section = doc.slice(doc.indexOf('\n## Files\n'), doc.indexOf('\n## ', doc.indexOf('\n## Files\n') + 1));
  t.true(section.length > 100, 'a Files section');
  const listed = [...section.matchAll(/^- `((?:lib|drivers)\/[^`]+\.ts)` — \S/gm)].map((m) => m[1]);
  const tree = [...sourceFiles('lib'), ...sourceFiles('drivers')];
  t.deepEqual([...listed].sort(), [...new Set(listed)].sort(), 'each file once');
  t.deepEqual(
    tree.filter((f) => !listed.includes(f)),
    [],
    'files missing from the list',
  );
  t.deepEqual(
    listed.filter((f) => !tree.includes(f)),
    [],
    'listed files that do not exist',
  );
});
