#!/usr/bin/env python3
"""Share of communication hidden by two-batch overlap, from two --trace-file traces of the same
run without and with --enable-two-batch-overlap:

    hidden = 1 - exposed comm (with TBO) / comm (without TBO)

where comm is the time a rank's thread spends in "comm" spans (sending, or waiting for peers) and
step time is the sum of all spans; figures are the mean over ranks.

    scripts/trace_overlap.py plain.json tbo.json
"""
import json
import sys
from collections import defaultdict


def per_rank(path):
    comm, total = defaultdict(float), defaultdict(float)
    for e in json.load(open(path))["traceEvents"]:
        if e.get("ph") != "X":
            continue
        total[e["pid"]] += e["dur"]
        if e["cat"] == "comm":
            comm[e["pid"]] += e["dur"]
    ranks = sorted(total)
    return (sum(comm[r] for r in ranks) / len(ranks), sum(total[r] for r in ranks) / len(ranks))


def main():
    plain_comm, plain_total = per_rank(sys.argv[1])
    tbo_comm, tbo_total = per_rank(sys.argv[2])
    print(f"without TBO: comm {plain_comm / 1e3:.1f} ms of {plain_total / 1e3:.1f} ms "
          f"({100 * plain_comm / plain_total:.0f}% of step time)")
    print(f"with TBO:    exposed comm {tbo_comm / 1e3:.1f} ms of {tbo_total / 1e3:.1f} ms")
    print(f"hidden: {100 * (1 - tbo_comm / plain_comm):.0f}%  layer time ratio "
          f"{plain_total / tbo_total:.2f}x")


if __name__ == "__main__":
    main()
