#!/usr/bin/env bash
# Build the native addon (build/Release/layers_native.node) offline: node-gyp from
# node_modules, pointed at the running Node's own headers (<prefix>/include/node), so neither
# a download nor the user's ~/.npmrc is needed. Builds are serialized with a lock and are
# incremental (configure once, then build), so parallel callers never see a half-built tree
# and a rebuild does not delete the addon under a running test.
set -euo pipefail
cd "$(dirname "$0")/.."
out=build/Release/layers_native.node
fresh() { [ -f "$out" ] && [ -z "$(find native binding.gyp -newer "$out" -print -quit)" ]; }
fresh && exit 0
exec 9>.native-build.lock
flock 9
fresh && exit 0
prefix=$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")
if [ ! -f "$prefix/include/node/node_api.h" ]; then
  echo "build-native: no Node headers under $prefix/include/node" >&2
  exit 1
fi
gyp() { npx --no-install node-gyp "$@" --nodedir="$prefix" --loglevel=warn; }
if [ ! -f build/Makefile ] || [ binding.gyp -nt build/Makefile ]; then gyp configure; fi
gyp build --jobs=2
