#!/usr/bin/env python3
"""Tiny quantized DeepseekV3 checkpoints and their goldens (dequantise-then-run).

- deepseek_v3_tiny_fp8: tests/data/models/deepseek_v3_tiny with every linear layer except the
  router gate and lm_head cast to FP8 as DeepSeek's conversion describes: per 128x128 block
  s = amax / 448, weight = (w / s).to(float8_e4m3fn), `weight_scale_inv` = s (fp32);
  config.json gets DeepSeek-V3's quantization_config.
- kimi_k2_tiny_int4: a new tiny model of Kimi-K2-Thinking's shape (1 dense layer, n_group 1,
  topk_group 1, 8 of 384 routed experts active, 1 shared expert, routed_scaling_factor 2.827,
  sigmoid + correction bias, yarn factor 64 as the Thinking checkpoint) whose routed experts
  are quantized by the compressed-tensors package (W4A16 symmetric, group 32, pack-quantized:
  its calculate_qparams, quantize and pack_to_int32), with a config.json quantization_config
  written by its QuantizationConfig and Kimi's ignore list; attention, shared experts, the
  dense layer and lm_head stay BF16. It carries the small Kimi-K2 tiktoken tokenizer
  (tiktoken.model, tokenizer_config.json; [BOS] 766, [EOS] 767) and Kimi-K2-Thinking's chat template
  (tests/data/tokenizers/templates/kimi_k2_thinking.jinja, as chat_template.jinja).

The goldens are make_golden.py's, run in transformers on a copy of each model whose quantized
weights are replaced by their dequantised fp32 values (fp8 value * scale; (q) * scale as
compressed-tensors' dequantize computes it), so epserve's exact-format kernels are checked
against the same numbers.

Usage: /work/venv-torch/bin/python tools/reference/make_quant_models.py
(needs torch, transformers 5.24, safetensors, compressed-tensors 0.20)
"""

import json
import shutil
import sys
import tempfile
from pathlib import Path

import torch
import transformers
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import DeepseekV3Config, DeepseekV3ForCausalLM

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_golden  # noqa: E402
import make_models  # noqa: E402

import compressed_tensors  # noqa: E402
from compressed_tensors.compressors.pack_quantized.helpers import (  # noqa: E402
    pack_to_int32, unpack_from_int32)
from compressed_tensors.quantization import (  # noqa: E402
    QuantizationArgs, QuantizationConfig, QuantizationScheme)
from compressed_tensors.quantization.lifecycle.forward import (  # noqa: E402
    dequantize, quantize)
from compressed_tensors.quantization.utils import calculate_qparams  # noqa: E402

REPO = make_models.REPO
MODELS_DIR = REPO / "tests/data/models"
TOKENIZERS = REPO / "tests/data/tokenizers/small"
FP8_BLOCK = 128
FP8_MAX = 448.0
INT4_GROUP = 32
# The kimi golden's margin floors (make_golden: 1e-3 unless given). Its tests run epserve's
# rounded-activation paths (BF16 order; INT4-A8 on a VNNI CPU), whose logits sit up to about
# 0.15 from transformers' (Golden.Bf16OrderStaysCloseToTransformers): a greedy token holds when
# its margin is twice that. The top 8 of 384 sigmoid scores sit close together (median margin of
# a routed token about 0.007, against 0.06 with 16 experts), and where a layout that splits the
# heads meets the rounding, a one-ulp difference that crosses a bf16 rounding step moves later
# tokens' biased router scores by up to about 5e-3, one rank's already sitting up to about 2e-3
# from transformers': a routing flip at the last prompt token or a decode step moves the compared
# logits by O(1) (with the 1e-3 floor alone, prompt 2 of the first 384-expert golden, margin
# 0.0024 at its last token in layer 2, picked expert 42 on one rank and 302 on two: logits 0.84
# apart), one at an earlier prompt token reaches them only through attention. Long prompts clear
# none of this in 400 draws; they are the draws whose smallest margin relative to its floor is
# the largest.
KIMI_MARGIN_FLOORS = {"min_greedy_margin": 0.3, "min_output_router_margin": 3e-3}
KIMI_IGNORE = ["lm_head", "re:.*self_attn.*", "re:.*shared_experts.*",
               "re:.*mlp\\.(gate|up|gate_up|down)_proj.*"]

KIMI_SPEC = dict(
    cls=DeepseekV3ForCausalLM,
    config=DeepseekV3Config(
        # Kimi's ids in the small kimi_k2 tiktoken tokenizer: [BOS] 766, [EOS] 767.
        **{**make_models.DEEPSEEK_COMMON, "routed_scaling_factor": 2.827, "bos_token_id": 766,
           "eos_token_id": 767, "n_routed_experts": 384},
        num_hidden_layers=3,
        q_lora_rank=48,
        n_shared_experts=1,
        n_group=1,
        topk_group=1,
        num_experts_per_tok=8,
        rope_parameters={
            "rope_type": "yarn",
            "rope_theta": 50000.0,
            "factor": 64.0,
            "original_max_position_embeddings": 4096,
            "beta_fast": 1.0,
            "beta_slow": 1.0,
            "mscale": 1.0,
            "mscale_all_dim": 1.0,
        },
    ),
    seed=1005,
    max_shard_size=None,
    hub_style_config=True,
)


def read_tensors(model_dir):
    with safe_open(str(model_dir / "model.safetensors"), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


def fp8_block_cast(w):
    """DeepSeek's block cast: per 128x128 block s = amax/448, q = (w/s).to(e4m3fn)."""
    w = w.float()
    rows, cols = w.shape
    br, bc = -(-rows // FP8_BLOCK), -(-cols // FP8_BLOCK)
    scale = torch.empty(br, bc, dtype=torch.float32)
    q = torch.empty(rows, cols, dtype=torch.float8_e4m3fn)
    for i in range(br):
        for j in range(bc):
            block = w[i * FP8_BLOCK:(i + 1) * FP8_BLOCK, j * FP8_BLOCK:(j + 1) * FP8_BLOCK]
            s = block.abs().max().clamp(min=1e-12) / FP8_MAX
            scale[i, j] = s
            q[i * FP8_BLOCK:(i + 1) * FP8_BLOCK, j * FP8_BLOCK:(j + 1) * FP8_BLOCK] = \
                (block / s).to(torch.float8_e4m3fn)
    return q, scale


def fp8_dequant(q, scale):
    s = scale.repeat_interleave(FP8_BLOCK, 0).repeat_interleave(FP8_BLOCK, 1)
    return q.float() * s[:q.shape[0], :q.shape[1]]


def int4_args():
    return QuantizationArgs(num_bits=4, type="int", symmetric=True, strategy="group",
                            group_size=INT4_GROUP)


def int4_quantize(w):
    """compressed-tensors' W4A16 group quantization: returns packed, bf16 scale, dequantised."""
    args = int4_args()
    w = w.float()
    rows, cols = w.shape
    groups = w.reshape(rows, cols // INT4_GROUP, INT4_GROUP)
    min_vals = groups.amin(dim=-1).clamp(max=0)
    max_vals = groups.amax(dim=-1).clamp(min=0)
    scale, zero_point = calculate_qparams(min_vals, max_vals, args)
    scale = scale.to(torch.bfloat16)  # the checkpoint's dtype; quantize with the stored scale
    zero_point = zero_point.to(torch.int8)
    q = quantize(w, scale.float(), zero_point, args, dtype=torch.int8)
    packed = pack_to_int32(q, 4)
    unpacked = unpack_from_int32(packed, 4, torch.Size([rows, cols]))
    assert torch.equal(unpacked, q), "pack/unpack round trip"
    deq = dequantize(unpacked, scale.float(), zero_point, args, dtype=torch.float32)
    assert torch.equal(deq, unpacked.float() * scale.float().repeat_interleave(INT4_GROUP, 1))
    return packed, scale, deq


def fp8_target(name):
    return (name.endswith("_proj.weight") or name.endswith("kv_a_proj_with_mqa.weight")) \
        and "embed" not in name


def int4_target(name):
    return ".mlp.experts." in name and name.endswith("_proj.weight")


def write_model(src_dir, out_dir, tensors, quant_config):
    if out_dir.exists():
        shutil.rmtree(out_dir)
    shutil.copytree(src_dir, out_dir)
    (out_dir / "model.safetensors").unlink()
    save_file(dict(sorted(tensors.items())), str(out_dir / "model.safetensors"),
              metadata={"format": "pt"})
    config = json.loads((out_dir / "config.json").read_text())
    config["quantization_config"] = quant_config
    (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")


def quantize_fp8(src_dir, out_dir, ref_dir):
    src = read_tensors(src_dir)
    out, ref = {}, {}
    for name, t in src.items():
        if fp8_target(name):
            q, s = fp8_block_cast(t)
            out[name], out[name + "_scale_inv"] = q, s
            ref[name] = fp8_dequant(q, s)
        else:
            out[name] = ref[name] = t
    write_model(src_dir, out_dir, out, {"activation_scheme": "dynamic", "fmt": "e4m3",
                                        "quant_method": "fp8",
                                        "weight_block_size": [FP8_BLOCK, FP8_BLOCK]})
    write_model(src_dir, ref_dir, ref, None)
    return sum(fp8_target(n) for n in src)


def quantize_int4(src_dir, out_dir, ref_dir):
    src = read_tensors(src_dir)
    out, ref = {}, {}
    for name, t in src.items():
        if int4_target(name):
            packed, scale, deq = int4_quantize(t)
            prefix = name[:-len(".weight")]
            out[prefix + ".weight_packed"] = packed
            out[prefix + ".weight_scale"] = scale
            out[prefix + ".weight_shape"] = torch.tensor(list(t.shape), dtype=torch.int32)
            ref[name] = deq
        else:
            out[name] = ref[name] = t
    qc = QuantizationConfig(
        config_groups={"group_0": QuantizationScheme(targets=["Linear"], weights=int4_args())},
        format="pack-quantized", ignore=KIMI_IGNORE, quantization_status="compressed")
    qc_json = json.loads(qc.model_dump_json())
    qc_json["quant_method"] = "compressed-tensors"
    write_model(src_dir, out_dir, out, qc_json)
    write_model(src_dir, ref_dir, ref, None)
    return sum(int4_target(n) for n in src)


def main():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_models.make_model("kimi_k2_tiny_bf16", KIMI_SPEC, tmp)
        jobs = [("deepseek_v3_tiny_fp8", MODELS_DIR / "deepseek_v3_tiny", quantize_fp8, 2101,
                 None),
                ("kimi_k2_tiny_int4", tmp / "kimi_k2_tiny_bf16", quantize_int4, 2102,
                 KIMI_MARGIN_FLOORS)]
        ref_root = tmp / "dequantised"
        for name, src, fn, _, _ in jobs:
            n = fn(src, MODELS_DIR / name, ref_root / name)
            # Kimi's tiktoken format: the small kimi_k2 tokenizer epserve embeds (1024 ids).
            if name.startswith("kimi"):
                for f in (TOKENIZERS / "kimi_k2").iterdir():
                    shutil.copy(f, MODELS_DIR / name / f.name)
                # ... with Kimi-K2-Thinking's own chat template (thinking history, reasoning_content).
                shutil.copy(TOKENIZERS.parent / "templates/kimi_k2_thinking.jinja",
                            MODELS_DIR / name / "chat_template.jinja")
            size = sum(p.stat().st_size for p in (MODELS_DIR / name).iterdir())
            print(f"{name}: {n} quantized matrices, {size} bytes")
        # The goldens: make_golden on the dequantised copies, written under the real names.
        make_golden.MODELS_DIR = ref_root
        command = "python tools/reference/make_quant_models.py"
        for name, _, _, seed, floors in jobs:
            print(name)
            summary = make_golden.make_golden(name, seed=seed, command=command, floors=floors)
            summary["model"] = f"tests/data/models/{name}"
            summary["reference"] = ("transformers on the dequantised weights (fp32), "
                                    f"compressed-tensors {compressed_tensors.__version__}")
            path = make_golden.GOLDEN_DIR / f"{name}.json"
            path.write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
