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
# shellcheck disable=SC2086
unshare -m --propagation private -- npx --no-install c8 ava --tap "$@" 2>&1 | tee "$tap"
status=${PIPESTATUS[0]}
pass=$(awk '/^# pass /{print $3}' "$tap" | tail -1)
fail=$(awk '/^# fail /{print $3}' "$tap" | tail -1)
skip=$(awk '/^# skip /{print $3}' "$tap" | tail -1)
todo=$(awk '/^# todo /{print $3}' "$tap" | tail -1)
pass=${pass:-0}; fail=${fail:-0}; skip=$(( ${skip:-0} + ${todo:-0} ))
if [ "$status" -ne 0 ] && [ "$fail" -eq 0 ]; then fail=1; fi
echo "${pass} passed, ${fail} failed, ${skip} skipped"
exit "$status"
