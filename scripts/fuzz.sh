#!/usr/bin/env bash
# Builds the libFuzzer targets (preset `fuzz`: clang-14, ASan + UBSan) and runs each for
# SECONDS_PER_TARGET seconds (default 30), FUZZ_JOBS at a time (default: the number of cores),
# so the whole run takes about (targets x seconds / jobs) + build time.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]
#
# Corpora grow across runs in build/fuzz/corpus/<target>/ (created if missing); fresh seeds are
# written to build/fuzz/seeds/<target>/ before every run. A crash, leak, timeout or OOM leaves its
# input in build/fuzz/artifacts/<target>/ and the full log in build/fuzz/logs/<target>.log;
# reproduce with `build/fuzz/fuzz/<target> <artifact>`. Prints one line per target and exits
# non-zero when any target failed.
set -euo pipefail

seconds="${1:-30}"
if ! [[ "$seconds" =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: $0 [SECONDS_PER_TARGET]  (a positive integer, default 30)" >&2
  exit 2
fi

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root="$(pwd)"
build="$root/build/fuzz"

cmake --preset fuzz
cmake --build --preset fuzz

list="$build/fuzz/fuzz_targets.txt"
if [[ ! -f "$list" ]]; then
  echo "fuzz.sh: $list is missing (is POSTERN_BUILD_FUZZ on in the fuzz preset?)" >&2
  exit 1
fi

mkdir -p "$build/seeds" "$build/logs"
"$build/fuzz/postern_fuzz_seeds" "$build/seeds"

# halt_on_error/abort_on_error: the first finding stops the target and is saved as an artifact.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:detect_stack_use_after_return=1:strict_string_checks=1:check_initialization_order=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

# One target: its result line goes to logs/<name>.result ("PASS ..." or "FAIL ...").
fuzz_one() {
  local name=$1 binary=$2 dict=$3
  local corpus="$build/corpus/$name" seeds="$build/seeds/$name" artifacts="$build/artifacts/$name"
  local log="$build/logs/$name.log" result="$build/logs/$name.result"
  mkdir -p "$corpus" "$seeds" "$artifacts"
  rm -f "$result"
  # Findings of earlier runs stay; only those newer than this marker count for this run.
  local marker="$artifacts/.run-started"
  touch "$marker"

  local args=(-max_total_time="$seconds" -max_len=4096 -timeout=10 -rss_limit_mb=2048
              -print_final_stats=1 -artifact_prefix="$artifacts/")
  if [[ "$dict" != "-" ]]; then args+=(-dict="$dict"); fi

  echo "fuzz.sh: $name for ${seconds}s" >&2
  local rc=0
  # New inputs go to the first directory (the corpus); the seeds are only read. The outer timeout
  # is a safety net for a hang libFuzzer itself cannot interrupt.
  timeout --signal=KILL "$((seconds * 2 + 120))" "$binary" "${args[@]}" "$corpus" "$seeds" </dev/null >"$log" 2>&1 || rc=$?

  local execs finding what
  execs="$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -n 1)"
  [[ -n "$execs" ]] || execs="$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -n 1)"
  [[ -n "$execs" ]] || execs="?"
  finding="$(find "$artifacts" -maxdepth 1 -type f -newer "$marker" \
    \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \) -print -quit)"

  if [[ "$rc" -eq 0 && -z "$finding" ]]; then
    printf '%-28s PASS  %12s execs  %s s\n' "$name" "$execs" "$seconds" >"$result"
  else
    what="exit $rc"
    if [[ "$rc" -eq 137 ]]; then what="killed after hanging"; fi
    if [[ -n "$finding" ]]; then what="$(basename "$finding" | cut -d- -f1): $finding"; fi
    printf '%-28s FAIL  %12s execs  %s\n' "$name" "$execs" "$what" >"$result"
    { echo "---- $name: last lines of $log"; tail -n 60 "$log"; } >&2
  fi
}

# Targets run FUZZ_JOBS at a time (default: one per core): each still gets its full time.
parallel="${FUZZ_JOBS:-$(nproc)}"
names=()
while IFS=$'\t' read -r name binary dict; do
  [[ -n "$name" ]] || continue
  names+=("$name")
  while (( $(jobs -rp | wc -l) >= parallel )); do wait -n || true; done
  fuzz_one "$name" "$binary" "$dict" &
done <"$list"
wait

failed=0
echo
echo "fuzz results (${seconds}s per target, $parallel at a time, corpora in build/fuzz/corpus):"
for name in "${names[@]}"; do
  result="$build/logs/$name.result"
  if [[ -f "$result" ]]; then
    cat "$result"
    grep -q ' FAIL ' "$result" && failed=1
  else
    printf '%-28s FAIL  (no result)\n' "$name"
    failed=1
  fi
done
exit "$failed"
