#!/usr/bin/env bash
# One bench-one-batch run of the two-batch-overlap benchmark (docs/benchmarks.md, "Two-batch
# overlap"): W = 2, DP attention, deepep (auto), on one node or over the link of
# scripts/netns_link.sh (one rank per namespace, UCX_TLS=tcp,self). Writes OUT.log and OUT.json
# (the trace, both ranks).
#
#   scripts/bench_tbo.sh node|link MODEL BATCH INPUT_LEN OUTPUT_LEN OUT [extra flags...]
set -euo pipefail
where=$1 model=$2 batch=$3 input=$4 output=$5 out=$6
shift 6
bin=${EPSERVE_BIN:-build/src/epserve}
export EPSERVE_STORE_SECRET=${EPSERVE_STORE_SECRET:-tbo-bench-secret-0123456789}
args=(bench-one-batch --model-path "$model" --ep-size 2 --enable-dp-attention
      --moe-a2a-backend deepep --batch-size "$batch" --input-len "$input" --output-len "$output"
      "$@")
if [[ $where == node ]]; then
  "$bin" "${args[@]}" --trace-file "$out.json" >"$out.log" 2>&1
else
  port=$((29700 + RANDOM % 200))
  common=(--nnodes 2 --dist-init-addr 10.77.0.1:$port)
  UCX_TLS=tcp,self ip netns exec eps-node1 "$bin" "${args[@]}" "${common[@]}" --node-rank 1 \
    --trace-file "$out.n1.json" >"$out.n1.log" 2>&1 &
  pid=$!
  UCX_TLS=tcp,self ip netns exec eps-node0 "$bin" "${args[@]}" "${common[@]}" --node-rank 0 \
    --trace-file "$out.n0.json" >"$out.log" 2>&1
  # Node 1's launcher may report the store gone when node 0's exits first; its rank's trace
  # (OUT.n1.json.rank1) is written all the same.
  wait $pid || true
  python3 - "$out" <<'PY'
import json, os, sys
out = sys.argv[1]
events = []
for n in (0, 1):
    path = f"{out}.n{n}.json"
    events += json.load(open(path if os.path.exists(path) else f"{path}.rank{n}"))["traceEvents"]
json.dump({"traceEvents": events, "displayTimeUnit": "ms"}, open(f"{out}.json", "w"))
PY
fi
grep -E "^(prefill|decode):" "$out.log"
