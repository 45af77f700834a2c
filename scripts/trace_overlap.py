#!/usr/bin/env python3
"""Share of communication hidden by two-batch overlap, from two --trace-file traces of the same
run without and with --enable-two-batch-overlap:

    hidden = 1 - exposed comm (with TBO) / comm (without TBO)

where comm is the time a rank's thread spends in "comm" spans (sending, or waiting for peers) and
step time is the sum of all spans; figures are the mean over ranks.

    scripts/trace_overlap.py [--phase all|prefill|decode] [--sum-as-comm] plain.json tbo.json

--sum-as-comm counts the combine's weighted sum ("combine_sum" spans, compute) as communication,
as traces written before the wait and the sum were separate spans did (inside "combine_wait").

--phase prefill keeps the last prefill pass of each rank (bench-one-batch's measured one; earlier
ones are warm-up), --phase decode the decode passes after it. Traces written before the
"prefill" argument existed only support --phase all.
"""
import argparse
import json
from collections import defaultdict


def keep_passes(events, phase):
    if phase == "all":
        return lambda e: True
    last_prefill = defaultdict(lambda: -1)
    for e in events:
        if e["args"].get("prefill"):
            last_prefill[e["pid"]] = max(last_prefill[e["pid"]], e["args"]["pass"])
    if phase == "prefill":
        return lambda e: e["args"]["pass"] == last_prefill[e["pid"]]
    return lambda e: e["args"]["pass"] > last_prefill[e["pid"]] and not e["args"].get("prefill")


def per_rank(path, phase, sum_as_comm=False):
    events = [e for e in json.load(open(path))["traceEvents"] if e.get("ph") == "X"]
    keep = keep_passes(events, phase)
    comm, total = defaultdict(float), defaultdict(float)
    for e in events:
        if not keep(e):
            continue
        total[e["pid"]] += e["dur"]
        if e["cat"] == "comm" or (sum_as_comm and e["name"] == "combine_sum"):
            comm[e["pid"]] += e["dur"]
    ranks = sorted(total)
    if not ranks:
        raise SystemExit(f"{path}: no span of phase {phase}")
    return (sum(comm[r] for r in ranks) / len(ranks), sum(total[r] for r in ranks) / len(ranks))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--phase", choices=["all", "prefill", "decode"], default="all")
    parser.add_argument("--sum-as-comm", action="store_true")
    parser.add_argument("plain")
    parser.add_argument("tbo")
    args = parser.parse_args()
    plain_comm, plain_total = per_rank(args.plain, args.phase, args.sum_as_comm)
    tbo_comm, tbo_total = per_rank(args.tbo, args.phase, args.sum_as_comm)
    print(f"without TBO: comm {plain_comm / 1e3:.1f} ms of {plain_total / 1e3:.1f} ms "
          f"({100 * plain_comm / plain_total:.0f}% of step time)")
    print(f"with TBO:    exposed comm {tbo_comm / 1e3:.1f} ms of {tbo_total / 1e3:.1f} ms")
    print(f"hidden: {100 * (1 - tbo_comm / plain_comm):.0f}%  layer time ratio "
          f"{plain_total / tbo_total:.2f}x")


if __name__ == "__main__":
    main()
