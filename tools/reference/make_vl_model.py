#!/usr/bin/env python3
"""A tiny random-weight Qwen3-VL-MoE (Qwen3VLMoeForConditionalGeneration) for epserve's tests.

The shape of Qwen/Qwen3-VL-235B-A22B-Instruct scaled down: a 3-layer Qwen3-MoE language model
(16 experts, 4 active, GQA 4/2 heads of 32, interleaved MRoPE with mrope_section [6, 5, 5] as
the real [24, 20, 20] is for head_dim 128) and a 3-block vision tower (patch 16, temporal patch 2,
2x2 spatial merge, DeepStack features from blocks 0 and 1 into language layers 0 and 1).
Weights are seeded random values rounded to bfloat16, written by transformers' save_pretrained
and then with the experts in the published checkpoint's layout: fused, input dimension first
(mlp.experts.gate_up_proj [E, hidden, 2 * moe_inter], mlp.experts.down_proj [E, moe_inter, hidden]),
which transformers transposes on load (its qwen3_vl_moe conversion mapping) and save_pretrained
does not transpose back. The reload check shows transformers reads the file into the same model.
config.json is rewritten with the key names of the published config (rope_theta and rope_scaling
in text_config, num_experts). The tokenizer is qwen3_moe_tiny's, whose added tokens include the
vision tokens; preprocessor_config.json is Qwen3-VL's with smaller pixel limits; chat_template.jinja
is Qwen3-VL-Instruct's (tools/reference/qwen3_vl_chat_template.jinja), which places the images.

Usage: /work/venv-torch/bin/python tools/reference/make_vl_model.py [--out tests/data/models]
"""

import argparse
import json
import math
import shutil
import sys
from pathlib import Path

import torch
import transformers
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import Qwen3VLMoeConfig, Qwen3VLMoeForConditionalGeneration

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_models import (  # noqa: E402  the tiny models' shared shapes and weight scales
    BIAS_STD,
    LINEAR_GAIN,
    LM_HEAD_GAIN,
    NORM_RANGE,
    QWEN3_COMMON,
    ROUTER_GAIN,
)
NAME = "qwen3_vl_moe_tiny"
SEED = 1701
TOKENIZER_FROM = "qwen3_moe_tiny"

# Token ids of the vision tokens in qwen3_moe_tiny's tokenizer.
VISION_START, VISION_END, IMAGE_PAD, VIDEO_PAD = 9, 10, 12, 13

# qwen3_moe_tiny's language model (without norm_topk_prob, which Qwen3-VL's text config does not
# have: its router always renormalises), with its own expert width and MRoPE.
TEXT = {k: v for k, v in QWEN3_COMMON.items() if k != "norm_topk_prob"} | dict(
    moe_intermediate_size=24,  # 2 * 24 != hidden: the saved expert layout is unambiguous
    rope_parameters={
        "rope_type": "default",
        "rope_theta": 5000000.0,
        "mrope_section": [6, 5, 5],
        "mrope_interleaved": True,
    },
    tie_word_embeddings=False,
)

VISION = dict(
    depth=3,
    hidden_size=32,
    intermediate_size=64,
    num_heads=2,
    in_channels=3,
    patch_size=16,
    spatial_merge_size=2,
    temporal_patch_size=2,
    out_hidden_size=64,
    num_position_embeddings=64,  # an 8 x 8 table, interpolated to each image's grid
    deepstack_visual_indexes=[0, 1],
    hidden_act="gelu_pytorch_tanh",
)

# Qwen3-VL's image processor settings with the pixel limits made small: between 4 and 64 merged
# tokens per image (the published config allows 65536 to 16777216 pixels).
PREPROCESSOR = {
    "size": {"shortest_edge": 4 * 32 * 32, "longest_edge": 64 * 32 * 32},
    "patch_size": 16,
    "temporal_patch_size": 2,
    "merge_size": 2,
    "image_mean": [0.5, 0.5, 0.5],
    "image_std": [0.5, 0.5, 0.5],
    "do_rescale": True,
    "rescale_factor": 1.0 / 255.0,
    "do_normalize": True,
    "do_resize": True,
    "do_convert_rgb": True,
    "image_processor_type": "Qwen2VLImageProcessorFast",
    "processor_class": "Qwen3VLProcessor",
}

POS_EMBED_STD = 0.5  # the vision tower's learned position table


def make_config():
    return Qwen3VLMoeConfig(
        text_config=TEXT,
        vision_config=VISION,
        image_token_id=IMAGE_PAD,
        video_token_id=VIDEO_PAD,
        vision_start_token_id=VISION_START,
        vision_end_token_id=VISION_END,
        tie_word_embeddings=False,
    )


def init_weights(model, seed):
    """Seeded values for every parameter: projections keep their input's size, norms near 1."""
    gen = torch.Generator().manual_seed(seed)

    def normal(shape, std):
        return torch.randn(shape, generator=gen, dtype=torch.float32) * std

    for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
        shape = tuple(p.shape)
        if name.endswith("norm.weight") or name.endswith(("norm1.weight", "norm2.weight")):
            lo, hi = NORM_RANGE
            value = lo + (hi - lo) * torch.rand(shape, generator=gen, dtype=torch.float32)
        elif name.endswith(".bias"):
            value = normal(shape, BIAS_STD)
        elif name.endswith("embed_tokens.weight"):
            value = normal(shape, 1.0)
        elif name.endswith("pos_embed.weight"):
            value = normal(shape, POS_EMBED_STD)
        elif name == "lm_head.weight":
            value = normal(shape, LM_HEAD_GAIN / math.sqrt(shape[1]))
        elif name.endswith("mlp.gate.weight"):
            value = normal(shape, ROUTER_GAIN / math.sqrt(shape[1]))
        elif name.endswith("experts.gate_up_proj") or name.endswith("experts.down_proj"):
            value = normal(shape, LINEAR_GAIN / math.sqrt(shape[2]))  # in memory: [E, out, in]
        elif name.endswith("patch_embed.proj.weight"):
            fan_in = math.prod(shape[1:])  # Conv3d [out, C, T, P, P]
            value = normal(shape, LINEAR_GAIN / math.sqrt(fan_in))
        elif p.dim() == 2:
            value = normal(shape, LINEAR_GAIN / math.sqrt(shape[1]))  # nn.Linear [out, in]
        else:
            raise ValueError(f"no initialisation rule for parameter {name} {shape}")
        with torch.no_grad():
            p.copy_(value)


def write_published_expert_layout(out_dir):
    """Experts as the published checkpoint stores them: [E, in, out] (transformers keeps [E, out, in])."""
    path = out_dir / "model.safetensors"
    with safe_open(str(path), "pt") as f:
        metadata = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    for key in tensors:
        if key.endswith(("mlp.experts.gate_up_proj", "mlp.experts.down_proj")):
            tensors[key] = tensors[key].transpose(1, 2).contiguous()
    save_file(tensors, str(path), metadata=metadata)


def write_hub_style_config(out_dir):
    """The published config's spelling: rope_theta + rope_scaling, num_experts (text_config)."""
    path = out_dir / "config.json"
    config = json.loads(path.read_text())
    text = config["text_config"]
    rope = dict(text.pop("rope_parameters"))
    text["rope_theta"] = rope.pop("rope_theta")
    text["rope_scaling"] = rope  # {"rope_type": "default", "mrope_section", "mrope_interleaved"}
    text["num_experts"] = text.pop("num_local_experts")
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def check_saved(model, out_dir):
    """Fused experts in the published layout, and every other tensor exactly as in memory."""
    state = model.state_dict()
    with safe_open(str(out_dir / "model.safetensors"), "pt") as f:
        keys = sorted(f.keys())
        e, h, i = TEXT["num_experts"], TEXT["hidden_size"], TEXT["moe_intermediate_size"]
        prefix = "model.language_model.layers.2.mlp.experts"
        gate_up = f.get_tensor(f"{prefix}.gate_up_proj")
        down = f.get_tensor(f"{prefix}.down_proj")
        assert tuple(gate_up.shape) == (e, h, 2 * i), gate_up.shape
        assert tuple(down.shape) == (e, i, h), down.shape
        assert torch.equal(gate_up.transpose(1, 2), state[f"{prefix}.gate_up_proj"])
        assert torch.equal(down.transpose(1, 2), state[f"{prefix}.down_proj"])
        for key in keys:
            if "experts" not in key:
                assert torch.equal(f.get_tensor(key), state[key]), key
    assert any(k.startswith("model.visual.deepstack_merger_list.1.") for k in keys)
    return keys


def check_reload(model, out_dir):
    loaded = Qwen3VLMoeForConditionalGeneration.from_pretrained(str(out_dir), dtype=torch.bfloat16)
    a, b = model.state_dict(), loaded.state_dict()
    assert sorted(a) == sorted(b)
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} changed on reload"
    ta, tb = model.config.text_config, loaded.config.text_config
    assert ta.rope_parameters == tb.rope_parameters, (ta.rope_parameters, tb.rope_parameters)
    assert ta.num_experts == tb.num_experts


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(REPO / "tests/data/models"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    out_dir = Path(args.out) / NAME
    if out_dir.exists():
        shutil.rmtree(out_dir)
    torch.manual_seed(SEED)
    model = Qwen3VLMoeForConditionalGeneration(make_config()).eval()
    init_weights(model, SEED)
    model.to(torch.bfloat16)
    model.save_pretrained(str(out_dir))
    write_published_expert_layout(out_dir)
    write_hub_style_config(out_dir)
    keys = check_saved(model, out_dir)
    check_reload(model, out_dir)
    tokenizer_dir = Path(args.out) / TOKENIZER_FROM
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tokenizer_dir / name, out_dir / name)
    (out_dir / "preprocessor_config.json").write_text(json.dumps(PREPROCESSOR, indent=2) + "\n")
    shutil.copy(REPO / "tools/reference/qwen3_vl_chat_template.jinja", out_dir / "chat_template.jinja")
    size = sum(p.stat().st_size for p in out_dir.iterdir())
    print(f"{NAME}: {len(keys)} tensors, {size} bytes in {sorted(p.name for p in out_dir.iterdir())}")


if __name__ == "__main__":
    main()
