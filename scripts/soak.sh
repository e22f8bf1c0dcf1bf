#!/usr/bin/env bash
# Long randomized runs of the property tests, with random seeds (CI runs
# them with a fixed seed and the persisted regressions only).
#
# Usage: scripts/soak.sh [CASES]      (default 100000 per property)
#
# A failure is printed as a ready-to-paste regression test: add it to the
# test file it names (next to the other regressions) and fix the bug. The
# failing case's seed is also added to proptest-regressions/NAME.txt of
# the crate (crates/test-support/src/properties.rs), which every run
# replays first: commit it with the fix.
set -uo pipefail
cd "$(dirname "$0")/.."
cases=${1:-100000}
export IPN_SOAK=1 IPN_SOAK_CASES=$cases
rm -rf target/soak target/soak-all.log
failed=0

soak() {
  local what=$1; shift
  echo "=== soak: $what ($cases cases, random seeds)"
  if ! cargo test --release -q "$@" 2>&1 | tee target/soak.log | tail -n 5; then
    failed=1
  fi
  cat target/soak.log >> target/soak-all.log
  if grep -q "^watchdog:" target/soak.log; then
    echo "--- a case hung (not shrunk); as a regression test:"
    grep "^watchdog:" target/soak.log | sed -e 's/^watchdog: //' -e 's/ did not finish.*//'
    failed=1
  fi
}

mkdir -p target
soak "shared file scribbled on" -p ipn --test bad_input scribbled_shared_file
soak "offload segmentation" -p ipn --test offload
soak "plugin URLs" -p vdeplug-ipn --test url

if grep -q "minimal failing input" target/soak-all.log 2>/dev/null; then
  echo
  echo "--- proptest's minimal failing inputs:"
  grep "minimal failing input" target/soak-all.log
fi
for f in target/soak/*.rs; do
  [ -e "$f" ] || continue
  echo
  echo "--- failing case, shrunk, as a regression test (crates/ipn/tests/bad_input.rs):"
  cat "$f"
done
if [ "$failed" -ne 0 ]; then
  echo "soak: FAILED"
  exit 1
fi
echo "soak: every case passed"
