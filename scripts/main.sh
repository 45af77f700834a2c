#!/usr/bin/env bash
# The main job: install what is needed, build, then serve the default model with SGLang's
# expert-parallel flags (experts over 4 ranks, DP attention, EPLB, the expert-distribution
# recorder), answer a chat request through the OpenAI-compatible API and dump the experts' load
# recorded while answering. The server is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install_deps.sh
scripts/build.sh
# The trained default model (models/default/TRAINING.md).
model=models/default
port="${EPSERVE_PORT:-30000}"
build/src/epserve serve --model-path "$model" --ep-size 4 --enable-dp-attention --enable-eplb \
  --expert-distribution-recorder-mode stat --trust-remote-code --port "$port" &
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
echo "POST /dump_expert_distribution_record"
curl -sf -X POST "localhost:$port/dump_expert_distribution_record" -H 'Content-Type: application/json' -d '{}'
