#!/usr/bin/env python3
"""The reference side of bench/tokenizer_bench: encodes the same documents with HF `tokenizers`
(tokenizer.json) or `tiktoken` (tiktoken files), single-threaded, timing CPU time (best of
--repeats), and prints one line:
  reference <library> <MB/s> <total ids>

Usage: tokenizer_bench_reference.py --fixture NAME --text-file FILE (documents separated by \\0)
"""
import argparse
import os
import sys
import time

os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["RAYON_NUM_THREADS"] = "1"
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools", "reference", "tokenizer"))
from references import Reference  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fixture", required=True)
    ap.add_argument("--text-file", required=True)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    ref = Reference(os.path.join(HERE, "..", "tests", "data", "tokenizers"), args.fixture)
    data = open(args.text_file, "rb").read()
    docs = [d.decode("utf-8") for d in data.split(b"\0")]
    best = float("inf")
    total = 0
    for _ in range(args.repeats):
        start = time.process_time()
        if ref.kind == "hf":
            total = sum(len(e.ids) for e in ref.tok.encode_batch(docs, add_special_tokens=False))
            library = "tokenizers"
        elif ref.kimi:
            total = sum(len(ref.encode(d)) for d in docs)
            library = "tiktoken"
        else:
            total = sum(len(ids) for ids in ref.enc.encode_batch(docs, allowed_special="all", num_threads=1))
            library = "tiktoken"
        best = min(best, time.process_time() - start)
    print(f"reference {library} {len(data) / best / 1e6:.2f} {total}")


if __name__ == "__main__":
    main()
