#!/usr/bin/env python3
"""Writes the trained model in the Hugging Face format: reads the fp32 state files of train.py
(--state-dir) and writes config.json, model.safetensors (BF16, e_score_correction_bias F32 as
DeepSeek-V3 ships), generation_config.json, tokenizer.json and tokenizer_config.json into
--output (default models/default), then reads them back with transformers and checks that the
weights round-trip.

Usage (from the repository root):
  /work/venv/bin/python tools/train/export.py --state-dir tools/train/out/state
"""
import argparse
import glob
import os
import shutil

import torch
from safetensors import safe_open
from transformers import DeepseekV3Config, DeepseekV3ForCausalLM, GenerationConfig

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))


def load_state(directory):
    state, experts = {}, {}
    for path in sorted(glob.glob(os.path.join(directory, "state-*.safetensors"))):
        with safe_open(path, "pt") as f:
            for key in f.keys():
                if "#" in key:
                    name, e = key.split("#")
                    experts.setdefault(name, {})[int(e)] = f.get_tensor(key)
                else:
                    state[key] = f.get_tensor(key)
    for name, parts in experts.items():
        state[name] = torch.stack([parts[e] for e in range(len(parts))])
    return state


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--state-dir", default=os.path.join(HERE, "out", "state"))
    p.add_argument("--output", default=os.path.join(ROOT, "models", "default"))
    args = p.parse_args()
    config = DeepseekV3Config.from_json_file(os.path.join(args.state_dir, "train_config.json"))
    model = DeepseekV3ForCausalLM(config).eval()
    state = load_state(args.state_dir)
    missing, unexpected = model.load_state_dict(state, strict=True), None
    biases = {n: b.detach().clone() for n, b in model.named_buffers()
              if n.endswith("e_score_correction_bias")}
    assert biases and all(b.abs().max() > 0 for b in biases.values()), "correction biases are zero"
    model.to(torch.bfloat16)
    for name, value in biases.items():
        module_name, attr = name.rsplit(".", 1)
        setattr(model.get_submodule(module_name), attr, value)
    model.config.dtype = "bfloat16"
    model.generation_config = GenerationConfig(bos_token_id=config.bos_token_id,
                                               eos_token_id=config.eos_token_id)
    os.makedirs(args.output, exist_ok=True)
    for old in glob.glob(os.path.join(args.output, "*.safetensors")):
        os.remove(old)
    model.save_pretrained(args.output)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(HERE, "out", "tokenizer", name), os.path.join(args.output, name))
    loaded = DeepseekV3ForCausalLM.from_pretrained(args.output, dtype=torch.float32)
    for key, value in model.state_dict().items():
        assert torch.equal(value.float(), loaded.state_dict()[key]), key
    size = sum(os.path.getsize(f) for f in glob.glob(os.path.join(args.output, "*.safetensors")))
    print(f"wrote {args.output}: {sum(t.numel() for t in state.values()) / 1e6:.2f} M values, "
          f"{size / 1e6:.1f} MB of safetensors")


if __name__ == "__main__":
    main()
