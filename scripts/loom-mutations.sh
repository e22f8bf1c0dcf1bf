#!/usr/bin/env bash
# Proves that the loom models (crates/ipn/src/loom_tests.rs) catch what
# they claim to: each mutation below breaks the concurrency core on
# purpose (a fence removed, an ordering weakened, a dead port waited for),
# in a scratch copy of the sources, and loom must then FAIL. A mutation
# that loom lets pass fails this script: either a model lost its teeth or
# the mutation is one loom cannot see (then it belongs in the module
# doc's list of what is not caught, not here).
#
# The unmutated copy is model-checked first: it must pass.
#
# Not here because loom cannot catch them (see the module doc): the
# lossless cursor's Release (reader, port/recv.rs) and Acquire (sender,
# port/send.rs) weakened to Relaxed. Both were tried: loom passes.
#
# Usage: scripts/loom-mutations.sh [NAME...]   (default: every mutation)
# Run by scripts/test.sh, after the models themselves. Each mutation
# rebuilds the crate and runs every model: about 75 s of CPU for all
# (7m47s of wall time on two vCPUs busy with other builds).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
scratch=$root/target/loom-mutations/src
# A target dir of its own, seeded with a copy of the loom build's (its
# dependencies, built with --cfg loom once). Not the loom build's itself:
# cargo names a workspace's crates by their path within the workspace, so
# the scratch copy's mutated `ipn` would overwrite the real one there, and
# the sources being older than it, the next `cargo test` of the models
# would run the last mutation without rebuilding (and fail).
mutants_target=$root/target/loom-mutations/target
if [ ! -d "$mutants_target" ] && [ -d "$root/target/loom" ]; then
  mkdir -p "$mutants_target"
  cp -a "$root/target/loom/." "$mutants_target/"
fi
export CARGO_TARGET_DIR=$mutants_target
export RUSTFLAGS="--cfg loom"

# NAME|FILES|PERL|WHAT: PERL (substitutions) runs on each of FILES
# (comma-separated) and must change each.
mutations=(
  "arm-without-fence|crates/ipn/src/wake.rs|s/(entry\.armed\.store\(1, Ordering::SeqCst\);)\n    fence\(Ordering::SeqCst\);/\$1/|the sleeper arms without the full fence before its last look (lost wake-up)"
  "send-without-fence|crates/ipn/src/port/send.rs|s/\n        fence\(Ordering::SeqCst\);\n        \/\/ A reader that joined/\n        \/\/ A reader that joined/|the sender looks at armed without a full fence after writing (lost wake-up)"
  "mark-without-fence|crates/ipn/src/port/send.rs|s/if newly_marked \{/if false {/|a sender that set its pending bit looks at armed without a second fence (lost wake-up)"
  "batch-waits-unannounced|crates/ipn/src/port/send.rs|s/\n            self\.announce\(port\);\n            match wait \{/\n            match wait {/|a lossless batch waits for room without telling the readers of its frames (hang)"
  "seq-done-relaxed|crates/ipn/src/ring.rs|s/desc\.seq\.store\(seq_done\(n\), Ordering::Release\)/desc.seq.store(seq_done(n), Ordering::Relaxed)/|a frame's descriptor says done before its bytes are visible (torn frame)"
  "writer-without-release-fence|crates/ipn/src/ring.rs|s/(entry\.byte_reserve\.store\(end, Ordering::Relaxed\);)\n        fence\(Ordering::Release\);/\$1/|bytes overwritten before the descriptor says it is being written (torn frame)"
  "reader-without-acquire-fence|crates/ipn/src/ring.rs|s/\n    fence\(Ordering::Acquire\);\n    let intact/\n    let intact/|the reader checks the seqlock again without ordering its copy first (torn frame)"
  "settle-without-last-look|crates/ipn/src/port/recv.rs|s/if self\.prepare_to_sleep\(port\) && self\.frames_waiting\(cx\) \{/if self.prepare_to_sleep(port) \&\& false {/|a receive after poll arms after its last frame without looking again (a frame waits, the fd is not readable)"
  "wait-for-dead-readers|crates/ipn/src/port/mod.rs,crates/ipn/src/port/send.rs|s/\(membership::state\(word\) == STATE_ACTIVE && caps & CAP_READ != 0\)/(membership::state(word) != STATE_FREE \&\& caps \& CAP_READ != 0)/ + s/if membership::state\(word\) != STATE_ACTIVE\n/if membership::state(word) == STATE_FREE\n/|a lossless sender counts a reader marked dead among those it waits for (hang)"
)

run_loom() {
  (cd "$scratch" && cargo test -q -p ipn --release --lib loom) >"$1" 2>&1
}

copy_sources() {
  rm -rf "$scratch"
  mkdir -p "$scratch"
  # -m: every file dated now, newer than any mutant built before, so the
  # copy is always compiled from what it holds (tar would keep the
  # originals' dates, older than the last mutant in the target dir).
  git ls-files -z | tar --null -T - -cf - | tar -xmf - -C "$scratch"
}

want=("$@")
selected() {
  [ ${#want[@]} -eq 0 ] && return 0
  local w
  for w in "${want[@]}"; do [ "$w" = "$1" ] && return 0; done
  return 1
}

mkdir -p "$root/target/loom-mutations"
log_dir=$root/target/loom-mutations
copy_sources
echo "=== unmutated: every model must pass"
if ! run_loom "$log_dir/unmutated.log"; then
  tail -n 30 "$log_dir/unmutated.log"
  echo "loom-mutations: the unmutated sources fail loom; fix that first" >&2
  exit 1
fi
echo "ok"

caught=0
missed=()
for m in "${mutations[@]}"; do
  IFS='|' read -r name files subst what <<<"$m"
  selected "$name" || continue
  echo "=== $name: $what"
  copy_sources
  IFS=',' read -r -a paths <<<"$files"
  for file in "${paths[@]}"; do
    if ! perl -0pi -e "(($subst) > 0) or die \"mutation $name: no pattern found in $file\n\"" "$scratch/$file"; then
      echo "loom-mutations: $name no longer applies to $file: update the mutation" >&2
      exit 1
    fi
    diff -u "$root/$file" "$scratch/$file" | grep '^[-+] ' | sed 's/^/  /' || true
  done
  if run_loom "$log_dir/$name.log"; then
    echo "NOT CAUGHT: loom passed with this mutation (log: $log_dir/$name.log)"
    missed+=("$name")
  else
    caught=$((caught + 1))
    # Each model that failed, and why.
    awk '/^---- loom_tests::.* stdout ----$/ { test = $2; next }
         test != "" && /panicked at/ { getline why; print "  caught by " test ": " why; test = "" }' \
      "$log_dir/$name.log"
  fi
done
rm -rf "$scratch"
echo
echo "loom-mutations: $caught caught, ${#missed[@]} not caught${missed:+: ${missed[*]}}"
[ ${#missed[@]} -eq 0 ]
