#!/usr/bin/env python3
"""Writes the tokenizer comparison corpus: tests/data/tokenizers/corpus.jsonl.

One JSON value per line: a string, or {"hex": "..."} for raw bytes that are not valid UTF-8.
Deterministic (fixed seed); all text is generated here (word lists written for this file, random
code points), so the corpus can be shipped. Random code points are drawn from characters that
Unicode 14 assigns (Python 3.11's unicodedata), the Unicode version PCRE2 10.42 knows.

Usage: make_corpus.py [--out PATH] [--count N]
"""
import argparse
import json
import random
import unicodedata

WORDS = """the of and to in is you that it he was for on are as with his they at be this have
from or one had by word but not what all were we when your can said there use an each which she
do how their if will up other about out many then them these so some her would make like him into
time has look two more write go see number no way could people my than first water been call who
oil its now find long down day did get come made may part model token server expert parallel
router batch decode prefill cache kernel tensor weight layer attention mixture gradient latency
throughput request response stream benchmark""".split()
CONTRACTIONS = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'LL", "'D",
                "'ſ", "'K", "’s", "'x"]
CJK_COMMON = "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可她里后小么心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头面公同三已老从动两长知民样现分将外但身些与高意进把法此实回二理美点月明其种声全工己话儿者向情部正名定女问力机给等几很业最间新什打便位因重被走电四第门相次东政海口使教西再平真听世气信北少关并内加化由却代军产入先山五太水万市眼体别处总才场师书比住员九笑性通目华报立马命张活难神数件安表原车白应路期叫死常提感金何更反合放做系计或司利受光王果亲界及今京务制解各任至清物台象记边共风战干接它许八特觉望直服毛林题建南度统色字请交爱让认算论百吃义科怎元社术结六功指思非流每青管夫连远资队跟带花快条院变联言权往展该领传近留红治决周保达办运武半候七必城父强步完革深区即求品士转量空甚众技轻程告江语英基派满式李息写呢识极令黄德收脸钱党倒未持取设始版双历越史商千片容研像找友孩站广改议形委早房音火际则首单据导影失拿网香似斯专石若兵弟谁校读志飞观争究包组造落视济喜离虽坏兴切"""
HIRAGANA = [chr(c) for c in range(0x3041, 0x3097)]
KATAKANA = [chr(c) for c in range(0x30A1, 0x30FB)]
HANGUL = [chr(c) for c in range(0xAC00, 0xAC00 + 2000)]
CJK_PUNCT = list("，。！？、；：「」『』（）《》【】〜・…—　")
EMOJI = ["😀", "😂", "🥲", "👍", "👍🏽", "❤️", "🔥", "🎉", "🇯🇵", "🇺🇸", "🏳️‍🌈", "👨‍👩‍👧‍👦",
         "👩🏾‍💻", "🧑‍🚀", "1️⃣", "#️⃣", "✌🏿", "🫠", "🐈‍⬛", "👁️‍🗨️", "☺", "☺️", "🏴‍☠️",
         "🧔🏻‍♂️", "💁‍♀️", "🤷🏼‍♂️"]
COMBINING = ["e\u0301", "a\u0300", "o\u0308", "n\u0303", "c\u0327", "\u1100\u1161",
             "\u1100\u1161\u11a8", "A\u030a", "u\u031b\u0309", "i\u0307\u0301", "\u0915\u094d\u0937",
             "\u0e01\u0e34", "z\u0335\u0321\u0358", "\u05d1\u05bc", "\u0627\u0653"]
SPECIALS = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<｜begin▁of▁sentence｜>",
            "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>", "<think>", "</think>",
            "<tool_call>", "</tool_call>", "[BOS]", "[EOS]", "<|im_user|>", "<|im_assistant|>",
            "<|im_middle|>", "<|im_system|>", "<|extra_5|>", "<|extra_204|>", "<|im_", "|>",
            "<|im_start", "<｜tool▁calls▁begin｜>", "<|tool_call_begin|>", "<|reserved_token_900|>"]
WHITESPACE = [" ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", "\r", " \n", "\n ", "\u00a0", "\u3000",
              "\u2028", "\u2029", "\u0085", "\u200b", "\u2003", "\u202f", "\u180e", "\u000b",
              "\u000c", "\u001c", "\u205f", "\u1680", "\ufeff"]
DIGITS = "0123456789"
UNICODE_DIGITS = ["٣", "۴", "०", "১", "０", "９", "²", "½", "Ⅻ", "〇", "一二三", "𝟘", "①", "፲"]
CODE = [
    "def f(x):\n    return x * 2\n",
    "for (int i = 0; i < n; ++i) {\n\tsum += a[i];\n}\n",
    "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"days\": 3}}",
    "SELECT id, name FROM users WHERE age >= 18 ORDER BY name;",
    "#include <vector>\nint main() { std::vector<int> v{1,2,3}; }",
    "if __name__ == '__main__':\n    main()\n",
    "    x = [i**2 for i in range(10) if i % 2 == 0]  # squares\n",
    "const add = (a, b) => a + b;\nconsole.log(add(1, 2));",
    "<div class=\"row\"><span>Hello</span></div>",
    "fn main() -> Result<(), Box<dyn Error>> {\n    Ok(())\n}",
    "$ git commit -m \"fix: don't drop the last token\" && git push origin HEAD",
    "x=1;y=2;z=x+y;print(f\"{z:08.3f}\")",
]


def word(rng):
    w = rng.choice(WORDS)
    r = rng.random()
    if r < 0.15:
        w = w.capitalize()
    elif r < 0.2:
        w = w.upper()
    return w


def sentence(rng, n=None):
    n = n or rng.randint(3, 14)
    parts = []
    for _ in range(n):
        w = word(rng)
        if rng.random() < 0.08:
            w += rng.choice(CONTRACTIONS)
        parts.append(w)
    return " ".join(parts) + rng.choice([".", "!", "?", ",", "", ";", "...", ":"])


def cjk(rng, n=None):
    n = n or rng.randint(2, 30)
    out = []
    for _ in range(n):
        r = rng.random()
        if r < 0.55:
            out.append(rng.choice(CJK_COMMON))
        elif r < 0.65:
            out.append(rng.choice(HIRAGANA))
        elif r < 0.72:
            out.append(rng.choice(KATAKANA))
        elif r < 0.82:
            out.append(rng.choice(HANGUL))
        else:
            out.append(rng.choice(CJK_PUNCT))
    return "".join(out)


def assigned_code_point(rng):
    while True:
        r = rng.random()
        if r < 0.5:
            cp = rng.randint(0x20, 0x2FFF)
        elif r < 0.8:
            cp = rng.randint(0x3000, 0xFFFD)
        else:
            cp = rng.randint(0x10000, 0x3FFFF)
        if 0xD800 <= cp <= 0xDFFF:
            continue
        if unicodedata.category(chr(cp)) == "Cn":
            continue
        return chr(cp)


def digits(rng):
    n = rng.choice([1, 2, 3, 4, 5, 7, 10, 16, 33, 64, 100])
    s = "".join(rng.choice(DIGITS) for _ in range(n))
    r = rng.random()
    if r < 0.2:
        s = f"{int(s):,}" if n < 20 else s
    elif r < 0.3:
        s = s[: n // 2] + "." + s[n // 2:]
    elif r < 0.4:
        s = rng.choice(UNICODE_DIGITS) + s
    return s


def piece(rng):
    r = rng.random()
    if r < 0.3:
        return sentence(rng)
    if r < 0.45:
        return cjk(rng)
    if r < 0.52:
        return rng.choice(EMOJI) * rng.randint(1, 3)
    if r < 0.58:
        return rng.choice(COMBINING)
    if r < 0.66:
        return digits(rng)
    if r < 0.74:
        return rng.choice(WHITESPACE) * rng.randint(1, 6)
    if r < 0.80:
        return rng.choice(SPECIALS)
    if r < 0.86:
        return rng.choice(CODE)
    if r < 0.94:
        return "".join(assigned_code_point(rng) for _ in range(rng.randint(1, 8)))
    return rng.choice(UNICODE_DIGITS)


def mixed(rng):
    return "".join(piece(rng) for _ in range(rng.randint(1, 8)))


def invalid_utf8(rng):
    good = mixed(rng).encode("utf-8")
    bad = rng.choice([b"\xff", b"\xfe", b"\xc0\xaf", b"\xe0\x80\xaf", b"\xed\xa0\x80",
                      b"\xf4\x90\x80\x80", b"\xe4\xbd", b"\xf0\x9f\x98", b"\x80", b"\xbf\xbf",
                      b"\xc3", b"\xf8\x88\x80\x80\x80", bytes([rng.randint(0x80, 0xff)])])
    cut = rng.randint(0, len(good))
    data = good[:cut] + bad + good[cut:]
    if rng.random() < 0.3:
        data = data + bad
    return data


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/data/tokenizers/corpus.jsonl")
    ap.add_argument("--count", type=int, default=12000)
    args = ap.parse_args()
    rng = random.Random(20261128)
    lines = []
    fixed = ["", " ", "a", "\n", "Hello, world!", "hello world", "  leading", "trailing  ",
             "don't", "DON'T", "we'll", "I'M", "ﬁle", "Å", "A\u030a", "１２３", "½ cup",
             "9" * 1000, " " * 300, "\n" * 50, "\t \t \n", "a" * 5000, "=" * 2000,
             "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
             "<｜begin▁of▁sentence｜><｜User｜>hi<｜Assistant｜>", "<|im_start|><|im_start|>",
             "<<|im_end|>>", "x<|endoftext|>y", "<|im_end", "[BOS]x[EOS]", "。。。", "、",
             "e\u0301\u0301", "\u1100\u1161\u11a8 \uac01", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "Ⅻ Ⅷ", "ǅ ǈ ǋ",
             "İstanbul ıi", "straße STRASSE", "K\u212a k", "'ſ 'S 's"]
    for s in fixed:
        lines.append(json.dumps(s, ensure_ascii=False))
    while len(lines) < args.count:
        r = rng.random()
        if r < 0.05:
            lines.append(json.dumps({"hex": invalid_utf8(rng).hex()}))
        elif r < 0.08:
            text = " ".join(mixed(rng) for _ in range(rng.randint(5, 15)))
            lines.append(json.dumps(text, ensure_ascii=False))
        else:
            lines.append(json.dumps(mixed(rng), ensure_ascii=False))
    with open(args.out, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {len(lines)} lines to {args.out}")


if __name__ == "__main__":
    main()
