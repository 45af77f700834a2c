#!/usr/bin/env python3
"""Tiny random-weight Hugging Face models for epserve's golden tests.

Builds each model with transformers' own classes, fills every parameter with seeded random
values (norm weights around 1, a non-zero DeepSeek e_score_correction_bias, weights scaled so
activations stay near unit size and router/logit scores are well separated), rounds the
weights to bfloat16 and writes them with save_pretrained into tests/data/models/<name>/.

The DeepSeek router keeps the dtypes of the real DeepSeek-V3 checkpoint: gate.weight in
bfloat16 and e_score_correction_bias in float32.

Usage: /work/venv/bin/python tools/reference/make_models.py [--out tests/data/models] [names...]
"""

import argparse
import json
import math
import shutil
from pathlib import Path

import torch
import transformers
from safetensors import safe_open
from transformers import (
    DeepseekV3Config,
    DeepseekV3ForCausalLM,
    Qwen3MoeConfig,
    Qwen3MoeForCausalLM,
)

REPO = Path(__file__).resolve().parents[2]

# Scales of the random weights (see init_weights).
EMBED_STD = 1.0  # token embeddings
LINEAR_GAIN = 1.0  # std = gain / sqrt(fan_in) for projections: outputs keep the input's size
LM_HEAD_GAIN = 3.0  # logits with a std of about 3: clear top-1 / top-2 gaps
ROUTER_GAIN = 2.0  # router logits with a std of about 2
BIAS_STD = 0.1  # e_score_correction_bias: comparable to the gaps between sigmoid scores
NORM_RANGE = (0.7, 1.3)  # RMSNorm weights, uniform

DEEPSEEK_COMMON = dict(
    vocab_size=1024,
    hidden_size=64,
    intermediate_size=128,
    moe_intermediate_size=32,
    num_attention_heads=4,
    num_key_value_heads=4,
    kv_lora_rank=32,
    qk_nope_head_dim=16,
    qk_rope_head_dim=16,
    v_head_dim=16,
    n_routed_experts=16,
    routed_scaling_factor=2.5,
    norm_topk_prob=True,
    first_k_dense_replace=1,
    rope_interleave=True,
    max_position_embeddings=4096,
    rms_norm_eps=1e-6,
    bos_token_id=0,
    eos_token_id=1,
    tie_word_embeddings=False,
    num_mtp_layers=0,
)

QWEN3_COMMON = dict(
    vocab_size=1024,
    hidden_size=64,
    intermediate_size=128,
    moe_intermediate_size=32,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=32,
    num_experts=16,
    num_experts_per_tok=4,
    norm_topk_prob=True,
    decoder_sparse_step=1,
    mlp_only_layers=[],
    max_position_embeddings=4096,
    rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
    rms_norm_eps=1e-6,
    bos_token_id=0,
    eos_token_id=2,
)

MODELS = {
    "deepseek_v3_tiny": dict(
        cls=DeepseekV3ForCausalLM,
        config=DeepseekV3Config(
            **DEEPSEEK_COMMON,
            num_hidden_layers=4,
            q_lora_rank=48,
            n_shared_experts=1,
            n_group=4,
            topk_group=2,
            num_experts_per_tok=4,
            rope_parameters={
                "rope_type": "yarn",
                "rope_theta": 10000.0,
                "factor": 4.0,
                "original_max_position_embeddings": 1024,
                "beta_fast": 32.0,
                "beta_slow": 1.0,
                "mscale": 1.0,
                "mscale_all_dim": 0.8,
            },
        ),
        seed=1001,
        max_shard_size=None,
        hub_style_config=True,
    ),
    "deepseek_v3_tiny_noqlora": dict(
        cls=DeepseekV3ForCausalLM,
        config=DeepseekV3Config(
            **DEEPSEEK_COMMON,
            num_hidden_layers=3,
            q_lora_rank=None,
            n_shared_experts=2,
            n_group=1,
            topk_group=1,
            num_experts_per_tok=6,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        ),
        seed=1002,
        max_shard_size=None,
        hub_style_config=False,
    ),
    "qwen3_moe_tiny": dict(
        cls=Qwen3MoeForCausalLM,
        config=Qwen3MoeConfig(**QWEN3_COMMON, tie_word_embeddings=False),
        seed=1003,
        max_shard_size=None,
        hub_style_config=False,
    ),
    "qwen3_moe_tiny_sharded": dict(
        cls=Qwen3MoeForCausalLM,
        config=Qwen3MoeConfig(**QWEN3_COMMON, tie_word_embeddings=True),
        seed=1004,
        max_shard_size="300KB",
        # Tied: the lm_head is the embedding, and large embeddings echo the input token through
        # the residual stream (greedy decoding then repeats one token). Small embeddings with a
        # larger final norm keep the logits' spread without that echo.
        embed_std=0.05,
        final_norm_scale=7.5,
        hub_style_config=True,
    ),
}


def is_norm(name):
    return name.endswith("norm.weight")


def init_weights(model, seed, embed_std=EMBED_STD, final_norm_scale=1.0):
    """Seeded values for every parameter and for the correction-bias buffers (fp32, in place)."""
    gen = torch.Generator().manual_seed(seed)

    def normal(shape, std):
        return torch.randn(shape, generator=gen, dtype=torch.float32) * std

    # named_parameters lists a tied lm_head once, under the embedding's name.
    for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
        shape = tuple(p.shape)
        if is_norm(name):
            lo, hi = NORM_RANGE
            value = lo + (hi - lo) * torch.rand(shape, generator=gen, dtype=torch.float32)
            if name == "model.norm.weight":
                value *= final_norm_scale
        elif name.endswith("embed_tokens.weight"):
            value = normal(shape, embed_std)
        elif name == "lm_head.weight":
            value = normal(shape, LM_HEAD_GAIN / math.sqrt(shape[1]))
        elif name.endswith("mlp.gate.weight"):
            value = normal(shape, ROUTER_GAIN / math.sqrt(shape[1]))
        elif name.endswith("experts.gate_up_proj") or name.endswith("experts.down_proj"):
            value = normal(shape, LINEAR_GAIN / math.sqrt(shape[2]))  # [E, out, in]
        elif p.dim() == 2:
            value = normal(shape, LINEAR_GAIN / math.sqrt(shape[1]))  # nn.Linear [out, in]
        else:
            raise ValueError(f"no initialisation rule for parameter {name} {shape}")
        with torch.no_grad():
            p.copy_(value)
    for name, b in sorted(model.named_buffers(), key=lambda kv: kv[0]):
        if name.endswith("e_score_correction_bias"):
            with torch.no_grad():
                b.copy_(normal(tuple(b.shape), BIAS_STD))


def to_checkpoint_dtypes(model):
    """bfloat16 everywhere except e_score_correction_bias, which stays float32 (as in DeepSeek-V3)."""
    biases = {
        name: b.detach().clone()
        for name, b in model.named_buffers()
        if name.endswith("e_score_correction_bias")
    }
    model.to(torch.bfloat16)
    for name, value in biases.items():
        module_name, attr = name.rsplit(".", 1)
        setattr(model.get_submodule(module_name), attr, value)  # re-registers as a buffer
    return model


def saved_tensors(out_dir):
    tensors = {}
    for path in sorted(out_dir.glob("*.safetensors")):
        with safe_open(str(path), "pt") as f:
            for key in f.keys():
                tensors[key] = (path.name, f.get_tensor(key))
    return tensors


def check_saved(name, spec, model, out_dir):
    """The files hold hub per-expert names and exactly the in-memory values and dtypes."""
    tensors = saved_tensors(out_dir)
    config = spec["config"]
    state = model.state_dict()
    layer = config.num_hidden_layers - 1  # the last layer is always an MoE layer here
    prefix = f"model.layers.{layer}.mlp"
    for e in (0, config.num_local_experts - 1):
        for proj in ("gate_proj", "up_proj", "down_proj"):
            key = f"{prefix}.experts.{e}.{proj}.weight"
            assert key in tensors, f"{name}: {key} missing from the saved files"
    inter = config.moe_intermediate_size
    gate_up = state[f"{prefix}.experts.gate_up_proj"]
    e = 3
    assert torch.equal(tensors[f"{prefix}.experts.{e}.gate_proj.weight"][1], gate_up[e, :inter])
    assert torch.equal(tensors[f"{prefix}.experts.{e}.up_proj.weight"][1], gate_up[e, inter:])
    assert torch.equal(
        tensors[f"{prefix}.experts.{e}.down_proj.weight"][1], state[f"{prefix}.experts.down_proj"][e]
    )
    assert any(k.endswith("experts.gate_up_proj") for k in state), "in-memory experts are fused"
    assert not any("gate_up_proj" in k for k in tensors), f"{name}: fused expert tensors were saved"
    assert ("lm_head.weight" in tensors) == (not config.tie_word_embeddings)
    dtypes = {}
    for key, (_, t) in tensors.items():
        kind = "e_score_correction_bias" if key.endswith("e_score_correction_bias") else (
            "mlp.gate.weight" if key.endswith("mlp.gate.weight") else "other")
        dtypes.setdefault(kind, set()).add(str(t.dtype).replace("torch.", ""))
        if key in state:
            assert torch.equal(state[key], t), f"{name}: {key} differs from the model"
    return tensors, {k: sorted(v) for k, v in dtypes.items()}


def write_hub_style_config(out_dir):
    """Rewrite config.json with the key names of the published checkpoints.

    transformers 5 writes "rope_parameters" (rope_theta inside) and, for Qwen3-MoE,
    "num_local_experts". DeepSeek-V3 and Qwen3 checkpoints on the hub carry a top-level
    "rope_theta" beside "rope_scaling" (DeepSeek: {"type": "yarn", ...}; Qwen3: null) and
    Qwen3 says "num_experts". Both spellings occur in the wild, so half of the fixtures use each.
    """
    path = out_dir / "config.json"
    config = json.loads(path.read_text())
    rope = dict(config.pop("rope_parameters"))
    config["rope_theta"] = rope.pop("rope_theta")
    rope_type = rope.pop("rope_type")
    config["rope_scaling"] = None if rope_type == "default" else {"type": rope_type, **rope}
    if "num_local_experts" in config:
        config["num_experts"] = config.pop("num_local_experts")
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def check_reload(name, spec, model, out_dir):
    """transformers reads the files back into the same model (config, rope and weights)."""
    loaded = spec["cls"].from_pretrained(str(out_dir), dtype=torch.float32).eval()
    a, b = model.config, loaded.config
    for key in ("num_hidden_layers", "num_local_experts", "num_experts_per_tok",
                "tie_word_embeddings", "bos_token_id", "eos_token_id"):
        assert getattr(a, key) == getattr(b, key), f"{name}: config {key} changed on reload"
    ra = spec["cls"](spec["config"]).model.rotary_emb  # fp32 buffers (model's are now bf16)
    rb = loaded.model.rotary_emb
    assert torch.equal(ra.inv_freq, rb.inv_freq), f"{name}: rope inv_freq changed on reload"
    assert ra.attention_scaling == rb.attention_scaling, f"{name}: rope scaling changed on reload"
    assert model.model.layers[0].self_attn.scaling == loaded.model.layers[0].self_attn.scaling
    sa, sb = model.state_dict(), loaded.state_dict()
    assert sorted(sa) == sorted(sb), f"{name}: parameter names changed on reload"
    for key in sa:
        assert torch.equal(sa[key].float(), sb[key]), f"{name}: {key} changed on reload"
    if a.tie_word_embeddings:
        assert loaded.lm_head.weight.data_ptr() == loaded.model.embed_tokens.weight.data_ptr()


def make_model(name, spec, out_root):
    out_dir = out_root / name
    if out_dir.exists():
        shutil.rmtree(out_dir)
    torch.manual_seed(spec["seed"])  # construction draws default inits, overwritten below
    model = spec["cls"](spec["config"]).eval()
    init_weights(model, spec["seed"], spec.get("embed_std", EMBED_STD),
                 spec.get("final_norm_scale", 1.0))
    to_checkpoint_dtypes(model)
    kwargs = {}
    if spec["max_shard_size"]:
        kwargs["max_shard_size"] = spec["max_shard_size"]
    model.save_pretrained(str(out_dir), **kwargs)
    if spec["hub_style_config"]:
        write_hub_style_config(out_dir)
    tensors, dtypes = check_saved(name, spec, model, out_dir)
    check_reload(name, spec, model, out_dir)
    files = sorted(p.name for p in out_dir.iterdir())
    size = sum(p.stat().st_size for p in out_dir.iterdir())
    params = sum(t.numel() for _, t in tensors.values())
    print(f"{name}: {len(tensors)} tensors, {params} values, {size} bytes in {files}")
    print(f"  saved dtypes: {dtypes}")
    return {"files": files, "bytes": size, "dtypes": dtypes}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(REPO / "tests/data/models"))
    parser.add_argument("names", nargs="*", default=list(MODELS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    out_root = Path(args.out)
    out_root.mkdir(parents=True, exist_ok=True)
    summary = {name: make_model(name, MODELS[name], out_root) for name in args.names}
    print(json.dumps({k: v["bytes"] for k, v in summary.items()}))


if __name__ == "__main__":
    main()
