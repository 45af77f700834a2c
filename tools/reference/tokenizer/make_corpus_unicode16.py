#!/usr/bin/env python3
"""Writes tests/data/tokenizers/corpus_unicode16.jsonl: text with characters that Unicode 15.0,
15.1 and 16.0 assigned (unassigned in Unicode 14, the version of PCRE2 10.42's own tables), where
the pre-tokenizer regexes' `\\p{..}` classes decide the split: new emoji after text ("I love you
🩷"), letters of new scripts (Garay, Gurung Khema, Kirat Rai, Ol Onal, Sunuwar, Todhri,
Tulu-Tigalari, Kawi, Nag Mundari) and new Latin / Cyrillic letters next to ASCII letters, CJK
Extension H and I ideographs next to common ones, new decimal digits in digit runs, new marks after
letters, new punctuation and symbols next to ASCII ones, and a few code points unassigned in
Unicode 16. One JSON string per line; seeded, all text generated here.

Needs Python 3.11 (its unicodedata is Unicode 14.0) and unicodedata2 16.0.0:
  /tmp/tokref/bin/pip install unicodedata2==16.0.0
  /tmp/tokref/bin/python tools/reference/tokenizer/make_corpus_unicode16.py
"""
import argparse
import json
import os
import random
import sys
import unicodedata

import unicodedata2

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_corpus import cjk, digits, sentence, word  # noqa: E402

# Emoji of Unicode 15.0 (🩷 🩵 🩶 🫨 🫎 🫏 🪽 🪿 🪼 🫚 🫛 🪭 🪮 🪇 🪈 🛜 🫷 🫸) and 16.0
# (🫩 🫆 🪾 🫜 🪉 🪏 🫟), and Unicode 15.1's ZWJ sequences of older ones (🐦‍🔥 🍋‍🟩 🍄‍🟫 ⛓️‍💥).
EMOJI_NEW = ["🩷", "🩵", "🩶", "🫨", "🫎", "🫏", "🪽", "🪿", "🪼", "🫚", "🫛", "🪭", "🪮", "🪇",
             "🪈", "🛜", "🫷", "🫸", "🫷🏽", "🫩", "🫆", "🪾", "🫜", "🪉", "🪏", "🫟", "🐦‍🔥",
             "🍋‍🟩", "🍄‍🟫", "⛓️‍💥", "🙂‍↔️", "🧑‍🧑‍🧒"]
PHRASES = ["I love you {}", "{} love", "hello{}world", "so {}{} much", "({})", "'{}'", "{}!",
           "x = \"{}\"", "#{}", "{}, {} and {}."]


def new_code_points():
    assert unicodedata.unidata_version == "14.0.0", "run with Python 3.11 (Unicode 14.0 unicodedata)"
    assert unicodedata2.unidata_version == "16.0.0", "install unicodedata2==16.0.0"
    by_category = {}
    unassigned = []
    for c in range(0x110000):
        old, new = unicodedata.category(chr(c)), unicodedata2.category(chr(c))
        if old == "Cn" and new != "Cn":
            by_category.setdefault(new, []).append(c)
        elif new == "Cn" and c >= 0x800 and c % 97 == 0:
            unassigned.append(c)
    return by_category, unassigned


def run(rng, pool, n=None):
    return "".join(chr(rng.choice(pool)) for _ in range(n or rng.randint(1, 6)))


def piece(rng, cats, unassigned):
    letters = cats["Lo"] + cats["Lu"] + cats["Ll"] + cats["Lm"]
    han = [c for c in cats["Lo"] if c >= 0x2A700]  # CJK Extension H / I and additions to B
    marks = cats["Mn"] + cats["Mc"]
    punct = cats["Po"] + cats["Pd"]
    symbols = cats["So"] + cats["Sm"]
    numbers = cats["Nd"] + cats["No"]
    r = rng.random()
    if r < 0.18:
        return rng.choice(PHRASES).format(*(rng.choice(EMOJI_NEW) for _ in range(3)))
    if r < 0.32:  # new letters inside, before and after ASCII words
        return rng.choice([" ", "", "'"]) + word(rng) + run(rng, letters) + rng.choice(
            ["", word(rng), " " + word(rng), "'s", "'LL"])
    if r < 0.42:
        return cjk(rng, rng.randint(1, 6)) + run(rng, han) + cjk(rng, rng.randint(0, 4))
    if r < 0.54:  # digit runs with new decimal digits and other numbers
        return digits(rng) + run(rng, numbers, rng.randint(1, 4)) + rng.choice(["", digits(rng), "x"])
    if r < 0.62:
        return word(rng) + run(rng, marks, rng.randint(1, 2)) + rng.choice(["", " ", word(rng)])
    if r < 0.72:
        return rng.choice(["", " ", "a", "!"]) + run(rng, punct) + rng.choice(["", ".", "\n", " b"])
    if r < 0.84:
        return rng.choice(["", " ", "=", "x"]) + run(rng, symbols) + rng.choice(["", "!", "\n", "y"])
    if r < 0.88:
        return word(rng) + run(rng, cats["Cf"], 1) + word(rng)
    if r < 0.92:
        return rng.choice(["", " ", "a"]) + run(rng, unassigned, rng.randint(1, 2))
    return sentence(rng, rng.randint(2, 6))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/data/tokenizers/corpus_unicode16.jsonl")
    ap.add_argument("--count", type=int, default=2000)
    args = ap.parse_args()
    cats, unassigned = new_code_points()
    rng = random.Random(20261203)
    lines = ["I love you 🩷", "🩷🩵🩶", "a\U0001E4F0\U0001E4F1\U0001E4F22", "\U00031350\U0002EBF0中文",
             # marks out of canonical order: HF's NFC knows the combining classes of Unicode 9.0
             "x\u1DF6\u0334", "q\U00011F42\u0316 e\u0301", "\u0915\u093C\u094D\U000113CE a\u0308\u0323",
             # next to single_word tokens HF tests Rust regex \w (variants/added has "hello")
             "hello😀world", "hello²world", "hello\u200dworld", "hello\u24b6world", "hello½world",
             "hello\u2160 world", "hello\U00010D4Aworld", "\U0001E4F1hello"]
    while len(lines) < args.count:
        text = "".join(piece(rng, cats, unassigned) for _ in range(rng.randint(1, 5)))
        lines.append(text)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write("\n".join(json.dumps(s, ensure_ascii=False) for s in lines) + "\n")
    print(f"wrote {len(lines)} lines to {args.out}")


if __name__ == "__main__":
    main()
