#!/usr/bin/env python3
"""Golden chat answers of the default model: a few user messages rendered with its chat template
by transformers (apply_chat_template), then greedy decoding with transformers (fp32 compute on the
checkpoint's BF16 weights, eager attention and experts) until EOS or --max-new-tokens.

Writes tests/data/golden/default_chat.json: per prompt the messages, the rendered prompt text,
its token ids, the greedy ids, and the logit margin (top-1 minus top-2) of every greedy step, so
the test (tests/golden/default_chat_test.cpp) can check that epserve renders, tokenizes and
decodes the same without torch. Every prompt here has margins of at least --min-margin at every
step (the script fails otherwise): fp32 implementations that sum in different orders differ by
~1e-5 in the logits, so smaller margins could flip a token without either being wrong.

Usage (from the repository root): /work/venv/bin/python tools/train/golden_chat.py
"""
import argparse
import json
import os

import torch
import transformers
from transformers import AutoTokenizer, DeepseekV3ForCausalLM

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

PROMPTS = [
    "What does the word \"river\" mean?",
    "What does sorted() do?",
    "What is 12 + 7?",
    "Hello! Who are you?",
    "What is a mixture of experts?",
]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model-path", default=os.path.join(ROOT, "models", "default"))
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--min-margin", type=float, default=1e-3)
    p.add_argument("--output", default=os.path.join(ROOT, "tests", "data", "golden",
                                                    "default_chat.json"))
    args = p.parse_args()
    torch.set_num_threads(2)
    tok = AutoTokenizer.from_pretrained(args.model_path)
    model = DeepseekV3ForCausalLM.from_pretrained(
        args.model_path, dtype=torch.float32, attn_implementation="eager",
        experts_implementation="eager").eval()
    cases = []
    for prompt in PROMPTS:
        messages = [{"role": "user", "content": prompt}]
        text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        ids = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                      return_dict=True)["input_ids"]
        assert ids == tok(text, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            out = model.generate(torch.tensor([ids]), max_new_tokens=args.max_new_tokens,
                                 do_sample=False, output_logits=True,
                                 return_dict_in_generate=True)
        greedy = out.sequences[0, len(ids):].tolist()
        margins = []
        for step in out.logits:
            top2 = torch.topk(step[0].double(), 2).values
            margins.append(float(top2[0] - top2[1]))
        answer = tok.decode(greedy, skip_special_tokens=True)
        print(f"{prompt!r} -> {answer!r} (min margin {min(margins):.4g})")
        if min(margins) < args.min_margin:
            raise SystemExit(f"{prompt!r}: a greedy step has margin {min(margins):.3g} < "
                             f"{args.min_margin}; choose another prompt")
        cases.append({"messages": messages, "prompt_text": text, "prompt_ids": ids,
                      "greedy_ids": greedy, "answer": answer,
                      "finish_reason": "stop" if greedy[-1] == tok.eos_token_id else "length",
                      "margins": margins})
    doc = {"made_by": "tools/train/golden_chat.py", "transformers": transformers.__version__,
           "torch": torch.__version__, "model_path": "models/default",
           "compute": "fp32 on the checkpoint's BF16 weights, eager attention and experts",
           "max_new_tokens": args.max_new_tokens, "min_margin": args.min_margin,
           "cases": cases}
    with open(args.output, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print("wrote", args.output)


if __name__ == "__main__":
    main()
