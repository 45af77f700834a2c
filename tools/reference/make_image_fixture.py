#!/usr/bin/env python3
"""Reference outputs of transformers' Qwen2-VL image processor for epserve's media tests.

Writes tests/data/images/:
  *.png, *.jpg, *.tiff, ...  small images of several formats and modes, made here with PIL
  processor_cases.json       per case: the image file, the preprocessor config (a JSON object as
                             in preprocessor_config.json), HF's image_grid_thw, and
                             "codes": the safetensors tensor holding HF's pixel_values
  processor_cases.safetensors
                             <case>.codes uint8 [patches, patch_dim]: for configs with
                             image_mean = image_std = 0.5 (Qwen3-VL's) every pixel value is
                             (k - 127.5) / 127.5 for a byte k; the byte is stored and the script
                             asserts that float32((k - 127.5) / 127.5) equals HF's value bit for bit.
                             <case>.pixel_values float32: HF's values, for the one case with
                             other mean/std (the OpenAI CLIP defaults).
  chat_cases.json            the Qwen3-VL chat template applied by Qwen3VLProcessor with the
                             qwen3_vl_moe_tiny tokenizer and processor to messages with one and two
                             images: HF's input_ids (image pads expanded) and image_grid_thw, and
                             the greedy tokens qwen3_vl_moe_tiny generates from them in
                             transformers (float32), with the smallest top-1/top-2 logit margin.

HF's processor is the one AutoImageProcessor gives for Qwen3-VL's preprocessor_config.json
(image_processor_type Qwen2VLImageProcessorFast): in transformers 5 the torchvision backend,
bicubic resize with antialias on float32, rounded back to uint8. Images reach it as PIL images,
as SGLang hands them over (its load_image applies no EXIF orientation, nor does HF's processor).

Usage: /work/venv-torch/bin/python tools/reference/make_image_fixture.py
(needs pillow, torchvision and pypng, for an interlaced PNG, in the venv).
"""

import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import png
import torch
from PIL import Image
from safetensors.torch import save_file
from transformers import AutoProcessor, Qwen3VLMoeForConditionalGeneration
from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor

REPO = Path(__file__).resolve().parents[2]
GREEDY_STEPS = 6
OUT = REPO / "tests/data/images"
VL_MODEL = REPO / "tests/data/models/qwen3_vl_moe_tiny"

QWEN3_VL = json.loads((VL_MODEL / "preprocessor_config.json").read_text())
# Patch 4 keeps the committed bytes small; min/max pixels as Qwen2-VL's size keys.
SMALL = dict(QWEN3_VL, patch_size=4, size={"shortest_edge": 256, "longest_edge": 1024})
# The class defaults for mean/std (OpenAI CLIP), min/max given as the old top-level keys.
CLIP = {"patch_size": 4, "temporal_patch_size": 2, "merge_size": 2, "min_pixels": 256,
        "max_pixels": 1024, "image_processor_type": "Qwen2VLImageProcessor"}


def pattern(h, w, seed):
    """Smooth gradients plus noise, so that resampling has something to do."""
    rng = np.random.RandomState(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 / max(w - 1, 1), y * 255 / max(h - 1, 1),
                     (x + y) * 127 / max(h + w - 2, 1)], axis=-1)
    return np.clip(base + rng.randint(-40, 41, (h, w, 3)), 0, 255).astype(np.uint8)


def png_bytes(img, **kw):
    buf = io.BytesIO()
    img.save(buf, "PNG", **kw)
    return buf.getvalue()


def raw_png(width, height, color_type, bit_depth, rows):
    """A PNG written by hand, for what PIL cannot save (16-bit RGB)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    raw = b"".join(b"\0" + r for r in rows)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) +
            chunk(b"IEND", b""))


def jpeg_bytes(img, **kw):
    buf = io.BytesIO()
    img.save(buf, "JPEG", **kw)
    return buf.getvalue()


def make_images():
    images = {}
    images["rgb_20x30.png"] = png_bytes(Image.fromarray(pattern(20, 30, 1)))
    images["rgb_37x53.png"] = png_bytes(Image.fromarray(pattern(37, 53, 2)))
    images["rgb_32x24.png"] = png_bytes(Image.fromarray(pattern(24, 32, 3)))
    rgba = np.concatenate([pattern(26, 30, 4), np.random.RandomState(5).randint(0, 256, (26, 30, 1),
                                                                              dtype=np.uint8)], -1)
    rgba[0, :4, 3] = 0
    rgba[1, :4, 3] = 255
    images["rgba_26x30.png"] = png_bytes(Image.fromarray(rgba, "RGBA"))
    pal = Image.fromarray(pattern(20, 24, 6)).quantize(colors=16)
    images["palette_20x24.png"] = png_bytes(pal)
    images["palette_trns_20x24.png"] = png_bytes(pal, transparency=3)
    images["gray_22x18.png"] = png_bytes(Image.fromarray(pattern(22, 18, 7)[..., 0], "L"))
    la = np.stack([pattern(18, 21, 8)[..., 1], pattern(18, 21, 9)[..., 2]], -1)
    images["gray_alpha_18x21.png"] = png_bytes(Image.fromarray(la, "LA"))
    rng = np.random.RandomState(10)
    rgb16 = rng.randint(0, 65536, (19, 17, 3)).astype(">u2")
    images["rgb16_19x17.png"] = raw_png(17, 19, 2, 16, [r.tobytes() for r in rgb16])
    gray16 = rng.randint(0, 400, (17, 19)).astype(">u2")  # PIL clips 16-bit gray to 255
    images["gray16_17x19.png"] = raw_png(19, 17, 0, 16, [r.tobytes() for r in gray16])
    buf = io.BytesIO()
    rgb = pattern(23, 29, 18)
    png.Writer(29, 23, greyscale=False, interlace=True).write(buf, rgb.reshape(23, -1).tolist())
    images["interlaced_23x29.png"] = buf.getvalue()
    images["rgb_40x31.jpg"] = jpeg_bytes(Image.fromarray(pattern(31, 40, 11)), quality=90)
    images["rgb444_27x35.jpg"] = jpeg_bytes(Image.fromarray(pattern(35, 27, 12)), quality=85,
                                            subsampling=0)
    images["gray_30x22.jpg"] = jpeg_bytes(Image.fromarray(pattern(22, 30, 13)[..., 2], "L"))
    images["rgb_16x16_clip.png"] = png_bytes(Image.fromarray(pattern(16, 16, 14)))
    # Refused by epserve: other formats (WebP, GIF and BMP are make_image_formats.py's), CMYK.
    buf = io.BytesIO()
    Image.fromarray(pattern(8, 8, 15)).save(buf, "TIFF")
    images["refused.tiff"] = buf.getvalue()
    images["refused_cmyk.jpg"] = jpeg_bytes(Image.fromarray(pattern(8, 8, 17)).convert("CMYK"))
    return images


CASES = [
    # name, image, config
    ("rgb_png_upscale_to_min", "rgb_20x30.png", QWEN3_VL),
    ("rgb_png_downscale_to_max", "rgb_37x53.png", SMALL),
    ("rgb_png_no_resize", "rgb_32x24.png", SMALL),
    ("rgba_png", "rgba_26x30.png", SMALL),
    ("palette_png", "palette_20x24.png", SMALL),
    ("palette_trns_png", "palette_trns_20x24.png", SMALL),
    ("gray_png", "gray_22x18.png", SMALL),
    ("gray_alpha_png", "gray_alpha_18x21.png", SMALL),
    ("rgb16_png", "rgb16_19x17.png", SMALL),
    ("gray16_png", "gray16_17x19.png", SMALL),
    ("interlaced_png", "interlaced_23x29.png", SMALL),
    ("rgb_jpeg", "rgb_40x31.jpg", SMALL),
    ("rgb444_jpeg", "rgb444_27x35.jpg", SMALL),
    ("gray_jpeg", "gray_30x22.jpg", SMALL),
    ("clip_mean_std", "rgb_16x16_clip.png", CLIP),
]


def processor_for(config):
    kwargs = {k: v for k, v in config.items() if k not in ("image_processor_type", "processor_class")}
    return Qwen2VLImageProcessor(**kwargs)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    images = make_images()
    for name, data in images.items():
        (OUT / name).write_bytes(data)

    tensors, cases = {}, []
    for name, file, config in CASES:
        out = processor_for(config)(Image.open(OUT / file), return_tensors="pt")
        pv = out["pixel_values"].to(torch.float32).contiguous()
        grid = out["image_grid_thw"][0].tolist()
        case = {"name": name, "image": file, "config": config, "grid_thw": grid,
                "shape": list(pv.shape)}
        if config.get("image_mean") == [0.5, 0.5, 0.5] and config.get("image_std") == [0.5] * 3:
            codes = torch.round(pv.double() * 127.5 + 127.5).clamp(0, 255).to(torch.uint8)
            back = ((codes.to(torch.float32) - 127.5) / 127.5)
            assert torch.equal(back, pv), name
            tensors[name + ".codes"] = codes
            case["codes"] = name + ".codes"
        else:
            tensors[name + ".pixel_values"] = pv
            case["pixel_values"] = name + ".pixel_values"
        cases.append(case)
        print(name, grid, tuple(pv.shape))
    save_file(tensors, OUT / "processor_cases.safetensors")
    (OUT / "processor_cases.json").write_text(json.dumps(cases, indent=1) + "\n")

    # Chat template + image pad expansion as Qwen3VLProcessor does it.
    processor = AutoProcessor.from_pretrained(VL_MODEL)
    model = Qwen3VLMoeForConditionalGeneration.from_pretrained(VL_MODEL, dtype=torch.float32).eval()
    template = (REPO / "tools/reference/qwen3_vl_chat_template.jinja").read_text()
    chats = []
    for name, files in (("one_image", ["rgb_20x30.png"]),
                        ("two_images", ["rgb_40x31.jpg", "rgba_26x30.png"])):
        content = [{"type": "image_url", "image_url": {"url": f}} for f in files]
        content.insert(1, {"type": "text", "text": "What is in these pictures?"})
        messages = [{"role": "system", "content": "You are terse."},
                    {"role": "user", "content": content}]
        text = processor.apply_chat_template(messages, chat_template=template, tokenize=False,
                                             add_generation_prompt=True)
        pil = [Image.open(OUT / f) for f in files]
        enc = processor(text=[text], images=pil, return_tensors="pt")
        with torch.no_grad():
            gen = model.generate(**enc, max_new_tokens=GREEDY_STEPS, do_sample=False,
                                 output_logits=True, return_dict_in_generate=True)
        margins = [float(t.topk(2).values[0, 0] - t.topk(2).values[0, 1]) for t in gen.logits]
        chats.append({"name": name, "images": files, "messages": messages, "text": text,
                      "input_ids": enc["input_ids"][0].tolist(),
                      "image_grid_thw": enc["image_grid_thw"].tolist(),
                      "greedy": gen.sequences[0, enc["input_ids"].shape[1]:].tolist(),
                      "min_greedy_margin": min(margins)})
        print(name, len(enc["input_ids"][0]), enc["image_grid_thw"].tolist(), chats[-1]["greedy"],
              min(margins))
    (OUT / "chat_cases.json").write_text(json.dumps(chats, indent=1) + "\n")


if __name__ == "__main__":
    main()
