#!/usr/bin/env bash
# recordstore under wrk on PostgreSQL: GET /products and POST /checkout, 50 connections,
# 10 s each; prints requests/s and p99 for both, then how fast the worker completes the
# accepted orders: the completion rate while it drains the queue and the time to drain.
# Needs: postgresql, wrk (Debian packages).
#
#   bench/app-wrk.sh                # defaults: 50 connections, 10 s
#   CONNECTIONS=100 DURATION=20s bench/app-wrk.sh
#   PG_STATS=1 bench/app-wrk.sh     # then the statements that took PostgreSQL the most time
#   KEEP_LOG=/tmp/app.log bench/app-wrk.sh   # keep the app's log
set -euo pipefail
cd "$(dirname "$0")/.."
CONNECTIONS="${CONNECTIONS:-50}"
DURATION="${DURATION:-10s}"
THREADS="${THREADS:-2}"

command -v wrk >/dev/null || { echo "wrk not found: apt-get install wrk" >&2; exit 3; }
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
[ -x "$PGBIN/postgres" ] || { echo "PostgreSQL not found: apt-get install postgresql" >&2; exit 3; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
WORK=$(mktemp -d /tmp/recordstore-bench.XXXXXX)
PGPORT=$(free_port)
APPPORT=$(free_port)
RUNAS=()
if [ "$(id -u)" = 0 ]; then chown postgres: "$WORK"; RUNAS=(runuser -u postgres --); fi
cleanup() {
  [ -n "${APP_PID:-}" ] && kill "$APP_PID" 2>/dev/null && wait "$APP_PID" 2>/dev/null || true
  [ -n "${KEEP_LOG:-}" ] && cp "$WORK/app.log" "$KEEP_LOG"
  "${RUNAS[@]}" "$PGBIN/pg_ctl" -D "$WORK/data" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# RECORDSTORE_BIN compares another build (e.g. an earlier commit's) under the same load.
BIN="${RECORDSTORE_BIN:-target/release/recordstore}"
if [ -z "${RECORDSTORE_BIN:-}" ]; then
  echo "== building recordstore (release)"
  cargo build --release -q -p recordstore
fi

echo "== starting PostgreSQL on 127.0.0.1:$PGPORT"
"${RUNAS[@]}" "$PGBIN/initdb" -D "$WORK/data" -U postgres -A trust --no-sync >/dev/null
"${RUNAS[@]}" "$PGBIN/pg_ctl" -D "$WORK/data" -l "$WORK/pg.log" -w \
  -o "-p $PGPORT -k $WORK -c listen_addresses=127.0.0.1 -c max_connections=200 ${PG_OPTIONS:-} \
  ${PG_STATS:+-c shared_preload_libraries=pg_stat_statements}" start >/dev/null
"$PGBIN/createdb" -h 127.0.0.1 -p "$PGPORT" -U postgres store
if [ -n "${PG_STATS:-}" ]; then
  "$PGBIN/psql" -q -h 127.0.0.1 -p "$PGPORT" -U postgres store -c 'CREATE EXTENSION pg_stat_statements' >/dev/null
fi

echo "== starting recordstore on 127.0.0.1:$APPPORT (API + worker, logs to $WORK/app.log)"
RECORDSTORE_WRITE_RATE_LIMIT=0 DATABASE_URL="postgres://postgres@127.0.0.1:$PGPORT/store" RECORDSTORE_LISTEN="127.0.0.1:$APPPORT" \
  RECORDSTORE_DB_MAX_CONNECTIONS="${DB_CONNECTIONS:-16}" \
  "$BIN" serve >"$WORK/app.log" 2>&1 &
APP_PID=$!
BASE="http://127.0.0.1:$APPPORT"
for _ in $(seq 1 200); do curl -fs "$BASE/health/ready" >/dev/null 2>&1 && break; sleep 0.05; done
curl -fs "$BASE/health/ready" >/dev/null || { echo "recordstore did not become ready; see log:" >&2; tail "$WORK/app.log" >&2; exit 3; }

export BENCH_PRODUCT_ID=$(curl -fs -X POST "$BASE/products" -H 'content-type: application/json' \
  -d '{"title":"Benchmark Pressing","artist":"wrk","genre":"bench","price_cents":100,"stock":1000000}' |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')

run() { # name, wrk args...
  local name=$1; shift
  local out
  out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "$@")
  local rps p99 errors
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  errors=$(awk '/Non-2xx or 3xx responses:/ {print $5}' <<<"$out")
  printf '%-18s %10s req/s   p99 %-9s non-2xx %s\n' "$name" "$rps" "$p99" "${errors:-0}"
}

echo "== wrk: $THREADS threads, $CONNECTIONS connections, $DURATION each"
run "GET /products" "$BASE/products"
final_orders() { curl -fs "$BASE/metrics" | awk '/^recordstore_orders\{status="(completed|failed)"\}/ {n += $2} END {print n + 0}'; }
queue_depth() { curl -fs "$BASE/health" | python3 -c 'import json,sys; print(json.load(sys.stdin)["checks"]["jobs"]["queue_depth"])'; }
started=$(date +%s.%N)
run "POST /checkout" -s bench/checkout.lua "$BASE/checkout"
accepted_end=$(date +%s.%N)
accepted=$(curl -fs "$BASE/metrics" | awk '/^recordstore_checkouts_total\{result="accepted"\}/ {print $2}')
done_at_end=$(final_orders)
depth=$(queue_depth)
echo "checkouts accepted: $accepted; final when wrk stopped: $done_at_end; still queued: $depth"
# CPU seconds of the app and of every PostgreSQL process, to say which one the drain waits on.
cpu_seconds() { # pid...
  for pid in "$@"; do awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null; done |
    awk -v hz="$(getconf CLK_TCK)" '{n += $1} END {printf "%.1f", n / hz}'
}
PG_PIDS() { local pm; pm=$(head -n1 "$WORK/data/postmaster.pid"); echo "$pm" $(pgrep -P "$pm"); }
app_cpu_before=$(cpu_seconds "$APP_PID"); pg_cpu_before=$(cpu_seconds $(PG_PIDS))
for _ in $(seq 1 600); do
  [ "$(queue_depth)" = 0 ] && break
  sleep 0.5
done
drained=$(date +%s.%N)
app_cpu_after=$(cpu_seconds "$APP_PID"); pg_cpu_after=$(cpu_seconds $(PG_PIDS))
final=$(final_orders)
python3 - "$started" "$accepted_end" "$drained" "$accepted" "$final" <<'PY'
import sys
started, accepted_end, drained, accepted, final = map(float, sys.argv[1:])
run = accepted_end - started
total = drained - started
print(f"accept rate      {accepted / run:10.0f} orders/s over {run:.1f} s")
print(f"completion rate  {final / total:10.0f} orders/s until the queue was empty ({final:.0f} orders in {total:.1f} s)")
print(f"time to drain    {drained - accepted_end:10.1f} s after the last checkout")
PY
python3 -c "print(f'CPU while draining: recordstore {$app_cpu_after - $app_cpu_before:.1f} s, PostgreSQL {$pg_cpu_after - $pg_cpu_before:.1f} s')"
if [ -n "${PG_STATS:-}" ]; then
  echo "== PostgreSQL: the statements that took the most time"
  "$PGBIN/psql" -h 127.0.0.1 -p "$PGPORT" -U postgres store -c "SELECT calls, round(total_exec_time) AS total_ms, \
    round(mean_exec_time::numeric, 3) AS mean_ms, left(regexp_replace(query, '\s+', ' ', 'g'), 110) AS query \
    FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 12"
fi
