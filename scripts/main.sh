#!/usr/bin/env bash
# The main job: install what is needed, build, then serve the default model with expert
# parallelism over 4 ranks and DP attention (SGLang's flags) and answer a chat request through the
# OpenAI-compatible API. The server is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install_deps.sh
scripts/build.sh
model=models/default
if [ ! -f "$model/config.json" ]; then
  # No committed default model in this checkout: make a small random-weight one.
  model=build/models/default
  [ -f "$model/config.json" ] ||
    build/src/epserve make-model --arch deepseek_v3 --preset small --output "$model" --seed 1
fi
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
          "messages": [{"role": "user", "content": "What is a mixture of experts?"}]}'
echo "POST /v1/chat/completions $request"
curl -sf "localhost:$port/v1/chat/completions" -H 'Content-Type: application/json' -d "$request"
echo
