#!/usr/bin/env bash
# Build the native addon (build/Release/layers_native.node) offline: node-gyp from
# node_modules, pointed at the running Node's own headers (<prefix>/include/node), so neither
# a download nor the user's ~/.npmrc is needed. Skips the build when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."
out=build/Release/layers_native.node
if [ -f "$out" ] && [ -z "$(find native binding.gyp -newer "$out" -print -quit)" ]; then
  exit 0
fi
prefix=$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")
if [ ! -f "$prefix/include/node/node_api.h" ]; then
  echo "build-native: no Node headers under $prefix/include/node" >&2
  exit 1
fi
npx --no-install node-gyp rebuild --nodedir="$prefix" --jobs=2 --loglevel=warn
