#!/usr/bin/env bash
# epserve against llama.cpp, one command: builds llama.cpp from the llama-cpp-python source
# package (cached), converts the default and the bench model to GGUF BF16, then runs
# bench/peers/peers.py (greedy agreement, interleaved A/B of engine and server, table, plot).
# Everything fetched or built lives in $PEERS_CACHE, outside the repository. See README.md.
#
#   bench/peers/run.sh [extra peers.py flags, e.g. --repeats 5]
#
# Environment: PEERS_CACHE (~/.cache/epserve-peers), EPSERVE (build/src/epserve), THREADS (2),
# LLAMA_CPP_PYTHON_VERSION (0.3.36), TORCH_SITE (a site-packages with torch + transformers to
# reuse; default /work/venv-torch's, else they are pip-installed into the cache's venv).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
CACHE=${PEERS_CACHE:-$HOME/.cache/epserve-peers}
EPSERVE=${EPSERVE:-$REPO/build/src/epserve}
THREADS=${THREADS:-2}
VERSION=${LLAMA_CPP_PYTHON_VERSION:-0.3.36}
mkdir -p "$CACHE"
cd "$CACHE"
[ -x "$EPSERVE" ] || { echo "no epserve binary at $EPSERVE (build it first)"; exit 1; }

# 1. llama.cpp sources: the vendored copy in the llama-cpp-python sdist from PyPI.
SRC=$CACHE/src/llama_cpp_python-$VERSION/vendor/llama.cpp
if [ ! -f "$SRC/CMakeLists.txt" ]; then
  python3 -m pip download --no-binary :all: --no-deps "llama-cpp-python==$VERSION" -d src
  tar xzf "src/llama_cpp_python-$VERSION.tar.gz" -C src
fi

# 2. Native CPU build of the three tools used (minutes on 2 cores; cached).
BUILD=$CACHE/build-$VERSION
if [ ! -x "$BUILD/bin/llama-server" ] || [ ! -x "$BUILD/bin/llama-bench" ] ||
   [ ! -x "$BUILD/bin/llama-batched-bench" ]; then
  LAUNCHER=()
  command -v ccache >/dev/null && LAUNCHER=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
  cmake -S "$SRC" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
    -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DGGML_OPENMP=ON -DBUILD_SHARED_LIBS=OFF "${LAUNCHER[@]}" >/dev/null
  cmake --build "$BUILD" -j"$(nproc)" --target llama-server llama-bench llama-batched-bench
fi

# 3. Python: aiohttp and matplotlib for the driver; torch + transformers for the converter.
VENV=$CACHE/venv
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q aiohttp matplotlib numpy safetensors sentencepiece protobuf
fi
if ! "$VENV/bin/python" -c "import torch, transformers" 2>/dev/null; then
  SITE=${TORCH_SITE:-/work/venv-torch/lib/python3.11/site-packages}
  if [ -d "$SITE" ] && [ "$("$VENV/bin/python" -c 'import sys; print(sys.version_info[:2])')" = "(3, 11)" ]; then
    echo "$SITE" >"$("$VENV/bin/python" -c 'import site; print(site.getsitepackages()[0])')/zz-torch.pth"
  else
    "$VENV/bin/pip" install -q torch --index-url https://download.pytorch.org/whl/cpu
    "$VENV/bin/pip" install -q transformers
  fi
fi

# 4. Models: the default model (a copy with scoring_func set: llama.cpp's deepseek2 gating is
#    softmax unless the GGUF says sigmoid, which epserve and transformers assume when it is
#    absent) and the bench preset; both converted to GGUF BF16.
convert() {  # model_dir out.gguf
  [ -f "$2" ] || "$VENV/bin/python" "$REPO/bench/peers/convert.py" "$SRC" deepseek-v3 "$1" "$2" >"$2.log" 2>&1 ||
    { tail -20 "$2.log"; exit 1; }
}
mkdir -p models
if [ ! -f models/default/config.json ]; then
  cp -r "$REPO/models/default" models/default
  "$VENV/bin/python" - <<'EOF'
import json
p = "models/default/config.json"
c = json.load(open(p))
c.setdefault("scoring_func", "sigmoid")
c.setdefault("topk_method", "noaux_tc")
json.dump(c, open(p, "w"), indent=2)
EOF
fi
convert models/default models/default.gguf
if [ ! -f models/bench/config.json ]; then
  "$EPSERVE" make-model --preset bench --output models/bench
fi
convert models/bench models/bench.gguf

# 5. The comparison.
echo "CPU: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; threads $THREADS"
"$VENV/bin/python" "$REPO/bench/peers/peers.py" --epserve "$EPSERVE" --llama-bin "$BUILD/bin" \
  --default-model "$CACHE/models/default" --default-gguf "$CACHE/models/default.gguf" \
  --bench-model "$CACHE/models/bench" --bench-gguf "$CACHE/models/bench.gguf" \
  --threads "$THREADS" --out "$CACHE/results" "$@"
