#!/usr/bin/env bash
# HTTP benchmark: `GET /v1/models` with an authenticated key, at 1 and 64 concurrent connections,
# next to nginx serving a static file of the same size on the same machine in the same run.
#   bench/api/http_bench.sh [seconds per run, default 10]
# Prints a Markdown table for docs/benchmarks.md. Loopback only; stops everything it starts.
set -euo pipefail
cd "$(dirname "$0")/../.."
duration=${1:-10}
scripts/deps.sh bench
scripts/build.sh release yunzhi >/dev/null

work=$(mktemp -d /tmp/yunzhi-bench-XXXXXX)
server_pid=""; nginx_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
  [ -n "$nginx_pid" ] && kill "$nginx_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# --- Yunzhi ---
build/release/yunzhi serve --data-dir "$work/data" --port 0 --log-level warn >"$work/serve.out" 2>"$work/serve.err" &
server_pid=$!
for _ in $(seq 100); do grep -q "serving on" "$work/serve.out" && break; sleep 0.1; done
url=$(grep -o 'http://[^ ]*' "$work/serve.out" | head -1 || true)
[ -n "$url" ] || { echo "server did not start:"; cat "$work/serve.err"; exit 1; }
key=$(build/release/yunzhi keys create --data-dir "$work/data" --scopes read --name bench 2>/dev/null)
body=$(curl -sf "$url/v1/models" -H "Authorization: Bearer $key")
size=${#body}

# --- nginx, same body size ---
mkdir -p "$work/nginx/html" "$work/nginx/tmp"
chmod 755 "$work" "$work/nginx" "$work/nginx/html"  # nginx workers drop root privileges
printf '%s' "$(head -c "$size" /dev/zero | tr '\0' 'x')" >"$work/nginx/html/models.json"
nginx_port=$(( (RANDOM % 10000) + 40000 ))
cat >"$work/nginx/nginx.conf" <<CONF
worker_processes auto;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
daemon off;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $work/nginx/tmp;
  proxy_temp_path $work/nginx/tmp;
  fastcgi_temp_path $work/nginx/tmp;
  uwsgi_temp_path $work/nginx/tmp;
  scgi_temp_path $work/nginx/tmp;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$nginx_port;
    location / { root $work/nginx/html; default_type application/json; }
  }
}
CONF
nginx -c "$work/nginx/nginx.conf" -p "$work/nginx" &
nginx_pid=$!
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$nginx_port/models.json" >/dev/null && break; sleep 0.1; done

run_wrk() {  # url connections threads [header]
  local out
  if [ $# -ge 4 ]; then
    out=$(wrk -t"$3" -c"$2" -d"${duration}s" --latency -H "$4" "$1")
  else
    out=$(wrk -t"$3" -c"$2" -d"${duration}s" --latency "$1")
  fi
  local rps p50 p99 errors
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  errors=$(grep -E 'Non-2xx|Socket errors' <<<"$out" | tr '\n' ' ' | xargs || true)
  echo "$rps|$p50|$p99|${errors:-none}"
}

echo "| target | connections | requests/s | p50 | p99 | errors |"
echo "|---|---|---|---|---|---|"
for c in 1 64; do
  t=$([ "$c" -eq 1 ] && echo 1 || echo 2)
  IFS='|' read -r y_rps y_p50 y_p99 y_err <<<"$(run_wrk "$url/v1/models" "$c" "$t" "Authorization: Bearer $key")"
  IFS='|' read -r n_rps n_p50 n_p99 n_err <<<"$(run_wrk "http://127.0.0.1:$nginx_port/models.json" "$c" "$t")"
  echo "| yunzhi GET /v1/models (auth) | $c | $y_rps | $y_p50 | $y_p99 | $y_err |"
  echo "| nginx static ${size} B file | $c | $n_rps | $n_p50 | $n_p99 | $n_err |"
  awk -v y="$y_rps" -v n="$n_rps" -v c="$c" 'BEGIN { printf "| ratio yunzhi/nginx | %s | %.2f | | | |\n", c, y / n }'
done
echo
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), body ${size} B, ${duration} s per run, wrk and servers on the same machine"
