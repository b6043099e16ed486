#!/usr/bin/env bash
# Configures (once) and builds one build tree incrementally.
#   scripts/build.sh release   -> build/release  (Release, no tests): what `scripts/run.sh` runs
#   scripts/build.sh test      -> build/test     (RelWithDebInfo, tests): what `scripts/test.sh` runs
# Extra arguments are passed to ninja (e.g. a target name).
set -euo pipefail
cd "$(dirname "$0")/.."
kind=${1:-release}; shift || true
case "$kind" in
  release) dir=build/release; flags=(-DCMAKE_BUILD_TYPE=Release -DYUNZHI_BUILD_TESTS=OFF) ;;
  test) dir=build/test; flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DYUNZHI_BUILD_TESTS=ON) ;;
  bench) dir=build/bench; flags=(-DCMAKE_BUILD_TYPE=Release -DYUNZHI_BUILD_TESTS=OFF -DYUNZHI_BUILD_BENCH=ON) ;;
  *) echo "usage: $0 release|test|bench [ninja args]" >&2; exit 2 ;;
esac
if [ ! -f "$dir/build.ninja" ]; then
  cmake -S . -B "$dir" -G Ninja "${flags[@]}" >/dev/null
fi
# Cache hits across clones of the repository (CI builds a fresh clone).
export CCACHE_BASEDIR="$PWD"
jobs=$(nproc)
ninja -C "$dir" -j "$jobs" "$@"
