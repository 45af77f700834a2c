#!/usr/bin/env bash
# Builds the libFuzzer target for the safetensors header parser with clang and runs it for a
# bounded time (default 30 s) from a seed corpus made of the fixture files' headers.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-30}"
out=build/fuzz
mkdir -p "$out/corpus"
clang++ -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -Isrc \
  tests/fuzz/safetensors_header_fuzz.cpp src/io/safetensors.cpp src/core/dtype.cpp \
  src/core/tensor.cpp src/core/mapped_file.cpp -lfmt -o "$out/safetensors_header_fuzz"
for f in tests/data/models/*/*.safetensors; do
  # The header plus a little data is enough to seed the corpus.
  head -c 4096 "$f" >"$out/corpus/$(basename "$(dirname "$f")")-$(basename "$f")"
done
"$out/safetensors_header_fuzz" "$out/corpus" -max_total_time="$seconds" -max_len=8192 \
  -print_final_stats=1 2>&1 | tail -n 12
