#!/usr/bin/env bash
# Live EPLB on a skewed workload: prefill and decode tokens/s of `epserve bench-one-batch` with
# EPLB off, on (0 and EP redundant experts) and with --ep-dispatch-algorithm fake (random routing:
# the perfect-balance ceiling, measured in the same run), for EP = 2 and 4, with the balancedness
# of the timed passes (tokens/s: best of REPEATS runs each, the machine being shared). Then the
# recorder's cost: decode tokens/s with the recorder off and in stat mode (best of REPEATS
# alternating runs each).
#
# The model is written by `epserve make-model --router-skew`: DeepSeek-V3 layout whose
# e_score_correction_bias prefers a seed-dependent order of the experts (expert of popularity
# rank r gets bias -skew * ln(1 + r) / ln(1 + E)), so a few experts take most tokens.
#
# Usage: bench/eplb/eplb_live.sh [build/src/epserve] (env: MODEL_DIR, BATCH, INPUT_LEN,
# OUTPUT_LEN, SKEW, REPEATS)
set -euo pipefail
EPSERVE=${1:-build/src/epserve}
MODEL_DIR=${MODEL_DIR:-/tmp/epserve_eplb_bench_model}
BATCH=${BATCH:-16}
INPUT_LEN=${INPUT_LEN:-64}
OUTPUT_LEN=${OUTPUT_LEN:-16}
SKEW=${SKEW:-3}
REPEATS=${REPEATS:-2}

if [ ! -f "$MODEL_DIR/config.json" ]; then
  "$EPSERVE" make-model --arch deepseek_v3 --preset small --hidden-size 512 \
    --moe-intermediate-size 512 --router-skew "$SKEW" --output "$MODEL_DIR" >/dev/null
fi

# Prints "prefill_tok_s decode_tok_s balancedness" of one run.
run() {
  "$EPSERVE" bench-one-batch --model-path "$MODEL_DIR" --batch-size "$BATCH" \
    --input-len "$INPUT_LEN" --output-len "$OUTPUT_LEN" --moe-a2a-backend deepep "$@" 2>/dev/null |
    awk '/^prefill:/ {p=$4} /^decode:/ {d=$4} /^expert balancedness/ {b=$NF}
         END {printf "%s %s %s\n", p, d, (b == "" ? "-" : b)}'
}

echo "model $MODEL_DIR (router skew $SKEW), batch $BATCH, input $INPUT_LEN, output $OUTPUT_LEN, best of $REPEATS"
printf "%-4s %-28s %12s %8s %12s %8s %12s\n" EP configuration prefill_tok/s x_fake \
  decode_tok/s x_fake balancedness
for ep in 2 4; do
  declare -A prefill decode balance
  configs=("off" "eplb" "eplb+redundant" "fake")
  for c in "${configs[@]}"; do
    case $c in
      off) flags="" ;;
      eplb) flags="--enable-eplb" ;;
      eplb+redundant) flags="--enable-eplb --ep-num-redundant-experts $ep" ;;
      fake) flags="--ep-dispatch-algorithm fake" ;;
    esac
    prefill[$c]=0 decode[$c]=0
    for _ in $(seq "$REPEATS"); do
      # shellcheck disable=SC2086
      read -r p d b < <(run --ep-size "$ep" --enable-expert-distribution-metrics $flags)
      prefill[$c]=$(echo "if ($p > ${prefill[$c]}) $p else ${prefill[$c]}" | bc -l)
      decode[$c]=$(echo "if ($d > ${decode[$c]}) $d else ${decode[$c]}" | bc -l)
      balance[$c]=$b
    done
  done
  for c in "${configs[@]}"; do
    printf "%-4s %-28s %12.1f %8.2f %12.1f %8.2f %12s\n" "$ep" "$c" "${prefill[$c]}" \
      "$(echo "${prefill[$c]} / ${prefill[fake]}" | bc -l)" "${decode[$c]}" \
      "$(echo "${decode[$c]} / ${decode[fake]}" | bc -l)" "${balance[$c]}"
  done
  unset prefill decode balance
done

echo
echo "recorder cost, EP 2, decode tok/s, best of $REPEATS alternating runs"
best_off=0 best_stat=0
for _ in $(seq "$REPEATS"); do
  read -r _ d _ < <(run --ep-size 2)
  best_off=$(echo "if ($d > $best_off) $d else $best_off" | bc -l)
  read -r _ d _ < <(run --ep-size 2 --expert-distribution-recorder-mode stat)
  best_stat=$(echo "if ($d > $best_stat) $d else $best_stat" | bc -l)
done
printf "recorder off %.2f, stat %.2f, stat / off %.3f\n" "$best_off" "$best_stat" \
  "$(echo "$best_stat / $best_off" | bc -l)"
