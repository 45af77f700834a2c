#!/usr/bin/env python3
"""transformers' perplexity of a model over a text file, with exactly the windows of
`epserve perplexity` (Hugging Face's strided-window recipe: windows of --max-length tokens every
--stride tokens, each scoring only tokens no earlier window scored; the mean is over scored
tokens). fp32 compute on the checkpoint's weights, eager attention and experts.

Writes tests/data/perplexity/reference.json (--write) with one entry per case, or prints one
case (--model-path/--text-file).

Usage (from the repository root):
  /work/venv/bin/python tools/train/perplexity_reference.py --write
  /work/venv/bin/python tools/train/perplexity_reference.py --model-path models/default \
      --text-file tests/data/perplexity/heldout.txt --max-length 256 --stride 128
"""
import argparse
import hashlib
import json
import math
import os

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
DATA = os.path.join(ROOT, "tests", "data", "perplexity")

# (model directory, text file, max_length, stride, add_bos), paths relative to the repository.
CASES = [
    ("tests/data/models/deepseek_v3_tiny", "tests/data/perplexity/sample.txt", 64, 32, False),
    ("tests/data/models/deepseek_v3_tiny", "tests/data/perplexity/sample.txt", 100, 100, True),
    ("tests/data/models/qwen3_moe_tiny", "tests/data/perplexity/sample.txt", 64, 48, False),
    ("models/default", "tests/data/perplexity/heldout_sample.txt", 256, 256, True),
    ("models/default", "tests/data/perplexity/heldout.txt", 256, 128, True),
]


def windows(n, max_length, stride):
    out, prev_end, begin = [], 0, 0
    while begin < n:
        end = min(begin + max_length, n)
        first = max(prev_end, begin + 1)
        if first < end:
            out.append((begin, end, first))
        prev_end = end
        if end == n:
            break
        begin += stride
    return out


@torch.no_grad()
def perplexity(model_path, text_file, max_length, stride, add_bos):
    tok = AutoTokenizer.from_pretrained(model_path)
    text = open(text_file, encoding="utf-8").read()
    ids = tok(text)["input_ids"]
    if add_bos and (not ids or ids[0] != tok.bos_token_id):
        ids = [tok.bos_token_id] + ids
    model = AutoModelForCausalLM.from_pretrained(
        model_path, dtype=torch.float32, attn_implementation="eager",
        experts_implementation="eager").eval()
    total, scored = 0.0, 0
    ws = windows(len(ids), max_length, stride)
    for begin, end, first in ws:
        x = torch.tensor([ids[begin:end]])
        logits = model(input_ids=x, use_cache=False).logits[0].double()
        logp = torch.log_softmax(logits, dim=-1)
        targets = torch.tensor(ids[first:end])
        rows = torch.arange(first - begin - 1, end - begin - 1)
        total += float(-logp[rows, targets].sum())
        scored += end - first
    nll = total / scored
    return {"model_path": model_path, "text_file": text_file, "max_length": max_length,
            "stride": stride, "add_bos": add_bos, "tokens": len(ids), "scored_tokens": scored,
            "windows": len(ws), "ids_sha256": hashlib.sha256(json.dumps(ids).encode()).hexdigest(),
            "nll": nll, "perplexity": math.exp(nll)}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--write", action="store_true", help="recompute every case into reference.json")
    p.add_argument("--model-path")
    p.add_argument("--text-file")
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--stride", type=int, default=0)
    p.add_argument("--add-bos", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(2)
    if not args.write:
        print(json.dumps(perplexity(args.model_path, args.text_file, args.max_length,
                                    args.stride or args.max_length, args.add_bos)))
        return
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        cases = [perplexity(*c) for c in CASES]
    finally:
        os.chdir(cwd)
    doc = {"made_by": "tools/train/perplexity_reference.py --write",
           "transformers": transformers.__version__, "torch": torch.__version__,
           "compute": "fp32 on the checkpoint's weights, eager attention and experts; "
                      "log-softmax in float64",
           "cases": cases}
    with open(os.path.join(DATA, "reference.json"), "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    for c in cases:
        print(f"{c['model_path']} {c['text_file']} L={c['max_length']} S={c['stride']}: "
              f"{c['scored_tokens']} tokens, nll {c['nll']:.6f}, ppl {c['perplexity']:.4f}")


if __name__ == "__main__":
    main()
