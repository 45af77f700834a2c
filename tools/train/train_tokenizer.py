#!/usr/bin/env python3
"""Trains the default model's tokenizer with HF `tokenizers`: a byte-level BPE of DeepSeek-V3's
type (its normalizer, three Split regexes + ByteLevel pre-tokenizer, decoder, post-processor and
its 20 added tokens with their flags: <｜begin▁of▁sentence｜>=0, <｜end▁of▁sentence｜>=1, ...),
DeepSeek-V3.1's chat template, `add_bos_token` false as DeepSeek ships it; VOCAB ids in all.

Training text: tools/train/data/train.jsonl (prepare_data.py), conversations as their message
contents. Writes tools/train/out/tokenizer/{tokenizer.json,tokenizer_config.json}.

Usage (from the repository root): /work/venv/bin/python tools/train/train_tokenizer.py
"""
import json
import os

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

HERE = os.path.dirname(os.path.abspath(__file__))
REAL = os.path.join(HERE, "..", "..", "tests", "data", "tokenizers", "deepseek_v3")
TEMPLATE = os.path.join(HERE, "..", "..", "tests", "data", "tokenizers", "templates",
                        "deepseek_v3_1.jinja")
OUT = os.path.join(HERE, "out", "tokenizer")
VOCAB = 4096


def texts():
    with open(os.path.join(HERE, "data", "train.jsonl")) as f:
        for line in f:
            r = json.loads(line)
            if "text" in r:
                yield r["text"]
            else:
                yield "\n".join(m["content"] for m in r["messages"])


def main():
    real = json.load(open(os.path.join(REAL, "tokenizer.json"), encoding="utf-8"))
    specials = [t for t in real["added_tokens"] if "place▁holder" not in t["content"]]
    assert len(specials) == 20, len(specials)
    split = real["pre_tokenizer"]["pretokenizers"]
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.Sequence([])
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex(s["pattern"]["Regex"]), "isolated") for s in split[:3]] +
        [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=[t["content"] for t in specials],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(texts(), trainer=trainer)
    data = json.loads(tok.to_str())
    for key in ("normalizer", "pre_tokenizer", "post_processor", "decoder"):
        data[key] = real[key]
    flags = {t["content"]: (t["special"], t["normalized"]) for t in specials}
    for t in data["added_tokens"]:
        t["special"], t["normalized"] = flags[t["content"]]
    assert len(data["model"]["vocab"]) == VOCAB, len(data["model"]["vocab"])
    assert data["added_tokens"][0]["content"] == "<｜begin▁of▁sentence｜>"
    assert data["added_tokens"][1]["content"] == "<｜end▁of▁sentence｜>"
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False, indent=1)
    bos = {"__type": "AddedToken", "content": "<｜begin▁of▁sentence｜>", "lstrip": False,
           "normalized": True, "rstrip": False, "single_word": False}
    eos = dict(bos, content="<｜end▁of▁sentence｜>")
    added = {str(t["id"]): {"content": t["content"], "lstrip": False, "normalized": t["normalized"],
                            "rstrip": False, "single_word": False, "special": t["special"]}
             for t in data["added_tokens"]}
    config = {"added_tokens_decoder": added, "add_bos_token": False, "add_eos_token": False,
              "bos_token": bos, "clean_up_tokenization_spaces": False, "eos_token": eos,
              "legacy": True, "model_max_length": 2048, "pad_token": eos, "sp_model_kwargs": {},
              "unk_token": None, "tokenizer_class": "LlamaTokenizerFast",
              "chat_template": open(TEMPLATE, encoding="utf-8").read()}
    with open(os.path.join(OUT, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, ensure_ascii=False, indent=2)
    print("tokenizer written to", OUT)


if __name__ == "__main__":
    main()
