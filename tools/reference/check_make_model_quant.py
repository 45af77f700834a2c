#!/usr/bin/env python3
"""Checks `epserve make-model --quantization fp8|int4` against the reference tools.

Given the BF16 model and the FP8 and INT4 models make-model wrote with the same flags and seed,
re-quantizes every BF16 matrix with torch (DeepSeek's block cast: s = amax/448 per 128x128 block,
(w/s).to(float8_e4m3fn)) and with compressed-tensors (calculate_qparams, quantize, pack_to_int32;
scale stored as bf16), and requires the files to hold exactly those bytes.

Usage: python tools/reference/check_make_model_quant.py BF16_DIR FP8_DIR INT4_DIR
"""
import sys
from pathlib import Path

import torch
from safetensors import safe_open

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_quant_models import fp8_block_cast, int4_quantize  # noqa: E402


def tensors(d):
    out = {}
    for f in sorted(Path(d).glob("*.safetensors")):
        with safe_open(str(f), "pt") as s:
            out.update({k: s.get_tensor(k) for k in s.keys()})
    return out


def main():
    bf16, fp8, int4 = (tensors(d) for d in sys.argv[1:4])
    n_fp8 = n_int4 = 0
    for name, w in bf16.items():
        if name + "_scale_inv" in fp8:
            q, s = fp8_block_cast(w)
            assert torch.equal(fp8[name_scale := name + "_scale_inv"], s), name_scale
            assert torch.equal(fp8[name].view(torch.uint8), q.view(torch.uint8)), name
            n_fp8 += 1
        prefix = name[:-len(".weight")]
        if prefix + ".weight_packed" in int4:
            packed, scale, _ = int4_quantize(w)
            assert torch.equal(int4[prefix + ".weight_scale"], scale), prefix
            assert torch.equal(int4[prefix + ".weight_packed"], packed), prefix
            assert int4[prefix + ".weight_shape"].tolist() == list(w.shape), prefix
            n_int4 += 1
    assert n_fp8 and n_int4
    print(f"fp8: {n_fp8} matrices identical to torch's block cast; "
          f"int4: {n_int4} matrices identical to compressed-tensors")


if __name__ == "__main__":
    main()
