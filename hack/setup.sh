#!/usr/bin/env bash
# Install what a fresh machine lacks (Debian packages and npm dependencies) and build the
# native addon. Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v mkfs.btrfs >/dev/null || need+=(btrfs-progs)
command -v mkfs.xfs >/dev/null || need+=(xfsprogs)
command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)
command -v containers-storage >/dev/null || need+=(containers-storage)
command -v losetup >/dev/null || need+=(mount)
command -v unshare >/dev/null || need+=(util-linux)
command -v attr >/dev/null || need+=(attr)
command -v bats >/dev/null || need+=(bats)
command -v python3 >/dev/null || need+=(python3)
command -v make >/dev/null || need+=(make)
command -v g++ >/dev/null || need+=(g++)
# the addon inflates zstd layers with the system's libzstd (binding.gyp, native/zstd.cc)
[ -f /usr/include/zstd.h ] || need+=(libzstd-dev)
# xz and bzip2 layers are decompressed by their commands (lib/store/input.ts); the tests and
# benchmarks make zstd layers with the zstd command
command -v zstd >/dev/null || need+=(zstd)
command -v xz >/dev/null || need+=(xz-utils)
command -v bzip2 >/dev/null || need+=(bzip2)
# tests/cli/podman.test.ts runs podman on a store layers made (with --network none: nothing of theirs needs a network)
command -v podman >/dev/null || need+=(podman)
command -v runc >/dev/null || need+=(runc)
# tests/store/skopeo.test.ts copies images out of our stores with skopeo
command -v skopeo >/dev/null || need+=(skopeo)
# the tar-split tests apply tars written by bsdtar too
command -v bsdtar >/dev/null || need+=(libarchive-tools)
# tests/store/memory-2g.test.ts takes the CLI's peak RSS from GNU time (-f %M)
[ -x /usr/bin/time ] || need+=(time)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then echo "setup: need root to install: ${need[*]}" >&2; exit 1; fi
  echo "setup: installing ${need[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
bash hack/build-native.sh
# The package's JavaScript (dist/): bin/layers.js runs it while it is newer than every source file
# (it starts in a fifth of the time tsx takes), and the TypeScript through tsx otherwise.
bash hack/build-dist.sh
# The prebuilt addon the package ships (prebuilds/; `npm pack` builds it too).
bash hack/build-prebuilds.sh
