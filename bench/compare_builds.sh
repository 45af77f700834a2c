#!/usr/bin/env bash
# Two builds of epserve on the same model, runs interleaved (A B A B ...) so that the machine's
# load falls on both alike: prefill and decode tokens/s of `bench-one-batch` for each layout, the
# best of REPEATS runs of each build, and the ratio B / A.
#
#   bench/compare_builds.sh OLD_EPSERVE NEW_EPSERVE MODEL [REPEATS]
#
# MODEL: e.g. `epserve make-model --preset bench --output /tmp/bench_ds`. The layouts and batch
# shapes are the LAYOUTS lines below ("flags|bench-one-batch shape"), or with COMPARE_SHAPES=kernels
# the single-rank shapes of the kernel comparison in docs/benchmarks.md (prefill 512 and 2048,
# decode at batch 1 and 16).
set -euo pipefail
if [ $# -lt 3 ]; then
  echo "usage: $0 OLD_EPSERVE NEW_EPSERVE MODEL [REPEATS]" >&2
  exit 2
fi
old=$1 new=$2 model=$3 repeats=${4:-3}
LAYOUTS=(
  "|--batch-size 1 --input-len 256 --output-len 64"
  "|--batch-size 8 --input-len 256 --output-len 64"
  "--ep-size 2|--batch-size 2 --input-len 256 --output-len 64"
  "--ep-size 2 --enable-dp-attention --moe-a2a-backend deepep|--batch-size 2 --input-len 256 --output-len 64"
)
if [ "${COMPARE_SHAPES:-}" = kernels ]; then
  LAYOUTS=(
    "|--batch-size 1 --input-len 512 --output-len 2"
    "|--batch-size 1 --input-len 2048 --output-len 2"
    "|--batch-size 1 --input-len 128 --output-len 64"
    "|--batch-size 16 --input-len 128 --output-len 32"
  )
elif [ -n "${COMPARE_SHAPES:-}" ]; then
  echo "COMPARE_SHAPES must be 'kernels' or unset" >&2
  exit 2
fi

# Prints "prefill_tok_s decode_tok_s" of one run.
run_once() {
  local binary=$1 flags=$2 shape=$3
  # shellcheck disable=SC2086
  "$binary" bench-one-batch --model-path "$model" $shape $flags 2>&1 |
    awk '/^prefill:/ {p = $4} /^decode:/ {d = $4} END {print p, d}'
}

best() { sort -g | tail -1; }

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)," \
  "load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-60s %10s %10s %6s %10s %10s %6s\n' "layout | shape" "prefill A" "prefill B" "B/A" \
  "decode A" "decode B" "B/A"
for layout in "${LAYOUTS[@]}"; do
  flags=${layout%%|*} shape=${layout#*|}
  pa=() pb=() da=() db=()
  for ((i = 0; i < repeats; i++)); do
    read -r p d < <(run_once "$old" "$flags" "$shape")
    pa+=("$p") da+=("$d")
    read -r p d < <(run_once "$new" "$flags" "$shape")
    pb+=("$p") db+=("$d")
  done
  best_pa=$(printf '%s\n' "${pa[@]}" | best) best_pb=$(printf '%s\n' "${pb[@]}" | best)
  best_da=$(printf '%s\n' "${da[@]}" | best) best_db=$(printf '%s\n' "${db[@]}" | best)
  printf '%-60s %10.1f %10.1f %6.3f %10.1f %10.1f %6.3f\n' "${flags:-one rank} | $shape" \
    "$best_pa" "$best_pb" "$(awk -v a="$best_pa" -v b="$best_pb" 'BEGIN {print b / a}')" \
    "$best_da" "$best_db" "$(awk -v a="$best_da" -v b="$best_db" 'BEGIN {print b / a}')"
done
