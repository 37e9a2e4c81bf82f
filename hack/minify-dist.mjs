// Minify the library's compiled JavaScript in dist/lib/ and dist/drivers/ (whitespace, comments,
// syntax; identifiers kept, so stack traces and error names read as in the sources): the package
// ships it, and its comments made up half of the tarball's JavaScript (docs/api.md, "Installing").
// The declarations (.d.ts) keep their comments: they are the API's documentation in editors.
// The tsc source maps no longer match the minified files, so they are removed (the package left
// them out already); develop against the sources (tests run them through tsx).
import { transform } from 'esbuild';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');

function* jsFiles(dir) {
  for (const d of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, d.name);
    if (d.isDirectory()) yield* jsFiles(p);
    else if (d.name.endsWith('.js')) yield p;
  }
}

for (const top of ['lib', 'drivers']) {
  for (const file of jsFiles(path.join(root, 'dist', top))) {
    const { code } = await transform(fs.readFileSync(file, 'utf8'), {
      format: 'esm',
      target: 'node20',
      minifyWhitespace: true,
      minifySyntax: true,
      keepNames: true,
      legalComments: 'none',
    });
    fs.writeFileSync(file, code);
    fs.rmSync(`${file}.map`, { force: true });
  }
}
