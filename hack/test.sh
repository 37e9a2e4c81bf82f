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
echo "${pass} passed, ${fail} failed, ${skip} skipped"
exit "$status"
