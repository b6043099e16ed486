#!/usr/bin/env bash
# Serving benchmark (issue 4): a Qwen2.5-0.5B-shaped Q4_0 random-weight model behind a fresh
# `yunzhi serve`, driven by bench/serving/serve_bench at 1, 4, 8 and 16 concurrent streams
# (128-token prompts, 64 generated tokens), then the prefix-cache experiment (1000-token shared
# prefix). Prints a Markdown section for docs/benchmarks.md on stdout; progress on stderr.
#
#   bench/serving/serve_bench.sh [--threads N] [--duration S] [--concurrency 1,4,8,16]
#                                [--build-dir DIR] [--no-build] [-- serve_bench options...]
#
# --threads sets the engine's compute threads per model (serving.threads, through
# YUNZHI_SERVING_THREADS; default 2). Other YUNZHI_* variables in the environment reach the server
# too (e.g. YUNZHI_SERVING_MAX_STEP_TOKENS). Loopback only; stops everything it starts. Keep the
# machine otherwise idle: every figure is printed with the 1-minute load average around it.
set -euo pipefail
cd "$(dirname "$0")/../.."

threads=2
duration=60
concurrency=1,4,8,16
build_dir=build/sbench
build=1
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) threads=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --concurrency) concurrency=$2; shift 2 ;;
    --build-dir) build_dir=$2; shift 2 ;;
    --no-build) build=0; shift ;;
    --) shift; extra=("$@"); break ;;
    *) echo "unknown option $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done

if [ "$build" = 1 ]; then
  if [ ! -f "$build_dir/build.ninja" ]; then
    cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DYUNZHI_BUILD_BENCH=ON \
      -DYUNZHI_BUILD_TESTS=OFF >/dev/null
  fi
  CCACHE_BASEDIR="$PWD" ninja -C "$build_dir" yunzhi yunzhi-make-model serve_bench >&2
fi
yunzhi=$build_dir/yunzhi

# The model is deterministic (fixed seed): write it once and keep it between runs.
cache=${YUNZHI_BENCH_CACHE:-/tmp/yunzhi-serve-bench}
model_file=$cache/qwen2.5-0.5b-q4_0.gguf
mkdir -p "$cache"
if [ ! -f "$model_file" ]; then
  echo "writing $model_file..." >&2
  "$build_dir/tools/yunzhi-make-model" --preset qwen2.5-0.5b --type q4_0 --gguf "$model_file.tmp" >&2
  mv "$model_file.tmp" "$model_file"
fi

work=$(mktemp -d /tmp/yunzhi-serve-bench-run-XXXXXX)
server_pid=""
cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

"$yunzhi" import "$model_file" --name bench/qwen05b --data-dir "$work/data" >&2

YUNZHI_SERVING_THREADS=$threads "$yunzhi" serve --data-dir "$work/data" --port 0 \
  --log-level warn >"$work/serve.out" 2>"$work/serve.err" &
server_pid=$!
for _ in $(seq 200); do grep -q "serving on" "$work/serve.out" && break; sleep 0.1; done
url=$(grep -o 'http://127\.0\.0\.1:[0-9]*' "$work/serve.out" | head -1 || true)
key=$(grep -o 'yz-[A-Za-z0-9]\{40\}' "$work/serve.out" | head -1 || true)
if [ -z "$url" ] || [ -z "$key" ]; then
  echo "server did not start:" >&2
  cat "$work/serve.out" "$work/serve.err" >&2
  exit 1
fi
port=${url##*:}
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$server_pid/status"; }
rss_start=$(rss_kb)

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
set +e
YUNZHI_API_KEY=$key "$build_dir/bench/serving/serve_bench" --port "$port" --model bench/qwen05b \
  --duration "$duration" --concurrency "$concurrency" "${extra[@]}" >"$work/table.md"
bench_rc=$?
set -e
load_end=$(cut -d' ' -f1-3 /proc/loadavg)
rss_end=$(rss_kb)

# What the server says after the load: KV blocks still in use would be a leak.
curl -s "$url/metrics" -H "Authorization: Bearer $key" >"$work/metrics.txt" || true
curl -s "$url/api/ps" -H "Authorization: Bearer $key" >"$work/ps.json" || true

kill -TERM "$server_pid"
wait "$server_pid" && server_rc=0 || server_rc=$?
server_pid=""

cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
cat <<EOF
## Serving (\`bench/serving/serve_bench.sh\`)

$(date -u +%Y-%m-%d), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown) (+ working tree),
$(nproc) cores ($cpu), engine threads $threads (YUNZHI_SERVING_THREADS). Qwen2.5-0.5B-shaped
Q4_0 random-weight model (\`yunzhi-make-model --preset qwen2.5-0.5b --type q4_0\`), prompts of
random token ids. Command: \`bench/serving/serve_bench.sh --threads $threads --duration $duration\`
(${duration} s measured per level, arrival: staggered unless stated). Load average (1/5/15 min)
$load_start at the start, $load_end at the end.

$(cat "$work/table.md")

Server: RSS $((rss_start / 1024)) MiB after start, $((rss_end / 1024)) MiB after the run; exit
code $server_rc on SIGTERM.
EOF
{
  echo "--- metrics after the run (no histogram buckets) ---"
  grep -E '^yunzhi_(kv|prefix|queue|batch|step|time_to_first|time_per_output|tokens|model)' \
    "$work/metrics.txt" | grep -v _bucket || true
  echo "--- /api/ps ---"; cat "$work/ps.json"; echo
  echo "--- server stderr (last 20 lines) ---"; tail -20 "$work/serve.err"
} >&2
exit "$bench_rc"
