#!/usr/bin/env python3
"""Trains the small tokenizers of each model family with HF `tokenizers` (exactly 1024 ids with
the special tokens), into tests/data/tokenizers/small/<family>/. `epserve make-model` embeds them.

Each is a byte-level BPE of the same type as the family's real tokenizer: the same normalizer,
pre-tokenizer (split regex), decoder, special tokens and chat template.
  deepseek_v3  tokenizer.json + tokenizer_config.json; pre-tokenizer of DeepSeek-V3's
               tokenizer.json; specials <｜begin▁of▁sentence｜>=0, <｜end▁of▁sentence｜>=1, then the
               rest of DeepSeek-V3's added tokens (same flags); chat template of DeepSeek-V3.1
               (reads `thinking`).
  qwen3        tokenizer.json + tokenizer_config.json; NFC and the split of Qwen's tokenizer.json;
               Qwen3's 26 added tokens from <|endoftext|>=0, <|im_start|>=1, <|im_end|>=2 (same
               flags); Qwen3's chat template (reads `enable_thinking`).
  kimi_k2      tiktoken.model + tokenizer_config.json + chat_template.jinja; Kimi-K2's split
               pattern; 766 ranks then 258 special ids laid out as tokenization_kimi.py does.

Training text (not shipped, only the result): the Python 3.11 standard library's own .py files
(PSF licence) and the synthetic corpus of make_corpus.py (generated here).

Usage (from the repository root): tools/reference/tokenizer/train_small.py
"""
import base64
import glob
import json
import os

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

ROOT = "tests/data/tokenizers"
VOCAB = 1024
KIMI_PATTERN = __import__("references").KIMI_PATTERN


def training_text():
    texts = []
    for path in sorted(glob.glob("/usr/lib/python3.11/*.py")):
        with open(path, encoding="utf-8", errors="replace") as f:
            texts.append(f.read())
    with open(os.path.join(ROOT, "corpus.jsonl"), encoding="utf-8") as f:
        for line in f:
            v = json.loads(line)
            if isinstance(v, str):
                texts.append(v)
    return texts


def train(pre_tokenizer, normalizer, specials, vocab_size, texts):
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def split_sequence(real_json):
    return json.load(open(real_json, encoding="utf-8"))["pre_tokenizer"]


def finish_hf(tok, real_json, flags, out_dir, config):
    data = json.loads(tok.to_str())
    real = json.load(open(real_json, encoding="utf-8"))
    for key in ("normalizer", "pre_tokenizer", "post_processor", "decoder"):
        data[key] = real[key]
    for t in data["added_tokens"]:
        special, normalized = flags[t["content"]]
        t["special"], t["normalized"] = special, normalized
    assert len(data["model"]["vocab"]) == VOCAB, len(data["model"]["vocab"])
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False, indent=1)
    added = {str(t["id"]): {"content": t["content"], "lstrip": False, "normalized": t["normalized"],
                            "rstrip": False, "single_word": False, "special": t["special"]}
             for t in data["added_tokens"]}
    config = {"added_tokens_decoder": added, **config}
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, ensure_ascii=False, indent=2)


def template(name):
    with open(os.path.join(ROOT, "templates", name), encoding="utf-8") as f:
        return f.read()


def deepseek(texts):
    real = os.path.join(ROOT, "deepseek_v3", "tokenizer.json")
    real_added = json.load(open(real, encoding="utf-8"))["added_tokens"]
    specials = [t for t in real_added if "place▁holder" not in t["content"]]
    flags = {t["content"]: (t["special"], t["normalized"]) for t in specials}
    names = [t["content"] for t in specials]
    pre = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"\p{N}{1,3}"), "isolated"),
        pre_tokenizers.Split(Regex("[一-龥぀-ゟ゠-ヿ]+"), "isolated"),
        pre_tokenizers.Split(Regex(split_sequence(real)["pretokenizers"][2]["pattern"]["Regex"]), "isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok = train(pre, normalizers.Sequence([]), names, VOCAB, texts)
    bos = {"__type": "AddedToken", "content": "<｜begin▁of▁sentence｜>", "lstrip": False,
           "normalized": True, "rstrip": False, "single_word": False}
    eos = dict(bos, content="<｜end▁of▁sentence｜>")
    config = {"add_bos_token": False, "add_eos_token": False, "bos_token": bos,
              "clean_up_tokenization_spaces": False, "eos_token": eos, "legacy": True,
              "model_max_length": 131072, "pad_token": eos, "sp_model_kwargs": {},
              "unk_token": None, "tokenizer_class": "LlamaTokenizerFast",
              "chat_template": template("deepseek_v3_1.jinja")}
    finish_hf(tok, real, flags, os.path.join(ROOT, "small", "deepseek_v3"), config)


QWEN3_SPECIALS = [
    ("<|endoftext|>", True), ("<|im_start|>", True), ("<|im_end|>", True),
    ("<|object_ref_start|>", True), ("<|object_ref_end|>", True), ("<|box_start|>", True),
    ("<|box_end|>", True), ("<|quad_start|>", True), ("<|quad_end|>", True),
    ("<|vision_start|>", True), ("<|vision_end|>", True), ("<|vision_pad|>", True),
    ("<|image_pad|>", True), ("<|video_pad|>", True), ("<tool_call>", False),
    ("</tool_call>", False), ("<|fim_prefix|>", False), ("<|fim_middle|>", False),
    ("<|fim_suffix|>", False), ("<|fim_pad|>", False), ("<|repo_name|>", False),
    ("<|file_sep|>", False), ("<tool_response>", False), ("</tool_response>", False),
    ("<think>", False), ("</think>", False)]


def qwen3(texts):
    real = os.path.join(ROOT, "qwen2_5", "tokenizer.json")
    pre = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(split_sequence(real)["pretokenizers"][0]["pattern"]["Regex"]), "isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    names = [n for n, _ in QWEN3_SPECIALS]
    tok = train(pre, normalizers.NFC(), names, VOCAB, texts)
    flags = {n: (s, False) for n, s in QWEN3_SPECIALS}
    config = {"add_bos_token": False, "add_prefix_space": False,
              "additional_special_tokens": [n for n in names[1:14]], "bos_token": None,
              "chat_template": template("qwen3.jinja"), "clean_up_tokenization_spaces": False,
              "eos_token": "<|im_end|>", "errors": "replace", "model_max_length": 131072,
              "pad_token": "<|endoftext|>", "split_special_tokens": False,
              "tokenizer_class": "Qwen2Tokenizer", "unk_token": None}
    finish_hf(tok, real, flags, os.path.join(ROOT, "small", "qwen3"), config)


KIMI_NAMED = {0: "[BOS]", 1: "[EOS]", 2: "<|im_end|>", 3: "<|im_user|>", 4: "<|im_assistant|>",
              6: "<|start_header_id|>", 7: "<|end_header_id|>", 9: "[EOT]", 10: "<|im_system|>",
              11: "<|tool_calls_section_begin|>", 12: "<|tool_calls_section_end|>",
              13: "<|tool_call_begin|>", 14: "<|tool_call_argument_begin|>", 15: "<|tool_call_end|>",
              17: "<|im_middle|>", 18: "<|media_start|>", 19: "<|media_content|>",
              20: "<|media_end|>", 21: "<|media_pad|>", 22: "<think>", 23: "</think>",
              254: "[UNK]", 255: "[PAD]"}


def kimi(texts):
    base = VOCAB - 258
    pre = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(KIMI_PATTERN), "isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok = train(pre, None, [], base, texts)
    vocab = tok.get_vocab()
    assert len(vocab) == base, len(vocab)
    byte_of = {c: b for b, c in zip(range(256), [None] * 256)}
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    # bytes_to_unicode: the GPT-2 table
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    byte_of = {chr(c): b for b, c in zip(bs, cs)}
    assert set(byte_of) == set(alphabet)
    out_dir = os.path.join(ROOT, "small", "kimi_k2")
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "tiktoken.model"), "w") as f:
        for token, i in sorted(vocab.items(), key=lambda kv: kv[1]):
            raw = bytes(byte_of[c] for c in token)
            f.write(base64.b64encode(raw).decode() + f" {i}\n")
    added = {str(base + k): {"content": v, "lstrip": False, "normalized": False, "rstrip": False,
                             "single_word": False, "special": True}
             for k, v in sorted(KIMI_NAMED.items())}
    config = {"added_tokens_decoder": added,
              "additional_special_tokens": ["<|im_end|>", "<|im_user|>", "<|im_assistant|>",
                                            "<|start_header_id|>", "<|end_header_id|>", "[EOT]",
                                            "<|im_system|>", "<|im_middle|>"],
              "auto_map": {"AutoTokenizer": ["tokenization_kimi.TikTokenTokenizer", None]},
              "bos_token": "[BOS]", "clean_up_tokenization_spaces": False, "eos_token": "[EOS]",
              "extra_special_tokens": {}, "model_max_length": 131072, "pad_token": "[PAD]",
              "tokenizer_class": "TikTokenTokenizer", "unk_token": "[UNK]"}
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, ensure_ascii=False, indent=2)
    with open(os.path.join(out_dir, "chat_template.jinja"), "w", encoding="utf-8") as f:
        f.write(template("kimi_k2_instruct.jinja"))


def main():
    texts = training_text()
    deepseek(texts)
    qwen3(texts)
    kimi(texts)
    print("small tokenizers written under", os.path.join(ROOT, "small"))


if __name__ == "__main__":
    main()
