#!/usr/bin/env bash
# Installs the Debian packages Yunzhi needs that are missing; does nothing when all are present.
#   scripts/deps.sh build   # what building and running `yunzhi` needs
#   scripts/deps.sh test    # plus what the test suite needs (GoogleTest, Python references, ...)
#   scripts/deps.sh bench   # plus what the benchmarks need (wrk, nginx, Google Benchmark)
set -euo pipefail
profile=${1:-build}

build_pkgs=(
  build-essential cmake ninja-build pkg-config ccache git
  libboost1.81-dev libboost-json1.81-dev libboost-url1.81-dev
  libsqlite3-dev libsodium-dev libspdlog-dev libfmt-dev libcli11-dev libexpected-dev
  libtomlplusplus-dev libpcre2-dev libicu-dev
  libmagic-dev libgumbo-dev libcmark-gfm-dev libcmark-gfm-extensions-dev
  libpoppler-cpp-dev poppler-data libzip-dev libpugixml-dev libhnswlib-dev
  libtesseract-dev tesseract-ocr-eng tesseract-ocr-chi-sim
)
test_pkgs=(libgtest-dev libgmock-dev python3 python3-jinja2 python3-numpy python3-torch
           clang-14 libclang-rt-14-dev)
bench_pkgs=(libbenchmark-dev libopenblas-dev wrk nginx-light)

want=("${build_pkgs[@]}")
case "$profile" in
  build) ;;
  test) want+=("${test_pkgs[@]}") ;;
  bench) want+=("${test_pkgs[@]}" "${bench_pkgs[@]}") ;;
  *) echo "usage: $0 build|test|bench" >&2; exit 2 ;;
esac

missing=()
for p in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
# The end-to-end tests drive the server with the official openai npm client. Node and npm come
# from Debian unless a node is installed already (NodeSource's nodejs bundles npm and conflicts
# with Debian's npm package).
if [ "$profile" != build ] && ! { command -v node && command -v npm; } >/dev/null 2>&1; then
  missing+=(nodejs npm)
fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}" >&2
  sudo_cmd=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "deps: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
    sudo_cmd=(sudo)
  fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The npm packages of tests/e2e/openai, exactly as locked, from the npm registry: installed when
# missing or older than the lockfile (npm ci records what it installed in .package-lock.json).
if [ "$profile" != build ]; then
  e2e="$(cd "$(dirname "$0")/.." && pwd)/tests/e2e/openai"
  if [ ! -f "$e2e/node_modules/.package-lock.json" ] ||
     [ "$e2e/package-lock.json" -nt "$e2e/node_modules/.package-lock.json" ]; then
    echo "deps: npm ci in tests/e2e/openai" >&2
    (cd "$e2e" && npm ci --no-audit --no-fund --loglevel=error)
  fi
fi
