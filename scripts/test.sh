#!/usr/bin/env bash
# Installs what is needed, builds, and runs every test: C++ unit, golden and multi-rank tests
# through CTest, the server's end-to-end tests (pytest), then the fuzz target for a bounded time.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install_deps.sh
scripts/build.sh
ctest --test-dir build --output-on-failure -j "$(nproc)"
scripts/e2e.sh
scripts/fuzz.sh 30
