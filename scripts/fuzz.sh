#!/usr/bin/env bash
# Runs every cargo-fuzz target for FUZZ_SECONDS each (FUZZ_JOBS at a time)
# and prints one line per target: wall time, executions, result. A crash
# leaves its input under fuzz/artifacts/<target>/ and fails the run; turn it
# into a regression test before fixing it.
set -uo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${FUZZ_SECONDS:-60}
jobs=${FUZZ_JOBS:-1}
logs=${FUZZ_LOGS:-$(mktemp -d)}
mkdir -p "$logs"
export RUSTC_BOOTSTRAP=1
cargo fuzz build || exit 1
targets=$(cargo fuzz list)

run_one() {
  local t=$1 start rc
  start=$(date +%s)
  mkdir -p "corpus/$t"
  cargo fuzz run "$t" -- -max_total_time="$seconds" -print_final_stats=1 >"$logs/$t.log" 2>&1
  rc=$?
  local runs
  runs=$(grep -o 'Done [0-9]* runs' "$logs/$t.log" | tail -n1 | awk '{print $2}')
  [ -n "$runs" ] || runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$logs/$t.log" | awk '{print $2}')
  printf '| %s | %d s | %s | %s |\n' "$t" "$(( $(date +%s) - start ))" "${runs:-?}" \
    "$([ $rc -eq 0 ] && echo 'no crash' || echo "FAILED (exit $rc, see $logs/$t.log)")"
  return $rc
}
export -f run_one
export seconds logs

echo "| target | wall time | executions | result |"
echo "|---|---|---|---|"
printf '%s\n' $targets | xargs -P "$jobs" -I{} bash -c 'run_one {}'
