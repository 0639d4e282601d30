#!/usr/bin/env bash
# Runs every cargo-fuzz target (or those named as arguments) for
# FUZZ_SECONDS each, FUZZ_JOBS at a time, and prints one table row per
# target: wall time, executions, result. The targets are built once, then the
# built binaries run directly, so editing the tree during a long campaign
# cannot change what is being fuzzed. A crash leaves its input under
# fuzz/artifacts/<target>/ and fails the run: turn it into a regression test
# before fixing it.
set -uo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${FUZZ_SECONDS:-60}
jobs=${FUZZ_JOBS:-1}
logs=${FUZZ_LOGS:-$(mktemp -d)}
mkdir -p "$logs"
export RUSTC_BOOTSTRAP=1
cargo fuzz build >"$logs/build.log" 2>&1 || { tail -30 "$logs/build.log" >&2; exit 1; }
bin=target/x86_64-unknown-linux-gnu/release
if (($#)); then targets="$*"; else targets=$(cargo fuzz list); fi

run_one() {
  local t=$1 start rc runs
  start=$(date +%s)
  mkdir -p "corpus/$t" "artifacts/$t"
  ASAN_OPTIONS=detect_odr_violation=0 "$bin/$t" -artifact_prefix="artifacts/$t/" \
    -max_total_time="$seconds" -print_final_stats=1 "corpus/$t" >"$logs/$t.log" 2>&1
  rc=$?
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$logs/$t.log" | awk '{print $2}')
  printf '| %s | %d s | %s | %s |\n' "$t" "$(( $(date +%s) - start ))" "${runs:-?}" \
    "$([ $rc -eq 0 ] && echo 'no crash' || echo "FAILED (exit $rc, see $logs/$t.log)")"
  return $rc
}
export -f run_one
export seconds logs bin

echo "| target | wall time | executions | result |"
echo "|---|---|---|---|"
printf '%s\n' $targets | xargs -P "$jobs" -I{} bash -c 'run_one {}'
