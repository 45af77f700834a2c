"""The reference tokenizers the C++ tokenizer is compared with (HF `tokenizers`, `tiktoken`).

Each fixture under tests/data/tokenizers/ is loaded the way its model's own code loads it:
tokenizer.json with tokenizers.Tokenizer; tiktoken files with tiktoken.Encoding and the pattern and
special tokens that Qwen's tokenization_qwen.py / Kimi's tokenization_kimi.py declare, and Kimi's
encode() chunking.
"""
import base64
import json
import os

import tiktoken
import tokenizers

KIMI_PATTERN = "|".join([
    r"""[\p{Han}]+""",
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]*[\p{Ll}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]+[\p{Ll}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""\p{N}{1,3}""",
    r""" ?[^\s\p{L}\p{N}]+[\r\n]*""",
    r"""\s*[\r\n]+""",
    r"""\s+(?!\S)""",
    r"""\s+""",
])
QWEN_PATTERN = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""

# name -> directory under tests/data/tokenizers
FIXTURES = {
    "deepseek_v3": "deepseek_v3",
    "qwen2_5": "qwen2_5",
    "qwen_tiktoken": "qwen_tiktoken",
    "small_deepseek_v3": "small/deepseek_v3",
    "small_qwen3": "small/qwen3",
    "small_kimi_k2": "small/kimi_k2",
    "variant_digits": "variants/digits",
    "variant_gpt2": "variants/gpt2",
    "variant_splits": "variants/splits",
    "variant_added": "variants/added",
}
# Fixtures compared on the first N corpus lines only (the rest: all of it).
LINE_LIMITS = {"variant_digits": 3000, "variant_gpt2": 3000, "variant_splits": 3000, "variant_added": 3000}


def load_ranks(path):
    ranks = {}
    with open(path, "rb") as f:
        for line in f.read().splitlines():
            if line:
                token, rank = line.split()
                ranks[base64.b64decode(token)] = int(rank)
    return ranks


def python_isspace_split(s, limit):
    """Kimi's _split_whitespaces_or_nonwhitespaces."""
    current_len = 0
    current_is_space = s[0].isspace() if len(s) > 0 else False
    start = 0
    for i in range(len(s)):
        now = s[i].isspace()
        if current_is_space ^ now:
            current_len = 1
            current_is_space = now
        else:
            current_len += 1
            if current_len > limit:
                yield s[start:i]
                start = i
                current_len = 1
    yield s[start:]


class Reference:
    def __init__(self, root, name):
        self.name = name
        self.dir = os.path.join(root, FIXTURES[name])
        config_path = os.path.join(self.dir, "tokenizer_config.json")
        self.config = json.load(open(config_path, encoding="utf-8")) if os.path.exists(config_path) else {}
        json_path = os.path.join(self.dir, "tokenizer.json")
        self.kimi = False
        if os.path.exists(json_path):
            self.kind = "hf"
            self.tok = tokenizers.Tokenizer.from_file(json_path)
            self.vocab_size = max(self.tok.get_vocab(with_added_tokens=True).values()) + 1
            self.special_ids = {i for i, t in self.tok.get_added_tokens_decoder().items() if t.special}
            return
        self.kind = "tiktoken"
        if os.path.exists(os.path.join(self.dir, "tiktoken.model")):
            path = os.path.join(self.dir, "tiktoken.model")
            ranks = load_ranks(path)
            n = len(ranks)
            named = {int(k): v["content"] for k, v in self.config.get("added_tokens_decoder", {}).items()}
            specials = {named.get(i, f"<|reserved_token_{i}|>"): i for i in range(n, n + 256 + 2)}
            pattern = KIMI_PATTERN
            self.kimi = True
        else:
            path = os.path.join(self.dir, "qwen.tiktoken")
            ranks = load_ranks(path)
            n = len(ranks)
            names = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] + [f"<|extra_{i}|>" for i in range(205)]
            specials = {t: n + i for i, t in enumerate(names)}
            pattern = QWEN_PATTERN
        self.enc = tiktoken.Encoding(name, pat_str=pattern, mergeable_ranks=ranks, special_tokens=specials)
        self.vocab_size = self.enc.n_vocab
        self.special_ids = set(specials.values())

    def encode(self, text):
        if self.kind == "hf":
            return self.tok.encode(text, add_special_tokens=True).ids
        if not self.kimi:
            return self.enc.encode(text, allowed_special="all")
        ids = []
        for i in range(0, len(text), 400_000):
            for sub in python_isspace_split(text[i:i + 400_000], 25_000):
                ids.extend(self.enc.encode(sub, allowed_special="all"))
        return ids

    def decode(self, ids, skip_special):
        if self.kind == "hf":
            return self.tok.decode(ids, skip_special_tokens=skip_special)
        if skip_special:
            ids = [i for i in ids if i not in self.special_ids]
        return self.enc.decode(ids, errors="replace")


def fnv1a(data: bytes) -> str:
    h = 0xcbf29ce484222325
    for b in data:
        h ^= b
        h = (h * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def ids_hash(ids):
    return fnv1a(" ".join(map(str, ids)).encode())


def corpus_texts(path):
    with open(path, encoding="utf-8") as f:
        for line in f:
            v = json.loads(line)
            yield v if isinstance(v, str) else bytes.fromhex(v["hex"]).decode("utf-8", "replace")
