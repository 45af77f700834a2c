#!/usr/bin/env python3
"""Records the expert distribution of the default model while it serves a realistic prompt set:
transformers runs greedy generation (prefill + 48 decode steps per request) and forward hooks on
every MoE router count its top-k ids per (MoE layer, logical expert). Prompts: chat requests
(definitions, Python questions, arithmetic, small talk) rendered with the chat template, and
plain-text completions, none of them training examples verbatim.

Writes models/default/expert_distribution_transformers.json (the cross-check of
record_distribution.py, which records the same prompts through `epserve serve`): {"logical_count": [[count per expert] per MoE
layer]} (the input of `epserve eplb plan --input`), "moe_layers", per-workload counts, the
prompts, and the balancedness of trivial placement on --num-gpus ranks
((mean load per rank + 1e-5) / (max load + 1e-5), SGLang's definition).

Usage (from the repository root): /work/venv/bin/python tools/train/expert_distribution.py
"""
import argparse
import json
import os

import torch
from transformers import AutoTokenizer, DeepseekV3ForCausalLM

from workloads import WORKLOADS

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

def balancedness(counts, num_gpus):
    """Per layer, trivial placement: expert e on rank e // (E / num_gpus)."""
    out = []
    for row in counts:
        per_rank = torch.tensor(row, dtype=torch.float64).view(num_gpus, -1).sum(1)
        out.append(float((per_rank.mean() + 1e-5) / (per_rank.max() + 1e-5)))
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model-path", default=os.path.join(ROOT, "models", "default"))
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--num-gpus", type=int, default=4)
    p.add_argument("--output", default=None)
    args = p.parse_args()
    torch.set_num_threads(2)
    tok = AutoTokenizer.from_pretrained(args.model_path)
    model = DeepseekV3ForCausalLM.from_pretrained(args.model_path, dtype=torch.float32).eval()
    layers = [i for i, l in enumerate(model.model.layers) if hasattr(l.mlp, "gate")]
    E = model.config.n_routed_experts
    counts = torch.zeros(len(layers), E, dtype=torch.long)

    def hook(j):
        def record(module, inputs, output):
            counts[j] += torch.bincount(output[2].flatten(), minlength=E)
        return record

    for j, i in enumerate(layers):
        model.model.layers[i].mlp.gate.register_forward_hook(hook(j))
    per_workload, answers = {}, []
    for name, prompts in WORKLOADS.items():
        before = counts.clone()
        for prompt in prompts:
            if name == "text":
                ids = torch.tensor([[tok.bos_token_id] + tok(prompt)["input_ids"]])
            else:
                ids = tok.apply_chat_template([{"role": "user", "content": prompt}],
                                              add_generation_prompt=True, return_tensors="pt",
                                              return_dict=True)["input_ids"]
            with torch.no_grad():
                out = model.generate(ids, max_new_tokens=args.max_new_tokens, do_sample=False)
            answers.append({"workload": name, "prompt": prompt,
                            "answer": tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)})
        per_workload[name] = (counts - before).tolist()
    doc = {
        "made_by": "tools/train/expert_distribution.py (transformers forward hooks on the routers)",
        "what": "top-k selections per (MoE layer, logical expert) while serving the prompts: "
                f"prefill and up to {args.max_new_tokens} greedy decode steps per request",
        "moe_layers": layers,
        "logical_count": counts.tolist(),
        "balancedness_trivial": {"num_gpus": args.num_gpus,
                                 "per_layer": balancedness(counts.tolist(), args.num_gpus)},
        "workloads": {name: {"logical_count": c,
                             "balancedness_trivial": balancedness(c, args.num_gpus)}
                      for name, c in per_workload.items()},
        "answers": answers,
    }
    path = args.output or os.path.join(args.model_path, "expert_distribution_transformers.json")
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    b = doc["balancedness_trivial"]["per_layer"]
    print(f"all prompts: balancedness per MoE layer {[round(v, 3) for v in b]}, "
          f"mean {sum(b) / len(b):.3f}")
    for name, w in doc["workloads"].items():
        v = w["balancedness_trivial"]
        print(f"{name:12s} {[round(x, 3) for x in v]} mean {sum(v) / len(v):.3f}")
    print("wrote", path)


if __name__ == "__main__":
    main()
