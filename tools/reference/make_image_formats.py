#!/usr/bin/env python3
"""WebP, GIF and BMP images with the RGB bytes HF's image processors see for them.

Writes tests/data/images/formats/:
  *.webp, *.gif, *.bmp     small images made here with PIL (lossy and lossless WebP, with and
                           without alpha, an animated WebP and GIF, palette GIFs with a
                           transparent index, first frames offset on a larger screen, 24-bit,
                           palette, gray and 1-bit BMPs)
  formats_rgb.safetensors  <file name> uint8 [height, width, 3]: PIL's decoding of each file
                           (Image.open, first frame) passed through transformers'
                           image_transforms.convert_to_rgb, which composites transparency onto
                           white, exactly the bytes Qwen2VLImageProcessor starts from.

epserve decodes these with libwebp (WebPAnimDecoder, as Pillow does) and stb_image;
tests/unit/media/image_formats_test.cpp compares its bytes with these, tolerance 0.

Usage: /work/venv-torch/bin/python tools/reference/make_image_formats.py
(needs pillow with WebP support, numpy, safetensors, transformers).
"""

import io
import struct
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file
from transformers.image_transforms import convert_to_rgb

from make_image_fixture import pattern  # smooth gradients plus noise

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "tests/data/images/formats"


def encoded(img, fmt, **kw):
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def with_alpha(h, w, seed):
    rgba = np.concatenate([pattern(h, w, seed), np.zeros((h, w, 1), np.uint8)], axis=-1)
    rgba[..., 3] = (np.arange(w)[None, :] * 255 // max(w - 1, 1)).astype(np.uint8)
    rgba[: h // 3, :, 3] = 0  # fully transparent rows
    return Image.fromarray(rgba, "RGBA")


def palette_with_transparency(h, w, seed):
    img = Image.fromarray(pattern(h, w, seed)).quantize(colors=16, method=Image.Quantize.MEDIANCUT)
    return img


def bgrx_bmp(h, w, seed):
    """An uncompressed 32-bit BMP whose fourth bytes are not zero: PIL reads them as padding."""
    rng = np.random.RandomState(seed)
    rows = np.concatenate([pattern(h, w, seed)[..., ::-1], rng.randint(1, 255, (h, w, 1))],
                          axis=-1).astype(np.uint8)[::-1]  # BGRX, bottom-up
    pixels = rows.tobytes()
    info = struct.pack("<IiiHHIIiiII", 40, w, h, 1, 32, 0, len(pixels), 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + 40 + len(pixels), 0, 0, 54) + info + pixels


def top_down_bmp(bmp):
    """PIL's bottom-up BMP rewritten top-down: rows reversed, height negated."""
    offset = struct.unpack_from("<I", bmp, 10)[0]
    w, h = struct.unpack_from("<ii", bmp, 18)
    bits = struct.unpack_from("<H", bmp, 28)[0]
    row = (bits * w + 31) // 32 * 4
    rows = [bmp[offset + i * row: offset + (i + 1) * row] for i in range(h)]
    out = bytearray(bmp[:offset] + b"".join(reversed(rows)))
    struct.pack_into("<i", out, 22, -h)
    return bytes(out)


def offset_frame_gif(seed, transparency, screen=(12, 10)):
    """A GIF whose first frame (5x4) sits at (3, 2) on a logical screen (12x10, or one the frame
    overflows): PIL's own GIF of the frame with the screen size and the frame position patched
    in."""
    data = bytearray(encoded(palette_with_transparency(4, 5, seed), "GIF",
                             **({"transparency": transparency} if transparency is not None else {})))
    data[6:10] = screen[0].to_bytes(2, "little") + screen[1].to_bytes(2, "little")
    at = 13 + (3 << ((data[10] & 7) + 1) if data[10] & 0x80 else 0)
    while data[at] == 0x21:  # skip extensions
        at += 2
        while data[at]:
            at += 1 + data[at]
        at += 1
    assert data[at] == 0x2C
    data[at + 1:at + 5] = (3).to_bytes(2, "little") + (2).to_bytes(2, "little")
    return bytes(data)


def make_images():
    images = {}
    images["lossy_rgb_29x23.webp"] = encoded(Image.fromarray(pattern(23, 29, 31)), "WEBP",
                                             quality=80, method=4)
    images["lossy_rgba_26x30.webp"] = encoded(with_alpha(30, 26, 32), "WEBP", quality=70)
    images["lossless_rgba_21x17.webp"] = encoded(with_alpha(17, 21, 33), "WEBP", lossless=True)
    images["lossless_gray_18x20.webp"] = encoded(Image.fromarray(pattern(20, 18, 34)).convert("L"),
                                                 "WEBP", lossless=True)
    frames = [Image.fromarray(pattern(16, 24, 35 + i)) for i in range(3)]
    images["animated_24x16.webp"] = encoded(frames[0], "WEBP", save_all=True,
                                            append_images=frames[1:], duration=100, quality=75)
    images["palette_22x19.gif"] = encoded(palette_with_transparency(19, 22, 36), "GIF")
    images["palette_trns_20x24.gif"] = encoded(palette_with_transparency(24, 20, 37), "GIF",
                                               transparency=3)
    images["gray_17x15.gif"] = encoded(Image.fromarray(pattern(15, 17, 38)).convert("L"), "GIF")
    gif_frames = [palette_with_transparency(14, 18, 39 + i) for i in range(2)]
    images["animated_18x14.gif"] = encoded(gif_frames[0], "GIF", save_all=True,
                                           append_images=gif_frames[1:], duration=100)
    images["offset_frame_12x10.gif"] = offset_frame_gif(45, None)
    images["offset_frame_trns_12x10.gif"] = offset_frame_gif(46, 5)
    images["frame_past_screen_8x6.gif"] = offset_frame_gif(47, None, screen=(4, 3))
    images["zero_screen_8x6.gif"] = offset_frame_gif(48, 2, screen=(0, 0))
    images["bgrx32_13x9.bmp"] = bgrx_bmp(9, 13, 49)
    images["top_down_27x21.bmp"] = top_down_bmp(encoded(Image.fromarray(pattern(21, 27, 50)), "BMP"))
    images["rgb24_27x21.bmp"] = encoded(Image.fromarray(pattern(21, 27, 41)), "BMP")
    images["palette_25x18.bmp"] = encoded(palette_with_transparency(18, 25, 42).convert("P"), "BMP")
    images["gray_19x22.bmp"] = encoded(Image.fromarray(pattern(22, 19, 43)).convert("L"), "BMP")
    images["bilevel_33x9.bmp"] = encoded(Image.fromarray(pattern(9, 33, 44)).convert("1"), "BMP")
    return images


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for name, data in sorted(make_images().items()):
        (OUT / name).write_bytes(data)
        with Image.open(io.BytesIO(data)) as img:
            img.seek(0)
            rgb = np.asarray(convert_to_rgb(img.copy()))
        assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3, (name, rgb.shape)
        tensors[name] = torch.from_numpy(rgb.copy())
        print(f"{name}: {len(data)} bytes, {rgb.shape[1]}x{rgb.shape[0]}")
    save_file(tensors, OUT / "formats_rgb.safetensors")


if __name__ == "__main__":
    main()
