#!/usr/bin/env bash
# The main job: install what is needed, build, then serve the default model with expert
# parallelism over 4 ranks and DP attention (SGLang's flags) and answer a chat request through the
# OpenAI-compatible API. The server is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install_deps.sh
scripts/build.sh
# The trained default model (models/default/TRAINING.md).
model=models/default
port="${EPSERVE_PORT:-30000}"
build/src/epserve serve --model-path "$model" --ep-size 4 --enable-dp-attention \
  --trust-remote-code --max-total-tokens 16384 --port "$port" &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null' EXIT
for _ in $(seq 600); do
  if curl -sf "localhost:$port/health" >/dev/null; then break; fi
  kill -0 $server 2>/dev/null || { echo "the server exited" >&2; exit 1; }
  sleep 0.5
done
request='{"model": "default", "max_tokens": 48, "temperature": 0,
          "messages": [{"role": "user", "content": "Hello! Who are you?"}]}'
echo "POST /v1/chat/completions $request"
curl -sf "localhost:$port/v1/chat/completions" -H 'Content-Type: application/json' -d "$request"
echo
