#!/usr/bin/env python3
"""Records the default model's expert distribution with epserve's own recorder while it serves
the prompt set of workloads.py: `epserve serve` on 4 ranks with DP attention and
`--expert-distribution-recorder-mode stat` (trivial placement, so the counts are the router's),
each workload between /start_expert_distribution_record and /dump_expert_distribution_record,
greedy, 48 new tokens per request (as expert_distribution.py does with transformers).

Writes models/default/expert_distribution.json: {"logical_count": [[count per expert] per MoE
layer]} (the input of `epserve eplb plan --input`), per-workload counts, the answers, and the
balancedness of trivial placement on 4 ranks; and prints how far the counts are from
transformers' (expert_distribution_transformers.json, made by expert_distribution.py).

Needs only the Python standard library. From the repository root:
    python3 tools/train/record_distribution.py
"""
import argparse
import json
import os
import socket
import subprocess
import tempfile
import time
import urllib.request

from workloads import WORKLOADS

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def http(base, path, body=None):
    data = json.dumps(body if body is not None else {}).encode()
    req = urllib.request.Request(base + path, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=300) as r:
        return r.read().decode()


def balancedness(counts, num_gpus):
    """Per layer, trivial placement: expert e on rank e // (E / num_gpus)."""
    out = []
    for row in counts:
        per = len(row) // num_gpus
        loads = [sum(row[r * per:(r + 1) * per]) for r in range(num_gpus)]
        out.append((sum(loads) / num_gpus + 1e-5) / (max(loads) + 1e-5))
    return out


def moe_rows(dump, moe_layers):
    """The dump's logical_count [buffer, layers, experts] summed over the buffer, MoE layers only."""
    buffer = dump["logical_count"]
    rows = []
    for layer in moe_layers:
        rows.append([sum(entry[layer][e] for entry in buffer) for e in range(len(buffer[0][layer]))])
    return rows


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--binary", default=os.path.join(ROOT, "build", "src", "epserve"))
    p.add_argument("--model-path", default=os.path.join(ROOT, "models", "default"))
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--num-gpus", type=int, default=4)
    p.add_argument("--disable-radix-cache", action="store_true",
                   help="recompute shared prompt prefixes (as transformers does) instead of reusing them")
    args = p.parse_args()
    config = json.load(open(os.path.join(args.model_path, "config.json")))
    moe_layers = list(range(config["first_k_dense_replace"], config["num_hidden_layers"]))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    dump_dir = tempfile.mkdtemp(prefix="epserve-distribution-")
    env = dict(os.environ, EPSERVE_EXPERT_DISTRIBUTION_RECORDER_DIR=dump_dir)
    server = subprocess.Popen(
        [args.binary, "serve", "--model-path", args.model_path, "--port", str(port),
         "--ep-size", str(args.num_gpus), "--enable-dp-attention", "--max-total-tokens", "16384",
         "--expert-distribution-recorder-mode", "stat",
         "--expert-distribution-recorder-buffer-size", "-1", "--log-level", "warning"]
        + (["--disable-radix-cache"] if args.disable_radix_cache else []),
        env=env, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(base + "/health", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        per_workload, answers = {}, []
        for name, prompts in WORKLOADS.items():
            http(base, "/start_expert_distribution_record")
            for prompt in prompts:
                if name == "text":
                    # The BOS token first, as expert_distribution.py gives transformers (the
                    # tokenizer's add_bos_token is false).
                    r = json.loads(http(base, "/v1/completions", {
                        "model": "default", "prompt": "<｜begin▁of▁sentence｜>" + prompt, "max_tokens": args.max_new_tokens,
                        "temperature": 0}))
                    answer = r["choices"][0]["text"]
                else:
                    r = json.loads(http(base, "/v1/chat/completions", {
                        "model": "default", "max_tokens": args.max_new_tokens, "temperature": 0,
                        "messages": [{"role": "user", "content": prompt}]}))
                    answer = r["choices"][0]["message"]["content"]
                answers.append({"workload": name, "prompt": prompt, "answer": answer})
            reply = http(base, "/dump_expert_distribution_record")
            path = reply.split("Written to ")[1].strip()
            per_workload[name] = moe_rows(json.load(open(path)), moe_layers)
    finally:
        server.terminate()
        server.wait(60)
    experts = len(next(iter(per_workload.values()))[0])
    total = [[sum(c[l][e] for c in per_workload.values()) for e in range(experts)]
             for l in range(len(moe_layers))]
    doc = {
        "made_by": "tools/train/record_distribution.py (epserve serve --ep-size 4 "
                   "--enable-dp-attention --expert-distribution-recorder-mode stat, "
                   "/dump_expert_distribution_record per workload)",
        "what": "top-k selections per (MoE layer, logical expert) while serving the prompts: "
                f"prefill and up to {args.max_new_tokens} greedy decode steps per request",
        "moe_layers": moe_layers,
        "logical_count": total,
        "balancedness_trivial": {"num_gpus": args.num_gpus,
                                 "per_layer": balancedness(total, args.num_gpus)},
        "workloads": {name: {"logical_count": c,
                             "balancedness_trivial": balancedness(c, args.num_gpus)}
                      for name, c in per_workload.items()},
        "answers": answers,
    }
    out = os.path.join(args.model_path, "expert_distribution.json")
    with open(out, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    b = doc["balancedness_trivial"]["per_layer"]
    print(f"all prompts: balancedness per MoE layer {[round(v, 3) for v in b]}, "
          f"mean {sum(b) / len(b):.3f}")
    reference = os.path.join(args.model_path, "expert_distribution_transformers.json")
    if os.path.exists(reference):
        ref = json.load(open(reference))["logical_count"]
        diff = sum(abs(a - b) for ra, rb in zip(total, ref) for a, b in zip(ra, rb))
        print(f"against transformers' hooks: {sum(map(sum, total))} vs {sum(map(sum, ref))} "
              f"selections, sum of |differences| {diff}")
    print("wrote", out)


if __name__ == "__main__":
    main()
