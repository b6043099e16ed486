#!/usr/bin/env bash
# Overhead of metering, budget reservation and audit on the request path (issue 6's benchmark):
# the cheapest inference request -- POST /v1/completions on stories260K with max_tokens 1 and an
# authenticated tenant key -- at 64 connections (wrk -t2 -c64), on a fresh `yunzhi serve` per row:
#   off       billing.enabled = 0: no usage records, no reservations
#   on        billing on, a pay-as-you-go tenant without limits: usage record + settlement
#   prepaid   billing on, a prepaid tenant: + a reservation of the maximum cost before each request
# Rows run in the order off, on, prepaid, repeated `rounds` times, so drift on a shared machine
# shows up as spread rather than as a difference.
#   bench/platform/billing_overhead.sh [seconds per row, default 20] [rounds, default 2]
# Prints a Markdown table for docs/benchmarks.md and checks afterwards that every request of the
# billed rows was recorded and charged exactly once. Loopback only; stops everything it starts.
set -euo pipefail
cd "$(dirname "$0")/../.."
duration=${1:-20}
rounds=${2:-2}
command -v wrk >/dev/null || { echo "wrk is required (apt-get install wrk)" >&2; exit 1; }
scripts/build.sh release yunzhi >/dev/null
bin=build/release/yunzhi
model=../shared/testdata/models/stories260K.gguf
[ -f "$model" ] || { echo "missing $model" >&2; exit 1; }

work=$(mktemp -d /tmp/yunzhi-billing-bench-XXXXXX)
server_pid=""
stop_server() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
  fi
}
trap 'stop_server; rm -rf "$work"' EXIT

data="$work/data"
$bin import "$model" --name bench/stories --data-dir "$data" >/dev/null
$bin tenants create bench --data-dir "$data" >/dev/null
key=$($bin keys create --data-dir "$data" --tenant bench --scopes inference --rpm 1000000000 --name bench 2>/dev/null)
admin=$($bin keys create --data-dir "$data" --scopes admin,read --rpm 1000000000 --name admin 2>/dev/null)

cat >"$work/post.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"bench/stories","prompt":"Once upon a time","max_tokens":1,"temperature":0}'
LUA

start_server() {  # billing_enabled
  YUNZHI_BILLING_ENABLED=$1 $bin serve --data-dir "$data" --port 0 --log-level warn \
    >"$work/serve.out" 2>"$work/serve.err" &
  server_pid=$!
  url=""
  for _ in $(seq 200); do
    url=$(grep -o 'http://[^ ]*' "$work/serve.out" | head -1 || true)
    [ -n "$url" ] && break
    sleep 0.05
  done
  [ -n "$url" ] || { echo "server did not start:" >&2; cat "$work/serve.err" >&2; exit 1; }
}

api() {  # method path body
  curl -sf -X "$1" "$url$2" -H "Authorization: Bearer $admin" -H "Content-Type: application/json" -d "$3" >/dev/null
}

run_row() {  # label billing_enabled prepaid
  start_server "$2"
  if [ "$2" = 1 ]; then
    api PUT /api/billing/prices '{"pattern":"*","input_per_1m":"1","output_per_1m":"2"}'
    if [ "$3" = 1 ]; then
      api POST /api/billing/topup '{"tenant":"bench","amount":"1000000"}'
    else
      api POST /api/billing/limits '{"tenant":"bench","mode":"postpaid","limit":null}'
    fi
  fi
  # Warm-up: the model loads, caches fill.
  wrk -t2 -c64 -d3s -s "$work/post.lua" -H "Authorization: Bearer $key" "$url/v1/completions" >/dev/null
  local out rps p50 p99 errors load
  load=$(cut -d' ' -f1 /proc/loadavg)
  out=$(wrk -t2 -c64 -d"${duration}s" --latency -s "$work/post.lua" -H "Authorization: Bearer $key" \
    "$url/v1/completions")
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  errors=$(grep -E 'Non-2xx|Socket errors' <<<"$out" | tr '\n' ' ' | xargs || true)
  stop_server
  echo "| $1 | $rps | $p50 | $p99 | ${errors:-none} | $load |"
}

echo "| configuration | requests/s | p50 | p99 | errors | load before |"
echo "|---|---|---|---|---|---|"
for _ in $(seq "$rounds"); do
  run_row "billing off" 0 0
  run_row "billing on, pay-as-you-go (record + settle)" 1 0
  run_row "billing on, prepaid (+ reservation)" 1 1
done

# Exactness after all that: every chat_tokens record was charged once. used = sum over records
# of prompt x 1e-6 + completion x 2e-6 (prices above), reserved back to zero.
sqlite3 "$data/yunzhi.db" "SELECT count(*), sum(prompt_tokens), sum(completion_tokens) FROM usage_records WHERE kind = 'chat_tokens'" |
  { IFS='|' read -r n prompt completion
    expected=$(( prompt * 1000 + completion * 2000 ))
    used=$(sqlite3 "$data/yunzhi.db" "SELECT used_nanos + trial_used_nanos FROM billing_accounts WHERE id = (SELECT id FROM tenants WHERE name = 'bench')")
    echo
    echo "records: $n; charged ${used} nanos; expected from the records ${expected} nanos: $([ "$used" = "$expected" ] && echo exact || echo MISMATCH)"; }
