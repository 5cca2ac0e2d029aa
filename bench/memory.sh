#!/usr/bin/env bash
# Peak memory of long runs against nginx (one worker) on 127.0.0.1: a plain run of 10 million
# requests, an open-model run of 1 million arrivals (the scenario engine) and plain mode on the
# same schedule. Prints requests, seconds and peak RSS.
#
#   bench/memory.sh
#   PLAIN_REQUESTS=20000000 OPEN_RATE=20000 bench/memory.sh
# Needs: nginx (Debian), GNU time (/usr/bin/time).
set -euo pipefail
cd "$(dirname "$0")/.."
PLAIN_REQUESTS="${PLAIN_REQUESTS:-10000000}"
OPEN_ARRIVALS="${OPEN_ARRIVALS:-1000000}"
OPEN_RATE="${OPEN_RATE:-20000}"
CONNECTIONS="${CONNECTIONS:-50}"
command -v nginx >/dev/null || { echo "nginx not found: apt-get install nginx" >&2; exit 3; }
[ -x /usr/bin/time ] || { echo "/usr/bin/time not found: apt-get install time" >&2; exit 3; }

echo "== building recordctl (release)"
cargo build --release -q --bin recordctl
RECORDCTL="$PWD/target/release/recordctl"

# nginx (one worker) on a free port: WORK, PORT, URL.
source bench/nginx.sh

# Plain: time-bound, so run for long enough to pass the request count at this machine's rate.
echo "== plain, until $PLAIN_REQUESTS requests"
probe=$("$RECORDCTL" load-test --target "$URL" --connections "$CONNECTIONS" --duration 3s --no-progress --json - 2>/dev/null \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["throughput_rps"])')
seconds=$(python3 -c "import math; print(math.ceil($PLAIN_REQUESTS / ($probe * 0.9)))")
/usr/bin/time -f "%M" -o "$WORK/plain.rss" "$RECORDCTL" load-test --target "$URL" --connections "$CONNECTIONS" \
  --duration "${seconds}s" --no-progress --json "$WORK/plain.json" >/dev/null
echo "== open, $OPEN_ARRIVALS arrivals at $OPEN_RATE/s"
open_seconds=$(python3 -c "print(round($OPEN_ARRIVALS / $OPEN_RATE))")
/usr/bin/time -f "%M" -o "$WORK/open.rss" "$RECORDCTL" load-test --target "${URL%/}" --scenario bench/one-request.toml \
  --rate "$OPEN_RATE/s" --duration "${open_seconds}s" --no-progress --json "$WORK/open.json" >/dev/null || true

echo "== plain on a schedule, $OPEN_ARRIVALS arrivals at $OPEN_RATE/s"
/usr/bin/time -f "%M" -o "$WORK/plain-rate.rss" "$RECORDCTL" load-test --target "$URL" --connections "$CONNECTIONS" \
  --rate "$OPEN_RATE/s" --duration "${open_seconds}s" --no-progress --json "$WORK/plain-rate.json" >/dev/null || true

python3 - "$WORK" <<'PY'
import json, sys
work = sys.argv[1]
print(f"\n{'run':<12}{'requests':>12}{'seconds':>10}{'req/s':>10}{'peak RSS MB':>14}")
for run in ("plain", "open", "plain-rate"):
    r = json.load(open(f"{work}/{run}.json"))
    rss = int(open(f"{work}/{run}.rss").read().split()[-1]) / 1024
    print(f"{run:<12}{r['requests']:>12}{r['duration_s']:>10.1f}{r['throughput_rps']:>10.0f}{rss:>14.1f}")
PY
