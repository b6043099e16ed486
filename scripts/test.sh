#!/usr/bin/env bash
# One command to run the whole test suite: installs what is missing, builds (incrementally) and
# runs every test with ctest. Extra arguments go to ctest (e.g. -L unit, -R Router).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh test
scripts/build.sh test
cd build/test
ctest --output-on-failure --no-tests=error -j "$(nproc)" "$@"
