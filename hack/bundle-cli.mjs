// Bundle the CLI (lib/cli/) into dist/cli/main.js: one file to read at start-up instead of some
// twenty modules, so `layers version` and `--help` take about 1.2x the time of `node -e 0`
// (docs/api.md, "Installing"). Only lib/cli/ goes into the bundle: every import of the rest of
// lib/ stays an import of its compiled file in dist/lib/ (which tsc writes first), so the package
// holds each module once and the CLI shares the library's classes (LayersError) with it. The
// library itself (lib/index.ts) is imported only when a command opens a store (lib/cli/command.ts).
import { build } from 'esbuild';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const cliDir = path.join(root, 'lib', 'cli') + path.sep;
const outDir = path.join(root, 'dist', 'cli');

/** An import of a lib/ file outside lib/cli/ becomes an external import of dist/lib/<same>.js. */
const libOutsideCli = {
  name: 'lib-outside-cli',
  setup(b) {
    b.onResolve({ filter: /^\.\.?\// }, (args) => {
      const file = path.resolve(args.resolveDir, args.path);
      if (file.startsWith(cliDir) || !file.endsWith('.ts')) return undefined;
      const compiled = path.join(root, 'dist', path.relative(root, file)).replace(/\.ts$/, '.js');
      return { path: './' + path.relative(outDir, compiled), external: true };
    });
  },
};

await build({
  entryPoints: [path.join(cliDir, 'main.ts')],
  outfile: path.join(outDir, 'main.js'),
  bundle: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  packages: 'external',
  // minified, local names too (the CLI's own code: its errors reach users as messages; the
  // library it calls keeps its names, hack/minify-dist.mjs)
  minify: true,
  keepNames: true,
  legalComments: 'none',
  plugins: [libOutsideCli],
  logLevel: 'warning',
});
