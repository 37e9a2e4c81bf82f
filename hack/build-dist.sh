#!/usr/bin/env bash
# Build the package's JavaScript into dist/ (`npm run build`; docs/api.md, "Installing"):
# - dist/lib/, dist/drivers/: lib/ and drivers/ compiled one file for one file (ESM and
#   .d.ts), what `import 'layers'` loads;
# - the library's JavaScript minified, identifiers kept (hack/minify-dist.mjs says why);
# - dist/cli/main.js: the CLI (lib/cli/) bundled into one file that imports the library from
#   dist/lib/ only when a command opens a store (hack/bundle-cli.mjs says why).
# dist/.built is touched last: bin/layers.js in a checkout runs dist/ only while it is newer than
# every source file.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf dist
npx --no-install tsc -p tsconfig.build.json
node hack/bundle-cli.mjs
node hack/minify-dist.mjs
touch dist/.built
