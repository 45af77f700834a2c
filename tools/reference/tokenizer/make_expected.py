#!/usr/bin/env python3
"""Writes the expected outputs of the reference tokenizers for the C++ comparison tests.

For each fixture tokenizer (references.FIXTURES), into tests/data/tokenizers/expected/:
  <name>.encode.txt   one line per corpus line: "<number of ids> <FNV-1a 64 of the ids joined by
                      single spaces>" of encode(text) (special tokens in the text are recognised;
                      invalid UTF-8 lines are decoded with errors="replace" first)
  <name>.decode.txt   random id sequences, one per line: "<ids>\t<hash of decode(ids)>\t<hash of
                      decode(ids, skip_special_tokens=True)>", hashes over the UTF-8 bytes
Hashes keep the fixtures small; --show N prints the full reference ids of corpus line N.
With --corpus unicode16 (text with characters of Unicode 15-16, make_corpus_unicode16.py) only
<name>.unicode16.encode.txt is written, over every line of corpus_unicode16.jsonl.

Usage (from the repository root, with tokenizers and tiktoken installed):
  tools/reference/tokenizer/make_expected.py [--only NAME] [--show LINE] [--corpus unicode16]
"""
import argparse
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from references import FIXTURES, LINE_LIMITS, Reference, corpus_texts, fnv1a, ids_hash  # noqa: E402

ROOT = "tests/data/tokenizers"


def decode_cases(ref, rng, count):
    specials = sorted(ref.special_ids)
    cases = []
    for _ in range(count):
        ids = []
        for _ in range(rng.randint(1, 24)):
            r = rng.random()
            if r < 0.15 and specials:
                ids.append(rng.choice(specials))
            elif r < 0.35:
                ids.append(rng.randint(0, min(ref.vocab_size, 400) - 1))
            else:
                ids.append(rng.randint(0, ref.vocab_size - 1))
        cases.append([i for i in ids if ref_has(ref, i)])
    return [c for c in cases if c]


def ref_has(ref, i):
    if ref.kind == "hf":
        return ref.tok.id_to_token(i) is not None
    try:
        ref.enc.decode_single_token_bytes(i)
        return True
    except KeyError:
        return False


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only")
    ap.add_argument("--show", type=int)
    ap.add_argument("--corpus", choices=["main", "unicode16"], default="main")
    args = ap.parse_args()
    main_corpus = args.corpus == "main"
    corpus_file = "corpus.jsonl" if main_corpus else f"corpus_{args.corpus}.jsonl"
    texts = list(corpus_texts(os.path.join(ROOT, corpus_file)))
    os.makedirs(os.path.join(ROOT, "expected"), exist_ok=True)
    for name in FIXTURES:
        if args.only and name != args.only:
            continue
        ref = Reference(ROOT, name)
        if args.show is not None:
            print(name, ref.encode(texts[args.show]))
            continue
        suffix = "" if main_corpus else f".{args.corpus}"
        limit = LINE_LIMITS.get(name, len(texts)) if main_corpus else len(texts)
        with open(os.path.join(ROOT, "expected", f"{name}{suffix}.encode.txt"), "w") as f:
            for text in texts[:limit]:
                ids = ref.encode(text)
                f.write(f"{len(ids)} {ids_hash(ids)}\n")
        if not main_corpus:
            print(f"{name}: encodings of {corpus_file} written")
            continue
        rng = random.Random(7)
        with open(os.path.join(ROOT, "expected", f"{name}.decode.txt"), "w") as f:
            for ids in decode_cases(ref, rng, 2000 if name not in LINE_LIMITS else 500):
                a = fnv1a(ref.decode(ids, False).encode("utf-8"))
                b = fnv1a(ref.decode(ids, True).encode("utf-8"))
                f.write(" ".join(map(str, ids)) + f"\t{a}\t{b}\n")
        print(f"{name}: encodings and decode cases written")


if __name__ == "__main__":
    main()
