#!/usr/bin/env bash
# Fuzzes each parser of data recordctl did not write for SECONDS (default 60) with cargo fuzz
# (libFuzzer, AddressSanitizer), two targets at a time on this 2-core machine, and prints
# per target: executions, executions per second, corpus size, crashes. Seeds come from
# fuzz/corpus; what the fuzzer learns goes to fuzz/corpus-work (not committed); a crash lands
# in fuzz/artifacts/TARGET/ — copy it to fuzz/regressions/TARGET/ so the test suite replays it.
#
# Usage: bench/fuzz.sh [SECONDS] [TARGET...]
# Needs: cargo install cargo-fuzz (the stable toolchain is used with RUSTC_BOOTSTRAP=1).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
shift || true
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
  targets=(http_response toml_files units certificate backend_answers)
fi
command -v cargo-fuzz >/dev/null || { echo "cargo-fuzz is missing: cargo install cargo-fuzz" >&2; exit 2; }
export RUSTC_BOOTSTRAP=1
cargo fuzz build -O >/dev/null
# The targets run from copies, so that editing the sources meanwhile rebuilds nothing.
bin="$(mktemp -d)"
for t in "${targets[@]}"; do
  cp "fuzz/target/x86_64-unknown-linux-gnu/release/$t" "$bin/$t"
done
logs="$(mktemp -d)"
run() {
  local t="$1"
  mkdir -p "fuzz/corpus-work/$t" "fuzz/artifacts/$t"
  "$bin/$t" "fuzz/corpus-work/$t" "fuzz/corpus/$t" \
    -artifact_prefix="fuzz/artifacts/$t/" -max_total_time="$seconds" -print_final_stats=1 \
    -rss_limit_mb=2048 -max_len=65536 >"$logs/$t.log" 2>&1 || true
}
pids=()
for t in "${targets[@]}"; do
  run "$t" &
  pids+=($!)
  if [ "${#pids[@]}" -ge 2 ]; then
    wait "${pids[0]}"
    pids=("${pids[@]:1}")
  fi
done
wait
printf '%-16s %14s %10s %8s %8s\n' target executions exec/s corpus crashes
for t in "${targets[@]}"; do
  log="$logs/$t.log"
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -n1)
  rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -n1)
  corpus=$(find "fuzz/corpus-work/$t" -type f | wc -l)
  crashes=$(find "fuzz/artifacts/$t" -type f \( -name 'crash-*' -o -name 'oom-*' -o -name 'timeout-*' \) | wc -l)
  printf '%-16s %14s %10s %8s %8s\n' "$t" "${execs:-?}" "${rate:-?}" "$corpus" "$crashes"
  if [ "$crashes" -gt 0 ]; then
    grep -m1 -A8 'ERROR: \|panicked' "$log" | sed 's/^/    /' || true
  fi
done
echo "logs: $logs"
