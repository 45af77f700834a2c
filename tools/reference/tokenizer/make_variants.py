#!/usr/bin/env python3
"""Writes tokenizer.json variants that exercise the parts of the format our families do not use,
into tests/data/tokenizers/variants/<name>/: the small Qwen3 vocabulary with other normalizers,
pre-tokenizers (Digits, GPT-2 ByteLevel with prefix space, every Split behaviour, invert, literal
patterns), added tokens with lstrip/rstrip/single_word/normalized, and a TemplateProcessing
post-processor. They are loaded by HF tokenizers to check they are valid, then compared like the
other fixtures (make_expected.py, first 3,000 corpus lines).

Usage (from the repository root): tools/reference/tokenizer/make_variants.py
"""
import json
import os

import tokenizers

ROOT = "tests/data/tokenizers"
QWEN_SPLIT = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
BYTE_LEVEL = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}


def added(i, content, special=True, normalized=False, lstrip=False, rstrip=False, single_word=False):
    return {"id": i, "content": content, "single_word": single_word, "lstrip": lstrip,
            "rstrip": rstrip, "normalized": normalized, "special": special}


def variants(base):
    out = {}
    v = json.loads(json.dumps(base))
    v["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": True},
        {"type": "Split", "pattern": {"Regex": QWEN_SPLIT}, "behavior": "Isolated", "invert": False},
        BYTE_LEVEL]}
    out["digits"] = v

    v = json.loads(json.dumps(base))
    v["normalizer"] = None
    v["pre_tokenizer"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                          "use_regex": True}
    v["model"]["ignore_merges"] = True  # as Llama-3 style files set it: a whole-piece hit wins
    out["gpt2"] = v

    v = json.loads(json.dumps(base))
    v["normalizer"] = {"type": "Sequence", "normalizers": [{"type": "NFD"}]}
    v["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": False},
        {"type": "Split", "pattern": {"String": " "}, "behavior": "MergedWithNext", "invert": False},
        {"type": "Split", "pattern": {"Regex": "[,.!?]"}, "behavior": "MergedWithPrevious", "invert": False},
        {"type": "Split", "pattern": {"Regex": "\\p{L}+"}, "behavior": "Contiguous", "invert": True},
        BYTE_LEVEL]}
    out["splits"] = v

    v = json.loads(json.dumps(base))
    # NFC, not NFKC: HF's NFKC leaves U+32FF (square era name Reiwa) alone where Unicode 12.1+
    # (ICU, Python) decomposes it, so an NFKC variant would test that table difference.
    v["normalizer"] = {"type": "Sequence", "normalizers": [{"type": "NFC"}, {"type": "Prepend", "prepend": "\u2581"}, {"type": "Replace", "pattern": {"String": "\u2581"}, "content": ""}]}
    n = len(v["model"]["vocab"])
    v["added_tokens"] += [
        added(n, "<mask>", lstrip=True, rstrip=True),
        added(n + 1, "hello", special=False, normalized=True, single_word=True),
        added(n + 2, "ﬁx", special=False, normalized=True),
        added(n + 3, "[SEP]", special=True, rstrip=True),
        added(n + 4, "<|im_start|>user", special=False),
    ]
    v["post_processor"] = {"type": "TemplateProcessing",
                           "single": [{"SpecialToken": {"id": "<|im_start|>", "type_id": 0}},
                                      {"Sequence": {"id": "A", "type_id": 0}},
                                      {"SpecialToken": {"id": "<|im_end|>", "type_id": 0}}],
                           "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
                           "special_tokens": {"<|im_start|>": {"id": "<|im_start|>", "ids": [1], "tokens": ["<|im_start|>"]},
                                              "<|im_end|>": {"id": "<|im_end|>", "ids": [2], "tokens": ["<|im_end|>"]}}}
    out["added"] = v
    return out


def main():
    base = json.load(open(os.path.join(ROOT, "small", "qwen3", "tokenizer.json"), encoding="utf-8"))
    for name, v in variants(base).items():
        d = os.path.join(ROOT, "variants", name)
        os.makedirs(d, exist_ok=True)
        path = os.path.join(d, "tokenizer.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(v, f, ensure_ascii=False)
        tokenizers.Tokenizer.from_file(path)  # HF must accept it
        print("wrote", path)


if __name__ == "__main__":
    main()
