#!/usr/bin/env bash
# The test command: set up a fresh machine if needed, then run the whole suite as root in a
# private mount namespace (so no mount a test makes is seen outside it), under c8, and print
# the closing line "N passed, N failed, N skipped" from ava's TAP counts.
set -uo pipefail
cd "$(dirname "$0")/.."
bash hack/setup.sh || { echo "0 passed, 1 failed"; exit 1; }
npx --no-install tsc -p tsconfig.json --noEmit || { echo "type check failed"; echo "0 passed, 1 failed"; exit 1; }

tap=$(mktemp)
trap 'rm -f "$tap"' EXIT
# Two ava runs under one c8: the files that time something run after the rest, one at a time
# (ava.config.js says why); named files ("$@") run in one go.
# shellcheck disable=SC2016
unshare -m --propagation private -- npx --no-install c8 bash -c '
  status=0
  if [ $# -gt 0 ]; then
    LAYERS_TESTS=all npx --no-install ava --tap "$@" || status=$?
  else
    LAYERS_TESTS=untimed npx --no-install ava --tap || status=$?
    LAYERS_TESTS=timed npx --no-install ava --tap || status=$?
  fi
  exit "$status"' ava-runs "$@" 2>&1 | tee "$tap"
status=${PIPESTATUS[0]}
count() { awk -v k="$1" '$1 == "#" && $2 == k { n += $3 } END { print n + 0 }' "$tap"; }
pass=$(count pass); fail=$(count fail); skip=$(count skip); todo=$(count todo)
skip=$(( skip + todo ))
if [ "$status" -ne 0 ] && [ "$fail" -eq 0 ]; then fail=1; fi
echo "project tests: ${pass} passed, ${fail} failed, ${skip} skipped"

# The peer's own bats suite (containers/storage v1.43.0) against layers on vfs, overlay and btrfs,
# after the project's tests, counted in the closing line (hack/peer-suite.sh). Not for a run of
# named files; LAYERS_PEER_SUITE=0 leaves it out.
if [ $# -eq 0 ] && [ "${LAYERS_PEER_SUITE:-1}" != 0 ]; then
  peer=$(mktemp)
  bash hack/peer-suite.sh 2>&1 | tee "$peer"
  peer_status=${PIPESTATUS[0]}
  line=$(tail -n 1 "$peer")
  rm -f "$peer"
  if [[ "$line" =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed,\ ([0-9]+)\ skipped$ ]]; then
    pass=$((pass + BASH_REMATCH[1])); fail=$((fail + BASH_REMATCH[2])); skip=$((skip + BASH_REMATCH[3]))
    echo "peer suite: $line"
  else
    echo "peer suite: no closing line"; fail=$((fail + 1))
  fi
  [ "$peer_status" -eq 0 ] || status=1
fi
echo "${pass} passed, ${fail} failed, ${skip} skipped"
exit "$status"
