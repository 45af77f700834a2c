#!/usr/bin/env python3
"""Expected outputs of the tiny Qwen3-VL-MoE (tests/data/models/qwen3_vl_moe_tiny), computed by
Hugging Face transformers, for prompts with no image, one image and two images.

The model is loaded in float32 (fp32 compute on the bf16-rounded weights) with eager attention.
Images are small synthetic RGB pictures of different sizes, preprocessed by the model's HF image
processor (its preprocessor_config.json: Qwen2VLImageProcessorFast, patch 16, temporal patch 2,
2x2 merge, smart resize); their pixel values are saved with the golden so epserve's tests need no image
decoding. Each prompt is text tokens around <|vision_start|> <|image_pad|> x N <|vision_end|>
runs. Recorded per case: input ids, each image's grid and pixel values, the vision tower's
output per image (merger output then each DeepStack feature, [tokens, hidden * (1 + D)]), the
3-D rotary positions of get_rope_index [3, n] and the rope delta, the prefill logits at every
position, and 6 greedy tokens (each step recomputes the whole sequence with the images, so the
decode positions come from get_rope_index too) with the logits that chose them and their
top-1/top-2 margins. Prompts are redrawn (deterministically) until every margin clears
MIN_MARGIN.

Writes tests/data/golden/qwen3_vl_moe_tiny.safetensors (F32/I32) and qwen3_vl_moe_tiny.json.

Usage: /work/venv-torch/bin/python tools/reference/make_vl_golden.py
"""

import json
from pathlib import Path

import numpy as np
import torch
import transformers
from safetensors.torch import save_file
from transformers import AutoImageProcessor, Qwen3VLMoeForConditionalGeneration

REPO = Path(__file__).resolve().parents[2]
NAME = "qwen3_vl_moe_tiny"
MODEL_DIR = REPO / "tests/data/models" / NAME
GOLDEN_DIR = REPO / "tests/data/golden"
DECODE_STEPS = 6
MIN_MARGIN = 1e-3
FIRST_TEXT_ID = 20  # below: special and vision tokens

# (name, image sizes as (height, width), text tokens before/between/after the images)
CASES = [
    ("text", [], [9]),
    ("one_image", [(64, 96)], [5, 4]),
    ("two_images", [(96, 64), (64, 128)], [3, 2, 4]),
]


def processor():
    return AutoImageProcessor.from_pretrained(str(MODEL_DIR))


def synthetic_image(rng, height, width):
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / width, y * 255 / height, (x + y) * 127 / (width + height)], -1)
    noise = rng.integers(0, 64, size=(height, width, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def build_prompt(rng, cfg, grids, text_lengths):
    vocab = cfg.text_config.vocab_size
    merge = cfg.vision_config.spatial_merge_size
    ids = []
    for i, n in enumerate(text_lengths):
        ids += rng.integers(FIRST_TEXT_ID, vocab, size=n).tolist()
        if i < len(grids):
            t, h, w = grids[i]
            ids += [cfg.vision_start_token_id] + [cfg.image_token_id] * (t * h * w // merge**2)
            ids += [cfg.vision_end_token_id]
    return ids


@torch.no_grad()
def run(model, ids, pixel_values, grids):
    cfg = model.config
    input_ids = torch.tensor([ids])
    kwargs = {}
    if grids:
        kwargs = dict(pixel_values=pixel_values, image_grid_thw=torch.tensor(grids),
                      mm_token_type_ids=(input_ids == cfg.image_token_id).int())
    return model(input_ids=input_ids, **kwargs).logits[0]


def margin(row):
    top = torch.topk(row, 2).values
    return float(top[0] - top[1])


def main():
    torch.manual_seed(0)
    model = Qwen3VLMoeForConditionalGeneration.from_pretrained(
        str(MODEL_DIR), dtype=torch.float32, attn_implementation="eager").eval()
    cfg = model.config
    proc = processor()
    tensors, meta = {}, {"model": NAME, "transformers": transformers.__version__,
                         "decode_steps": DECODE_STEPS, "cases": []}
    for case, sizes, text_lengths in CASES:
        for attempt in range(200):
            rng = np.random.default_rng([attempt, len(sizes)])
            images = [synthetic_image(rng, h, w) for h, w in sizes]
            grids, pixel_values = [], None
            if images:
                out = proc(images=images, return_tensors="pt")
                pixel_values = out["pixel_values"].float()
                grids = out["image_grid_thw"].tolist()
            ids = build_prompt(rng, cfg, grids, text_lengths)
            logits = run(model, ids, pixel_values, grids)
            seq, steps, step_logits, margins = list(ids), [], [], [margin(logits[-1])]
            last = logits[-1]
            for _ in range(DECODE_STEPS):
                token = int(torch.argmax(last))
                steps.append(token)
                step_logits.append(last)
                seq.append(token)
                last = run(model, seq, pixel_values, grids)[-1]
                margins.append(margin(last))
            if min(margins[:-1]) >= MIN_MARGIN:
                break
        prefix = f"{case}."
        tensors[prefix + "input_ids"] = torch.tensor(ids, dtype=torch.int32)
        tensors[prefix + "logits"] = logits.contiguous()
        tensors[prefix + "greedy_tokens"] = torch.tensor(steps, dtype=torch.int32)
        tensors[prefix + "greedy_logits"] = torch.stack(step_logits).contiguous()
        entry = {"name": case, "num_images": len(grids), "prompt_len": len(ids),
                 "min_greedy_margin": min(margins[:-1]), "attempt": attempt}
        if grids:
            input_ids = torch.tensor([ids])
            positions, delta = model.model.get_rope_index(
                input_ids, mm_token_type_ids=(input_ids == cfg.image_token_id).int(),
                image_grid_thw=torch.tensor(grids))
            tensors[prefix + "mrope_positions"] = positions[:, 0].to(torch.int32).contiguous()
            entry["rope_delta"] = int(delta[0, 0])
            with torch.no_grad():
                vis = model.model.get_image_features(pixel_values, torch.tensor(grids),
                                                     return_dict=True)
            offset = 0
            for i, g in enumerate(grids):
                n = g[0] * g[1] * g[2]
                tensors[f"{prefix}image{i}.grid_thw"] = torch.tensor(g, dtype=torch.int32)
                tensors[f"{prefix}image{i}.pixel_values"] = pixel_values[offset:offset + n].contiguous()
                parts = [vis.pooler_output[i]] + [f[i] for f in vis.deepstack_features]
                tensors[f"{prefix}image{i}.embeds"] = torch.cat(parts, dim=-1).contiguous()
                offset += n
            entry["grids"] = grids
        meta["cases"].append(entry)
        print(case, entry)
    GOLDEN_DIR.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(GOLDEN_DIR / f"{NAME}.safetensors"))
    (GOLDEN_DIR / f"{NAME}.json").write_text(json.dumps(meta, indent=1) + "\n")


if __name__ == "__main__":
    main()
