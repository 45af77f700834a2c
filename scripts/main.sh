#!/usr/bin/env bash
# The main job: install what is needed, build, create the default model, and generate from it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install_deps.sh
scripts/build.sh
model=build/models/default
if [ ! -f "$model/config.json" ]; then
  build/src/epserve make-model --arch deepseek_v3 --preset small --output "$model" --seed 1
fi
build/src/epserve generate --model-path "$model" --input-ids 1,15,27,300,42 --max-new-tokens 16
