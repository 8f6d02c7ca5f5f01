#!/usr/bin/env bash
# Sets everything up and runs every test (the README's second quick-start command; .ci/run runs
# exactly this):
#   1. release build (gcc, warnings as errors): unit tests and the interop pairs (ctest)
#   2. ASan + UBSan build: unit tests and the interop pairs again
#   3. libFuzzer targets under ASan + UBSan, FUZZ_SECONDS each (default 20), one per core at a time
#   4. the benchmarks in --quick mode, so that they keep building and running
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
jobs=$(nproc)
passed=0
failed=0
stage() {  # stage NAME COMMAND...
  local name=$1
  shift
  echo "==> $name"
  if "$@"; then
    passed=$((passed + 1))
    echo "==> $name: passed"
  else
    failed=$((failed + 1))
    echo "==> $name: FAILED"
  fi
}

release() {
  cmake --preset release >/dev/null &&
    cmake --build --preset release -j "$jobs" &&
    ctest --preset release -j 1
}
asan() {
  cmake --preset asan >/dev/null &&
    cmake --build --preset asan -j "$jobs" &&
    ctest --preset asan
}
fuzz() { bash scripts/fuzz.sh "${FUZZ_SECONDS:-20}"; }
bench() {
  ./build/release/bench/postern-bench --quick &&
    ./build/release/bench/postern-loadbench --quick &&
    ./build/release/bench/postern-clientbench --quick &&
    ./build/release/bench/postern-relaybench --quick
}

stage "release build, unit and interop tests" release
stage "ASan+UBSan unit and interop tests" asan
stage "fuzzing" fuzz
if [ -x build/release/bench/postern-bench ]; then
  stage "benchmark smoke run" bench
fi

echo "test stages: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
