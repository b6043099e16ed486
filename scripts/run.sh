#!/usr/bin/env bash
# One command to run the platform: installs what is missing, builds in Release, and starts
# `yunzhi serve` on the embedded default (SQLite + local files under ./data).
# Arguments go to `yunzhi serve` (e.g. --port 9000 --data-dir /srv/yunzhi).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh build
scripts/build.sh release yunzhi >/dev/null
exec build/release/yunzhi serve "$@"
