#!/usr/bin/env bash
# The peer's own CLI test suite (containers/storage v1.43.0's bats files, kept beside the
# repository in ../shared/upstream) run against `layers`, per driver. Each driver runs in a
# private mount namespace with its temp dirs on a filesystem of its own: vfs and overlay on a
# loop ext4, btrfs on a loop btrfs (the suite's helpers pick the driver's filesystem by TMPDIR).
#   bash hack/peer-suite.sh [--binary PATH] [--suite DIR] [DRIVER ...] [-- BATS-FILE ...]
# --binary runs another CLI (e.g. /usr/bin/containers-storage, to check the suite itself).
# Prints each driver's TAP, then one closing line "N passed, N failed" over all drivers.
set -uo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
suite=${PEER_SUITE:-$repo/../shared/upstream/containers-storage-1.43.0/tests}
binary=
drivers=()
files=()
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) binary=$2; shift 2 ;;
    --suite) suite=$2; shift 2 ;;
    --) shift; files=("$@"); break ;;
    *) drivers+=("$1"); shift ;;
  esac
done
[ ${#drivers[@]} -gt 0 ] || drivers=(vfs overlay btrfs)
[ ${#files[@]} -gt 0 ] || files=(.)
if [ ! -d "$suite" ]; then echo "peer-suite: no suite at $suite" >&2; echo "0 passed, 1 failed"; exit 1; fi
command -v bats >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bats >/dev/null; }

work=$(mktemp -d /tmp/layers-peer-suite.XXXXXX)
trap 'rm -rf "$work"' EXIT
if [ -z "$binary" ]; then
  binary=$work/layers
  printf '#!/bin/sh\nexec node %q "$@"\n' "$repo/bin/layers.js" >"$binary"
  chmod +x "$binary"
fi

pass=0 fail=0 skip=0
known=$repo/hack/peer-suite-known.txt
[ -f "$known" ] || known=/dev/null
for driver in "${drivers[@]}"; do
  case "$driver" in btrfs) fs=btrfs ;; *) fs=ext4 ;; esac
  tap=$work/$driver.tap
  # one namespace per driver: the loop filesystem is mounted there and gone with it
  # the 1.43 suite predates idmapped mounts: idmaps-create-mapped-image counts one mapped top
  # layer per mapping and create-layer --uidmap is expected to shift, so both take that path
  # here (docs/sharing.md, "The peer's own test suite"; docs/images-and-containers.md)
  _CONTAINERS_OVERLAY_DISABLE_IDMAP=yes _CONTAINERS_VFS_DISABLE_IDMAP=yes _CONTAINERS_BTRFS_DISABLE_IDMAP=yes \
  STORAGE_BINARY=$binary STORAGE_DRIVER=$driver unshare -m --propagation private -- bash -c '
    set -u
    img=$1/$2.img mnt=$1/$2.mnt
    truncate -s 4G "$img" && mkdir -p "$mnt"
    if [ "$3" = btrfs ]; then mkfs.btrfs -q "$img"; else mkfs.ext4 -q -F "$img"; fi
    loop=$(losetup --find --show "$img") || exit 1
    mount "$loop" "$mnt" || { losetup -d "$loop"; exit 1; }
    mkdir -p "$mnt/tmp"
    cd "$4"
    shift 5
    TMPDIR=$mnt/tmp BATS_TMPDIR=$mnt/tmp STORAGE_BINARY=$STORAGE_BINARY STORAGE_DRIVER=$STORAGE_DRIVER bats --tap "$@"
    status=$?
    umount "$mnt"; losetup -d "$loop"; rm -f "$img"
    exit $status' peer-suite "$work" "$driver" "$fs" "$suite" -- "${files[@]}" >"$tap" 2>&1 &
  wait $!
  sed "s/^/[$driver] /" "$tap"
  p=$(grep -c '^ok ' "$tap" | tr -d ' '); f=0
  s=$(grep -c '^ok .* # skip' "$tap" | tr -d ' ')
  # a failure listed in hack/peer-suite-known.txt ("DRIVER TEST NAME", with the reason in docs/sharing.md)
  # is counted as skipped and named; a listed test that passes is named too, to be taken off
  while IFS= read -r line; do
    name=${line#not ok * }
    if grep -qxF "$driver $name" "$known" 2>/dev/null; then echo "[$driver] known failure (skipped): $name"; s=$((s + 1))
    else f=$((f + 1)); fi
  done < <(grep '^not ok ' "$tap")
  while IFS= read -r k; do
    case "$k" in "$driver "*) grep -q "^ok [0-9]* ${k#"$driver "}\$" "$tap" && echo "[$driver] listed as known but passed: ${k#"$driver "}" ;; esac
  done < "$known"
  echo "[$driver] $((p - $(grep -c '^ok .* # skip' "$tap"))) passed, $f failed, $s skipped"
  pass=$((pass + p - $(grep -c '^ok .* # skip' "$tap"))); fail=$((fail + f)); skip=$((skip + s))
done
echo "${pass} passed, ${fail} failed, ${skip} skipped"
[ "$fail" -eq 0 ]
