#!/usr/bin/env bash
# End-to-end tests of `epserve serve` (tests/e2e, pytest + the official openai client) in a venv
# of their own (build/venv; no torch). EPSERVE_LOAD_SECONDS sets the load test's length (20 s
# here; the full run is 60).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x build/venv/bin/python ]; then
  python3 -m venv build/venv
fi
build/venv/bin/pip install -q --disable-pip-version-check pytest openai requests openapi-schema-validator
EPSERVE_BINARY="$PWD/build/src/epserve" EPSERVE_LOAD_SECONDS="${EPSERVE_LOAD_SECONDS:-20}" \
  timeout 900 build/venv/bin/python -m pytest tests/e2e -x -q -p no:cacheprovider "$@"
