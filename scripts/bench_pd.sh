#!/usr/bin/env bash
# Serving with and without prefill/decode disaggregation at the same total ranks (issue 15;
# docs/benchmarks.md, "PD disaggregation: serving at the same total ranks"): builds epserve, makes
# build/bench-venv (aiohttp) when missing, runs bench/serving/bench_pd.py (which starts the servers
# and routers, alternates the layouts, takes /tmp/epserve-bench.lock per layout run and stops
# every process it started, ranks included), then prints the machine's CPU and load.
#
#   scripts/bench_pd.sh [--repeats 3] [--layouts plain-ep4 plain-ep4-dpattn pd-ep2-ep2] ...
set -euo pipefail
cd "$(dirname "$0")/.."
cmake --build build --target epserve >/dev/null
if [[ ! -x build/bench-venv/bin/python ]]; then
  python3 -m venv build/bench-venv
  build/bench-venv/bin/pip install -q aiohttp
fi
out=${BENCH_PD_OUT:-build/bench_pd.json}
status=0
build/bench-venv/bin/python bench/serving/bench_pd.py --out "$out" "$@" || status=$?
echo "rows: $out"
lscpu | grep -E "^(Model name|CPU\(s\)|Flags):"
uptime
exit $status
