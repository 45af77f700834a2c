#!/usr/bin/env python3
"""Finds which code points HF `tokenizers` (Oniguruma) and `tiktoken` (Rust regex) match with the
classes that pre-tokenizer patterns use (`\\p{L}`, `\\p{Han}`, `\\s`, `[^\\s\\p{L}\\p{N}]`, ...),
over every code point, and writes tests/data/tokenizers/expected/unicode_classes.txt: per class,
the number of code points and the FNV-1a 64 of its ranges ("first-last," in hex, e.g. "41-5a,").
It fails when the two libraries disagree, and prints whether each general category is exactly
that of the installed unicodedata2 (tokenizers 0.23.3 and tiktoken 0.14.0: Unicode 16.0.0).
Also writes expected/unicode_normalizers.txt: per HF normalizer (NFC, NFD, NFKC, NFKD), the FNV-1a
64 of its outputs, joined by NUL, on every code point alone and on "x" + M + U+0334 and "a" + M
for every mark M (general category of unicodedata2, which must be 16.0.0 here).

Usage: /tmp/tokref/bin/python tools/reference/tokenizer/probe_unicode.py [--no-write]
"""
import argparse
import sys

import tiktoken
import unicodedata2
from tokenizers import Regex, normalizers, pre_tokenizers

CLASSES = [r"\p{L}", r"\p{Lu}", r"\p{Ll}", r"\p{Lt}", r"\p{Lm}", r"\p{Lo}", r"\p{M}", r"\p{N}",
           r"\p{Nd}", r"\p{P}", r"\p{S}", r"\p{Z}", r"\p{C}", r"\p{Han}", r"\p{Latin}", r"\s", r"\S", r"\d",
           r"\P{L}", r"[^\s\p{L}\p{N}]", r"[^\r\n\p{L}\p{P}\p{S}]", r"[\p{L}\p{M}]"]
CODE_POINTS = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
TEXT = "".join(map(chr, CODE_POINTS))


def hf_set(pattern):
    split = pre_tokenizers.Split(Regex(pattern), behavior="removed")
    rest = set(map(ord, "".join(piece for piece, _ in split.pre_tokenize_str(TEXT))))
    return [c for c in CODE_POINTS if c not in rest]


def tiktoken_set(pattern):
    enc = tiktoken.Encoding("probe", pat_str=pattern,
                            mergeable_ranks={bytes([i]): i for i in range(256)}, special_tokens={})
    # tiktoken encodes only the matches of its pattern: what comes back is the matched text.
    return sorted(set(map(ord, enc.decode_bytes(enc.encode_ordinary(TEXT)).decode("utf-8"))))


def ranges_text(code_points):
    out = []
    for c in code_points:
        if out and out[-1][1] == c - 1:
            out[-1][1] = c
        else:
            out.append([c, c])
    return "".join(f"{a:x}-{b:x}," for a, b in out)


def fnv1a(data: bytes) -> str:
    h = 0xcbf29ce484222325
    for b in data:
        h ^= b
        h = (h * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def normalizer_lines():
    assert unicodedata2.unidata_version == "16.0.0", "install unicodedata2==16.0.0"
    marks = [chr(c) for c in CODE_POINTS if unicodedata2.category(chr(c)).startswith("M")]
    texts = list(TEXT) + ["x" + m + "\u0334" for m in marks] + ["a" + m for m in marks]
    lines = []
    for form in ("NFC", "NFD", "NFKC", "NFKD"):
        normalizer = getattr(normalizers, form)()
        out = "\0".join(normalizer.normalize_str(t) for t in texts)
        lines.append(f"{form}\t{len(texts)}\t{fnv1a(out.encode())}")
    return lines


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/data/tokenizers/expected/unicode_classes.txt")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    lines = []
    for pattern in CLASSES:
        hf, tt = hf_set(pattern), tiktoken_set(pattern)
        if hf != tt:
            sys.exit(f"{pattern}: tokenizers and tiktoken disagree on {len(set(hf) ^ set(tt))} code points")
        category = pattern[3:-1] if pattern.startswith(r"\p{") and len(pattern) <= 6 else None
        if category and category not in ("Han",):
            want = [c for c in CODE_POINTS if unicodedata2.category(chr(c)).startswith(category)]
            print(f"{pattern}: {len(hf)} code points; general category of unicodedata2 "
                  f"{unicodedata2.unidata_version}: {'same' if want == hf else 'DIFFERENT'}")
        lines.append(f"{pattern}\t{len(hf)}\t{fnv1a(ranges_text(hf).encode())}")
    if not args.no_write:
        with open(args.out, "w") as f:
            f.write("\n".join(lines) + "\n")
        print(f"wrote {args.out}")
        out = args.out.replace("unicode_classes", "unicode_normalizers")
        with open(out, "w") as f:
            f.write("\n".join(normalizer_lines()) + "\n")
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
