#!/usr/bin/env bash
# Build the addon that ships in the package (docs/api.md, "Installing"):
# prebuilds/linux-<arch>/layers.glibc.node, a name node-gyp-build (lib/native.ts) matches on
# any glibc Linux of that architecture. prebuildify --napi makes one Node-API build that serves
# every Node version (no ABI tag); --strip drops the symbols; --tag-libc keeps it from being
# picked on musl. Offline: npm_config_nodedir points node-gyp (which prebuildify runs) at the
# running Node's own headers, as hack/build-native.sh does, so no header tarball is downloaded.
# The build runs in a scratch copy of binding.gyp and native/, because node-gyp rebuild starts by
# deleting build/, where the development addon may be in use by running tests. Skipped while the
# prebuild is newer than every native source (npm pack runs this as part of prepack).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
arch=$(node -p process.arch)
out=prebuilds/linux-$arch/layers.glibc.node
if [ -f "$out" ] && [ -z "$(find native binding.gyp -newer "$out" -print -quit)" ]; then exit 0; fi
prefix=$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")
if [ ! -f "$prefix/include/node/node_api.h" ]; then
  echo "build-prebuilds: no Node headers under $prefix/include/node" >&2
  exit 1
fi
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cp -r binding.gyp native package.json "$scratch/"
ln -s "$repo/node_modules" "$scratch/node_modules"
rm -rf "prebuilds/linux-$arch"
npm_config_nodedir="$prefix" npx --no-install prebuildify --napi --strip --tag-libc \
  --target="$(node -p process.versions.node)" --cwd "$scratch" --out "$repo" \
  --cache "$scratch/.gyp" --quiet
test -f "$out"
