#!/usr/bin/env python3
"""Expected outputs of the tiny models, computed by Hugging Face transformers.

For each model in tests/data/models/ it loads the checkpoint with dtype float32 (fp32 compute
on the bf16-rounded weights) and eager attention, and records for several prompts (token ids):
prefill logits at every position, every decoder layer's output, router top-k expert ids and
weights of every MoE layer (sorted by expert id), 8 greedy decode steps run with the KV cache
(token ids, the logits that chose each token, the decode steps' routing), and the margins that
make the exact comparisons (greedy argmax, router top-k) robust to float error. Prompts are
drawn at random and redrawn (deterministically) until every margin clears MIN_MARGIN.
It then reruns every sequence in float64 and reports how far the fp32 logits are from it.

Writes tests/data/golden/<model>.safetensors (F32/I32) and tests/data/golden/<model>.json.

Usage: /work/venv/bin/python tools/reference/make_golden.py [names...]
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import transformers
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, DynamicCache

REPO = Path(__file__).resolve().parents[2]
MODELS_DIR = REPO / "tests/data/models"
GOLDEN_DIR = REPO / "tests/data/golden"
NAMES = ["deepseek_v3_tiny", "deepseek_v3_tiny_noqlora", "qwen3_moe_tiny", "qwen3_moe_tiny_sharded"]
PROMPT_LENGTHS = [1, 5, 17, 40]
FIRST_PROMPT_ID = 3  # ids 0..2 are bos/eos-like in these models
DECODE_STEPS = 8
MIN_MARGIN = 1e-3
# The floor of each of a prompt's margins (run_prompt's stats): MIN_MARGIN unless a model asks
# for more (make_golden's `floors`). "min_output_router_margin" is the smallest router margin of
# the positions whose logits are compared (the last prompt token and the decode steps).
MARGIN_KEYS = ("min_greedy_margin", "min_router_margin", "min_output_router_margin")
MAX_ATTEMPTS = 400


def load(name, dtype, cast_all=True):
    model = AutoModelForCausalLM.from_pretrained(
        str(MODELS_DIR / name), dtype=dtype, attn_implementation="eager",
        experts_implementation="eager",
    ).eval()
    # from_pretrained keeps DeepSeek's router weight and bias in fp32 whatever the dtype; the
    # float64 reference casts them too (the router still casts its input to fp32 internally).
    return model.to(dtype) if cast_all else model


def moe_layers(model):
    return [i for i, layer in enumerate(model.model.layers) if hasattr(layer.mlp, "gate")]


class Recorder:
    """Forward hooks on every router and decoder layer; one entry per forward call."""

    def __init__(self, model):
        self.routers = {}  # layer -> list of (router_logits, weights, ids)
        self.outputs = {}  # layer -> list of hidden states [T, H]
        self.handles = []
        for i, layer in enumerate(model.model.layers):
            self.outputs[i] = []
            self.handles.append(layer.register_forward_hook(self._layer_hook(i)))
            if hasattr(layer.mlp, "gate"):
                self.routers[i] = []
                self.handles.append(layer.mlp.gate.register_forward_hook(self._router_hook(i)))

    def _layer_hook(self, i):
        def hook(module, args, output):
            hidden = output[0] if isinstance(output, tuple) else output
            self.outputs[i].append(hidden.detach()[0].clone())

        return hook

    def _router_hook(self, i):
        def hook(module, args, output):
            logits, weights, ids = output
            self.routers[i].append((logits.detach().clone(), weights.detach().clone(), ids.clone()))

        return hook

    def clear(self):
        for v in self.routers.values():
            v.clear()
        for v in self.outputs.values():
            v.clear()

    def remove(self):
        for h in self.handles:
            h.remove()


def sorted_routing(weights, ids):
    """transformers' DeepSeek top-k is unsorted: order each token's experts by id."""
    order = torch.argsort(ids, dim=-1)
    return torch.gather(ids, -1, order), torch.gather(weights, -1, order)


def router_margins(model, layer, logits, ids):
    """Per token: the smallest gap that decides the selection (checked against ids).

    DeepSeek (sigmoid + correction bias, grouped): min over (a) the topk_group-th minus the
    (topk_group+1)-th group score and (b) the k-th minus the (k+1)-th biased score among the
    experts of the chosen groups. Qwen3 (softmax): the k-th minus (k+1)-th router logit (the
    softmax is monotonic; the probability gap is that logit gap times about the probability).
    Also returns, per token, whether the selection would differ without the bias (DeepSeek).
    """
    gate = model.model.layers[layer].mlp.gate
    k = gate.top_k
    logits = logits.double()
    t = logits.shape[0]
    inf = torch.full((t,), float("inf"), dtype=torch.float64)
    if hasattr(gate, "e_score_correction_bias"):
        scores = logits.sigmoid()
        biased = scores + gate.e_score_correction_bias.double()
        groups, per_group = gate.num_group, gate.num_experts // gate.num_group

        def select(s):
            group_scores = s.view(t, groups, per_group).topk(2, dim=-1)[0].sum(-1)
            gs = group_scores.sort(dim=-1, descending=True)[0]
            group_gap = inf
            if gate.topk_group < groups:
                group_gap = gs[:, gate.topk_group - 1] - gs[:, gate.topk_group]
            chosen = group_scores.topk(gate.topk_group, dim=-1)[1]
            mask = torch.zeros(t, groups, dtype=torch.bool)
            mask.scatter_(1, chosen, True)
            masked = s.masked_fill(~mask.repeat_interleave(per_group, dim=1), float("-inf"))
            ms = masked.sort(dim=-1, descending=True)[0]
            expert_gap = ms[:, k - 1] - ms[:, k]  # inf when exactly k experts are allowed
            sel = masked.topk(k, dim=-1)[1].sort(dim=-1)[0]
            return torch.minimum(group_gap, expert_gap), sel

        margin, sel = select(biased)
        _, unbiased_sel = select(scores)
        bias_changed = (unbiased_sel != sel).any(-1)
    else:
        ls = logits.sort(dim=-1, descending=True)[0]
        margin = ls[:, k - 1] - ls[:, k]
        sel = logits.topk(k, dim=-1)[1].sort(dim=-1)[0]
        bias_changed = torch.zeros(t, dtype=torch.bool)
    assert torch.equal(sel, ids.sort(dim=-1)[0].to(sel.dtype)), "router recomputation disagrees"
    return margin, bias_changed


def top2_margin(logits):
    top = logits.double().topk(2, dim=-1)[0]
    return top[..., 0] - top[..., 1]


def run_prompt(model, rec, input_ids):
    """Prefill + greedy decode with the KV cache; returns tensors and margins of one prompt."""
    out = {}
    rec.clear()
    cache = DynamicCache(config=model.config)
    with torch.no_grad():
        logits = model(input_ids=input_ids[None], cache=cache, use_cache=True).logits[0]
    out["prefill_logits"] = logits.float()
    prefill_routing = {l: rec.routers[l][0] for l in rec.routers}
    for l, hs in rec.outputs.items():
        out[f"layer{l}.output"] = hs[0].float()
    rec.clear()
    greedy_logits = [logits[-1]]
    greedy_ids = [int(logits[-1].argmax())]
    for _ in range(DECODE_STEPS - 1):
        step = torch.tensor([[greedy_ids[-1]]])
        with torch.no_grad():
            logits = model(input_ids=step, cache=cache, use_cache=True).logits[0, -1]
        greedy_logits.append(logits)
        greedy_ids.append(int(logits.argmax()))
    out["greedy_ids"] = torch.tensor(greedy_ids, dtype=torch.int32)
    out["greedy_logits"] = torch.stack(greedy_logits).float()
    greedy_margins = top2_margin(out["greedy_logits"])
    out["greedy_margins"] = greedy_margins.float()

    router_min = float("inf")
    output_min = float("inf")  # the routing of the last prompt token and the decode steps
    bias_changed = 0
    routed_tokens = 0
    for l in sorted(rec.routers):
        decode = rec.routers[l]
        for prefix, (lg, w, ids) in (
            ("", prefill_routing[l]),
            ("decode.", tuple(torch.cat(x) for x in zip(*decode))),
        ):
            sid, sw = sorted_routing(w, ids)
            out[f"{prefix}layer{l}.topk_ids"] = sid.to(torch.int32)
            out[f"{prefix}layer{l}.topk_weights"] = sw.float()
            margin, changed = router_margins(model, l, lg, ids)
            out[f"{prefix}layer{l}.router_margins"] = margin.float()
            router_min = min(router_min, float(margin.min()))
            output_min = min(output_min, float(margin[-1] if prefix == "" else margin.min()))
            bias_changed += int(changed.sum())
            routed_tokens += int(changed.numel())
    stats = {
        "min_greedy_margin": float(greedy_margins.min()),
        "min_router_margin": router_min,
        "min_output_router_margin": output_min,
        "bias_changed_selections": bias_changed,
        "routed_token_layers": routed_tokens,
    }
    return out, stats


def check_generate(model, input_ids, greedy_ids):
    """model.generate (greedy, cache) picks the same tokens as the manual loop."""
    with torch.no_grad():
        gen = model.generate(
            input_ids[None], do_sample=False, max_new_tokens=DECODE_STEPS, min_new_tokens=DECODE_STEPS
        )
    assert gen[0, len(input_ids):].tolist() == greedy_ids.tolist(), "generate() disagrees"


def margin_score(stats, floors):
    """The smallest of the prompt's margins relative to its floor (>= 1: all clear)."""
    return min(stats[k] / floors.get(k, MIN_MARGIN) for k in MARGIN_KEYS)


def acceptable(model, stats, greedy_ids, floors):
    special = {model.config.bos_token_id}
    eos = model.config.eos_token_id
    special |= set(eos) if isinstance(eos, list) else {eos}
    return margin_score(stats, floors) >= 1 and not special & set(greedy_ids.tolist())


def find_prompt(model, rec, slot, length, seed, floors):
    """Deterministic redraws until the prompt's margins all clear their floors; otherwise the
    draw whose smallest margin relative to its floor is the largest."""
    best = None
    for attempt in range(MAX_ATTEMPTS):
        rng = np.random.default_rng([seed, slot, attempt])
        ids = torch.tensor(rng.integers(FIRST_PROMPT_ID, model.config.vocab_size, size=length))
        out, stats = run_prompt(model, rec, ids)
        stats["attempts"] = attempt + 1
        if acceptable(model, stats, out["greedy_ids"], floors):
            return ids, out, stats
        score = margin_score(stats, floors)
        if best is None or score > best[0]:
            best = (score, ids, out, stats)
    print(f"  slot {slot}: no prompt cleared the floors {floors or MIN_MARGIN} in {MAX_ATTEMPTS} "
          "draws", file=sys.stderr)
    return best[1], best[2], best[3]


def compare_f64(name, prompts, tensors):
    """fp32 outputs against float64 transformers on the same sequences, teacher-forced.

    Each prompt is run once as prompt + greedy_ids[:-1] without a cache in float64 (and in
    float32, to compare the cached decode path with a plain forward over the same tokens).
    """
    m64 = load(name, torch.float64)
    m32 = load(name, torch.float32)
    worst = {"prefill_logits_max_abs": 0.0, "greedy_logits_max_abs": 0.0, "max_abs_logit": 0.0,
             "layer_output_max_abs": 0.0, "layer_output_max_rel": 0.0,
             "topk_weights_max_abs": 0.0, "routing_mismatches": 0,
             "fp32_cache_vs_no_cache_logits_max_abs": 0.0}
    rec64 = Recorder(m64)
    for i, ids in enumerate(prompts):
        full = torch.cat([ids, tensors[f"prompt{i}.greedy_ids"][:-1].long()])
        rec64.clear()
        with torch.no_grad():
            l64 = m64(input_ids=full[None]).logits[0]
            l32 = m32(input_ids=full[None]).logits[0].double()
        n = len(ids)
        pre = tensors[f"prompt{i}.prefill_logits"].double()
        dec = tensors[f"prompt{i}.greedy_logits"].double()
        worst["prefill_logits_max_abs"] = max(worst["prefill_logits_max_abs"],
                                              float((pre - l64[:n]).abs().max()))
        worst["greedy_logits_max_abs"] = max(worst["greedy_logits_max_abs"],
                                             float((dec - l64[n - 1:]).abs().max()))
        worst["max_abs_logit"] = max(worst["max_abs_logit"], float(l64.abs().max()))
        worst["fp32_cache_vs_no_cache_logits_max_abs"] = max(
            worst["fp32_cache_vs_no_cache_logits_max_abs"], float((dec - l32[n - 1:]).abs().max()))
        for l, calls in rec64.outputs.items():
            h64 = calls[0][:n]
            diff = float((tensors[f"prompt{i}.layer{l}.output"].double() - h64).abs().max())
            worst["layer_output_max_abs"] = max(worst["layer_output_max_abs"], diff)
            worst["layer_output_max_rel"] = max(worst["layer_output_max_rel"],
                                                diff / float(h64.abs().max()))
        for l, calls in rec64.routers.items():
            _, w, sel = calls[0]
            sid, sw = sorted_routing(w, sel)
            want_ids = torch.cat([tensors[f"prompt{i}.layer{l}.topk_ids"],
                                  tensors[f"prompt{i}.decode.layer{l}.topk_ids"]])
            want_w = torch.cat([tensors[f"prompt{i}.layer{l}.topk_weights"],
                                tensors[f"prompt{i}.decode.layer{l}.topk_weights"]])
            worst["routing_mismatches"] += int((sid.to(torch.int32) != want_ids).any(-1).sum())
            worst["topk_weights_max_abs"] = max(worst["topk_weights_max_abs"],
                                                float((sw.double() - want_w.double()).abs().max()))
    rec64.remove()
    worst["bf16_compute"] = compare_bf16(name, prompts, tensors)
    worst["logits_max_rel_to_max_logit"] = max(
        worst["prefill_logits_max_abs"], worst["greedy_logits_max_abs"]) / worst["max_abs_logit"]
    return worst


def compare_bf16(name, prompts, tensors):
    """How far transformers' own bfloat16 compute lands from the fp32 goldens (for scale only)."""
    m16 = load(name, torch.bfloat16, cast_all=False)
    rec = Recorder(m16)
    out = {"logits_max_abs": 0.0, "greedy_argmax_mismatches": 0, "routing_mismatches": 0,
           "routed_token_layers": 0}
    for i, ids in enumerate(prompts):
        greedy = tensors[f"prompt{i}.greedy_ids"]
        full = torch.cat([ids, greedy[:-1].long()])
        rec.clear()
        with torch.no_grad():
            logits = m16(input_ids=full[None]).logits[0].double()
        n = len(ids)
        want = torch.cat([tensors[f"prompt{i}.prefill_logits"][:-1],
                          tensors[f"prompt{i}.greedy_logits"]]).double()
        out["logits_max_abs"] = max(out["logits_max_abs"], float((logits - want).abs().max()))
        out["greedy_argmax_mismatches"] += int((logits[n - 1:].argmax(-1) != greedy).sum())
        for l, calls in rec.routers.items():
            _, w, sel = calls[0]
            sid, _ = sorted_routing(w, sel)
            want_ids = torch.cat([tensors[f"prompt{i}.layer{l}.topk_ids"],
                                  tensors[f"prompt{i}.decode.layer{l}.topk_ids"]])
            out["routing_mismatches"] += int((sid.to(torch.int32) != want_ids).any(-1).sum())
            out["routed_token_layers"] += len(want_ids)
    rec.remove()
    return out


def activation_stats(tensors, num_prompts, num_layers):
    last = num_prompts - 1
    rms = [float(tensors[f"prompt{last}.layer{l}.output"].pow(2).mean().sqrt()) for l in range(num_layers)]
    return {"layer_output_rms_last_prompt": rms,
            "prefill_logit_std_last_prompt": float(tensors[f"prompt{last}.prefill_logits"].std())}


def make_golden(name, seed, command, floors=None):
    """floors: margin key (MARGIN_KEYS) -> its floor, where a model needs more than MIN_MARGIN."""
    floors = floors or {}
    model = load(name, torch.float32)
    rec = Recorder(model)
    tensors, prompts, per_prompt = {}, [], []
    for slot, length in enumerate(PROMPT_LENGTHS):
        ids, out, stats = find_prompt(model, rec, slot, length, seed, floors)
        check_generate(model, ids, out["greedy_ids"])
        prompts.append(ids)
        tensors[f"prompt{slot}.input_ids"] = ids.to(torch.int32)
        for key, value in out.items():
            tensors[f"prompt{slot}.{key}"] = value.contiguous()
        per_prompt.append({"length": length, "input_ids": ids.tolist(),
                           "greedy_ids": out["greedy_ids"].tolist(), **stats})
        print(f"  prompt{slot} len {length}: greedy margin {stats['min_greedy_margin']:.4g}, "
              f"router margin {stats['min_router_margin']:.4g}, attempts {stats['attempts']}, "
              f"bias changed {stats['bias_changed_selections']}/{stats['routed_token_layers']}")
    rec.remove()
    f64 = compare_f64(name, prompts, tensors)
    print(f"  fp32 vs fp64: {f64}")
    acts = activation_stats(tensors, len(prompts), model.config.num_hidden_layers)
    print(f"  activations: {acts}")

    GOLDEN_DIR.mkdir(parents=True, exist_ok=True)
    versions = {"transformers": transformers.__version__, "torch": torch.__version__}
    save_file(tensors, str(GOLDEN_DIR / f"{name}.safetensors"),
              # one key: safetensors writes metadata in hash order, which would vary run to run
              metadata={"about": f"transformers outputs of tests/data/models/{name}, see {name}.json"})
    summary = {
        "model": f"tests/data/models/{name}",
        "command": command,
        "versions": versions,
        "compute": "from_pretrained(dtype=float32, attn_implementation='eager', "
                   "experts_implementation='eager'), batch 1, no padding",
        "moe_layers": moe_layers(model),
        "top_k": model.model.layers[moe_layers(model)[0]].mlp.gate.top_k,
        "decode_steps": DECODE_STEPS,
        "min_margin_required": MIN_MARGIN,
        **({"margin_floors": floors} if floors else {}),
        "margins": {
            "min_greedy_margin": min(p["min_greedy_margin"] for p in per_prompt),
            "min_router_margin": min(p["min_router_margin"] for p in per_prompt),
        },
        "fp32_vs_fp64": f64,
        "activations": acts,
        "prompts": per_prompt,
        "tensors": {k: {"dtype": str(v.dtype).replace("torch.", ""), "shape": list(v.shape)}
                    for k, v in sorted(tensors.items())},
    }
    (GOLDEN_DIR / f"{name}.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", default=NAMES)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    command = "python tools/reference/make_golden.py " + " ".join(args.names)
    for name in args.names:
        print(name)
        make_golden(name, seed=2000 + NAMES.index(name), command=command.strip())


if __name__ == "__main__":
    main()
