#!/usr/bin/env python3
"""An independent float64 NumPy forward pass of the tiny models, checked against the goldens.

Written from the "Semantics notes for implementers" in README.md, not from transformers' code:
if it agrees with the transformers fixtures, the notes say enough to reproduce them. It needs
only numpy (no torch, no transformers, no safetensors package): checkpoints are read by hand
(bf16 -> fp32 by a 16-bit shift), so it also cross-checks the file format the C++ loader reads.

For each model and prompt it compares with tests/data/golden/<model>.safetensors:
prefill logits, every layer's output, router top-k ids and weights, greedy tokens and the
logits of each greedy step (recomputed without a cache over prompt + greedy prefix).

Usage: python3 tools/reference/numpy_forward.py [names...]   (any python3 with numpy; exit 1 on a mismatch)
"""

import argparse
import json
import math
import struct
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
NAMES = ["deepseek_v3_tiny", "deepseek_v3_tiny_noqlora", "qwen3_moe_tiny", "qwen3_moe_tiny_sharded"]
DTYPES = {"BF16": np.uint16, "F32": np.float32, "I32": np.int32, "F64": np.float64}


def read_safetensors(path):
    data = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        raw = np.frombuffer(data, DTYPES[info["dtype"]], offset=8 + n + begin,
                            count=(end - begin) // np.dtype(DTYPES[info["dtype"]]).itemsize)
        if info["dtype"] == "BF16":
            raw = (raw.astype(np.uint32) << 16).view(np.float32)
        out[name] = raw.reshape(info["shape"])
    return out


def read_model(model_dir):
    model_dir = Path(model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    weights = {}
    for path in sorted(model_dir.glob("*.safetensors")):
        weights.update({k: v.astype(np.float64) for k, v in read_safetensors(path).items()})
    return config, weights


def rms_norm(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def silu(x):
    return x / (1.0 + np.exp(-x))


def mlp(x, w, prefix):
    g = x @ w[prefix + "gate_proj.weight"].T
    u = x @ w[prefix + "up_proj.weight"].T
    return (silu(g) * u) @ w[prefix + "down_proj.weight"].T


def rope_params(config, dim):
    """inv_freq [dim/2], cos/sin multiplier, softmax-scale multiplier."""
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    theta = rope.get("rope_theta", config.get("rope_theta", 10000.0))
    kind = rope.get("rope_type", rope.get("type", "default"))
    base = theta ** (np.arange(0, dim, 2) / dim)
    if kind == "default":
        return 1.0 / base, 1.0, 1.0
    assert kind == "yarn", kind
    factor = rope["factor"]
    ompe = rope["original_max_position_embeddings"]

    def mscale_of(m):
        return 1.0 if factor <= 1 else 0.1 * m * math.log(factor) + 1.0

    m, m_all = rope.get("mscale"), rope.get("mscale_all_dim")
    if rope.get("attention_factor") is not None:
        attn = rope["attention_factor"]
    elif m and m_all:
        attn = mscale_of(m) / mscale_of(m_all)
    else:
        attn = mscale_of(1.0)

    def corr_dim(rotations):
        return dim * math.log(ompe / (rotations * 2 * math.pi)) / (2 * math.log(theta))

    low, high = corr_dim(rope.get("beta_fast") or 32), corr_dim(rope.get("beta_slow") or 1)
    if rope.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001
    ramp = np.clip((np.arange(dim // 2) - low) / (high - low), 0.0, 1.0)
    inv_freq = (1.0 / (factor * base)) * ramp + (1.0 / base) * (1.0 - ramp)
    softmax_mult = mscale_of(m_all) ** 2 if m_all else 1.0
    return inv_freq, attn, softmax_mult


def rope(x, pos, inv_freq, attn, interleaved):
    """x [T, heads, d]; returns the rotated x, in halves layout (first all x', then all y')."""
    ang = pos[:, None] * inv_freq[None, :]
    cos, sin = (np.cos(ang) * attn)[:, None, :], (np.sin(ang) * attn)[:, None, :]
    half = x.shape[-1] // 2
    a, b = (x[..., 0::2], x[..., 1::2]) if interleaved else (x[..., :half], x[..., half:])
    return np.concatenate([a * cos - b * sin, b * cos + a * sin], axis=-1)


def attend(q, k, v, scale):
    """q [T, H, d], k [T, H, d], v [T, H, dv]; causal."""
    t = q.shape[0]
    s = np.einsum("thd,shd->hts", q, k) * scale
    s = np.where(np.tril(np.ones((t, t), dtype=bool))[None], s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    return np.einsum("hts,shd->thd", p, v).reshape(t, -1)


def mla(c, w, p, x, pos):
    h, nope, rot, vd = (c["num_attention_heads"], c["qk_nope_head_dim"], c["qk_rope_head_dim"],
                        c["v_head_dim"])
    t = x.shape[0]
    if c.get("q_lora_rank"):
        q = rms_norm(x @ w[p + "q_a_proj.weight"].T, w[p + "q_a_layernorm.weight"], 1e-6)
        q = q @ w[p + "q_b_proj.weight"].T
    else:
        q = x @ w[p + "q_proj.weight"].T
    q = q.reshape(t, h, nope + rot)
    ckv = x @ w[p + "kv_a_proj_with_mqa.weight"].T
    latent = rms_norm(ckv[:, :c["kv_lora_rank"]], w[p + "kv_a_layernorm.weight"], 1e-6)
    k_rot = ckv[:, None, c["kv_lora_rank"]:]
    inv_freq, attn, softmax_mult = rope_params(c, rot)
    interleaved = c.get("rope_interleave", True)
    q_rot = rope(q[..., nope:], pos, inv_freq, attn, interleaved)
    k_rot = np.repeat(rope(k_rot, pos, inv_freq, attn, interleaved), h, axis=1)
    kv = (latent @ w[p + "kv_b_proj.weight"].T).reshape(t, h, nope + vd)
    qf = np.concatenate([q[..., :nope], q_rot], -1)
    kf = np.concatenate([kv[..., :nope], k_rot], -1)
    out = attend(qf, kf, kv[..., nope:], (nope + rot) ** -0.5 * softmax_mult)
    return out @ w[p + "o_proj.weight"].T


def gqa(c, w, p, x, pos):
    hq, hkv = c["num_attention_heads"], c["num_key_value_heads"]
    hd = c.get("head_dim") or c["hidden_size"] // hq
    eps, t = c["rms_norm_eps"], x.shape[0]
    q = rms_norm((x @ w[p + "q_proj.weight"].T).reshape(t, hq, hd), w[p + "q_norm.weight"], eps)
    k = rms_norm((x @ w[p + "k_proj.weight"].T).reshape(t, hkv, hd), w[p + "k_norm.weight"], eps)
    v = (x @ w[p + "v_proj.weight"].T).reshape(t, hkv, hd)
    inv_freq, attn, _ = rope_params(c, hd)
    q, k = rope(q, pos, inv_freq, attn, False), rope(k, pos, inv_freq, attn, False)
    g = hq // hkv
    out = attend(q, np.repeat(k, g, axis=1), np.repeat(v, g, axis=1), hd ** -0.5)
    return out @ w[p + "o_proj.weight"].T


def route_deepseek(c, w, p, x):
    e, k = c["n_routed_experts"], c["num_experts_per_tok"]
    groups, topk_group = c["n_group"], c["topk_group"]
    scores = 1.0 / (1.0 + np.exp(-(x @ w[p + "gate.weight"].T)))
    choice = scores + w[p + "gate.e_score_correction_bias"]
    ids = np.zeros((x.shape[0], k), dtype=np.int64)
    for t in range(x.shape[0]):
        per_group = np.sort(choice[t].reshape(groups, -1), axis=1)[:, -2:].sum(1)
        keep = np.argsort(-per_group, kind="stable")[:topk_group]
        allowed = np.full(e, -np.inf)
        for g in keep:
            span = slice(g * e // groups, (g + 1) * e // groups)
            allowed[span] = choice[t, span]
        ids[t] = np.sort(np.argsort(-allowed, kind="stable")[:k])
    weights = np.take_along_axis(scores, ids, 1)
    if c["norm_topk_prob"]:
        weights = weights / (weights.sum(1, keepdims=True) + 1e-20)
    return ids, weights * c["routed_scaling_factor"]


def route_qwen(c, w, p, x):
    k = c["num_experts_per_tok"]
    logits = x @ w[p + "gate.weight"].T
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    ids = np.sort(np.argsort(-probs, axis=1, kind="stable")[:, :k], axis=1)
    weights = np.take_along_axis(probs, ids, 1)
    if c["norm_topk_prob"]:
        weights = weights / weights.sum(1, keepdims=True)
    return ids, weights


def moe(c, w, p, x, deepseek):
    ids, weights = (route_deepseek if deepseek else route_qwen)(c, w, p, x)
    y = np.zeros_like(x)
    for t in range(x.shape[0]):
        for j, e in enumerate(ids[t]):
            y[t] += weights[t, j] * mlp(x[t:t + 1], w, f"{p}experts.{e}.")[0]
    if deepseek and c.get("n_shared_experts"):
        y += mlp(x, w, p + "shared_experts.")
    return y, ids, weights


def is_moe_layer(c, i, deepseek):
    if deepseek:
        return i >= c.get("first_k_dense_replace", 0)
    experts = c.get("num_experts", c.get("num_local_experts", 0))
    step = c.get("decoder_sparse_step", 1)
    return i not in (c.get("mlp_only_layers") or []) and experts > 0 and (i + 1) % step == 0


def forward(c, w, ids):
    """Full causal forward over ids; returns logits [T, V], layer outputs, routing per layer."""
    deepseek = c["architectures"][0] == "DeepseekV3ForCausalLM"
    eps = c["rms_norm_eps"]
    x = w["model.embed_tokens.weight"][ids]
    pos = np.arange(len(ids), dtype=np.float64)
    outputs, routing = [], {}
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        h = rms_norm(x, w[p + "input_layernorm.weight"], eps)
        x = x + (mla if deepseek else gqa)(c, w, p + "self_attn.", h, pos)
        h = rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)
        if is_moe_layer(c, i, deepseek):
            y, r_ids, r_w = moe(c, w, p + "mlp.", h, deepseek)
            routing[i] = (r_ids, r_w)
        else:
            y = mlp(h, w, p + "mlp.")
        x = x + y
        outputs.append(x)
    head = w["model.embed_tokens.weight"] if c.get("tie_word_embeddings") else w["lm_head.weight"]
    return rms_norm(x, w["model.norm.weight"], eps) @ head.T, outputs, routing


def check_model(name):
    c, w = read_model(REPO / "tests/data/models" / name)
    gold = {k: v.astype(np.float64) if v.dtype == np.float32 else v
            for k, v in read_safetensors(REPO / f"tests/data/golden/{name}.safetensors").items()}
    worst = {"logits": 0.0, "layer_output": 0.0, "topk_weights": 0.0}
    failures = []
    i = 0
    while f"prompt{i}.input_ids" in gold:
        ids = gold[f"prompt{i}.input_ids"].astype(np.int64)
        greedy = gold[f"prompt{i}.greedy_ids"].astype(np.int64)
        n = len(ids)
        logits, outputs, routing = forward(c, w, np.concatenate([ids, greedy[:-1]]))
        if not np.array_equal(logits[n - 1:].argmax(-1), greedy):
            failures.append(f"prompt{i}: greedy tokens {logits[n - 1:].argmax(-1)} != {greedy}")
        worst["logits"] = max(worst["logits"],
                              np.abs(logits[:n] - gold[f"prompt{i}.prefill_logits"]).max(),
                              np.abs(logits[n - 1:] - gold[f"prompt{i}.greedy_logits"]).max())
        for l, out in enumerate(outputs):
            d = np.abs(out[:n] - gold[f"prompt{i}.layer{l}.output"]).max()
            worst["layer_output"] = max(worst["layer_output"], d)
        for l, (r_ids, r_w) in routing.items():
            want_ids = np.concatenate([gold[f"prompt{i}.layer{l}.topk_ids"],
                                       gold[f"prompt{i}.decode.layer{l}.topk_ids"]])
            want_w = np.concatenate([gold[f"prompt{i}.layer{l}.topk_weights"],
                                     gold[f"prompt{i}.decode.layer{l}.topk_weights"]])
            if not np.array_equal(r_ids, want_ids):
                failures.append(f"prompt{i} layer{l}: router ids differ")
            worst["topk_weights"] = max(worst["topk_weights"], np.abs(r_w - want_w).max())
        i += 1
    return worst, failures


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", default=NAMES)
    parser.add_argument("--logits-atol", type=float, default=1e-4)
    args = parser.parse_args()
    ok = True
    for name in args.names:
        worst, failures = check_model(name)
        if worst["logits"] > args.logits_atol:
            failures.append(f"logits differ by {worst['logits']:.3g} > {args.logits_atol}")
        print(f"{name}: max |numpy fp64 - transformers fp32|: logits {worst['logits']:.3g}, "
              f"layer outputs {worst['layer_output']:.3g}, top-k weights {worst['topk_weights']:.3g}"
              f"; {'OK' if not failures else 'FAIL'}")
        for f in failures:
            print("  " + f)
        ok = ok and not failures
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
