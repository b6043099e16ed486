#!/usr/bin/env bash
# A short libFuzzer run of the weight-file parsers, for CI: builds the fuzz targets with clang
# (libFuzzer + AddressSanitizer + UBSan) against only the parser sources, then fuzzes each for
# a few seconds seeded with the real files in ../shared/testdata. Exits non-zero on any crash,
# sanitizer report or leak, leaving the crashing input in the output directory.
#   tests/fuzz/short_fuzz.sh OUT_DIR [SECONDS_PER_TARGET]
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:?usage: short_fuzz.sh OUT_DIR [SECONDS]}
seconds=${2:-20}
testdata="$src/../shared/testdata"
cxx=$(command -v clang++-14 || command -v clang++ || true)
[ -n "$cxx" ] || { echo "short_fuzz: clang++ not found (scripts/deps.sh test installs clang-14)" >&2; exit 1; }
[ -d "$testdata" ] || { echo "short_fuzz: $testdata is missing" >&2; exit 1; }
mkdir -p "$out"

parser_sources=(src/engine/tensor_type.cc src/engine/mapped_file.cc src/engine/atomic_file.cc
                src/base/status.cc)
build() {  # name, extra sources and libraries...
  local name=$1; shift
  local bin="$out/$name"
  local inputs=("tests/fuzz/$name.cc" "${parser_sources[@]}")
  local sources=() libs=()
  for a in "$@"; do case "$a" in -l*) libs+=("$a") ;; *) sources+=("$a") ;; esac; done
  inputs+=("${sources[@]}")
  # Rebuild only when a source or header is newer than the binary.
  if [ -x "$bin" ] && [ -z "$(cd "$src" && find "${inputs[@]}" include/yunzhi/engine include/yunzhi/base -newer "$bin" | head -1)" ]; then
    return
  fi
  (cd "$src" && "$cxx" -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined \
     -fno-sanitize-recover=undefined -Iinclude -Isrc "${inputs[@]}" -lfmt "${libs[@]}" -o "$bin")
}
build gguf_fuzz src/engine/gguf.cc
build safetensors_fuzz src/engine/safetensors.cc -lboost_json

# The first corpus directory is where libFuzzer writes: a fresh one; testdata dirs are seeds.
run_gguf() {
  local corpus="$out/gguf_fuzz.corpus"
  rm -rf "$corpus" && mkdir -p "$corpus"
  echo "short_fuzz: gguf_fuzz for ${seconds}s"
  if ! (cd "$out" && ./gguf_fuzz -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=2048 \
          -timeout=10 -print_final_stats=1 "$corpus" "$testdata/models" "$testdata/tokenizer" \
          2>gguf_fuzz.log); then
    tail -40 "$out/gguf_fuzz.log" >&2; echo "short_fuzz: gguf_fuzz FAILED" >&2; exit 1
  fi
  grep -E "stat::number_of_executed_units" "$out/gguf_fuzz.log" || true
}
run_safetensors() {
  local corpus="$out/safetensors_fuzz.corpus"
  rm -rf "$corpus" && mkdir -p "$corpus"
  echo "short_fuzz: safetensors_fuzz for ${seconds}s"
  if ! (cd "$out" && ./safetensors_fuzz -max_total_time="$seconds" -max_len=65536 \
          -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
          -dict="$src/tests/fuzz/safetensors.dict" "$corpus" 2>safetensors_fuzz.log); then
    tail -40 "$out/safetensors_fuzz.log" >&2; echo "short_fuzz: safetensors_fuzz FAILED" >&2; exit 1
  fi
  grep -E "stat::number_of_executed_units" "$out/safetensors_fuzz.log" || true
}
run_gguf
run_safetensors
echo "short_fuzz: PASS"
