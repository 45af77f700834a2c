#!/usr/bin/env python3
"""Draws one forward pass of a --trace-file trace (runtime/pass_trace.h) as a PNG: a row per
(rank, micro-batch), compute spans in grey, communication spans (dispatch/combine start and wait)
in colour. Needs matplotlib (not a dependency of epserve: use a virtual environment outside the
repository).

    plot_trace.py TRACE.json OUT.png [--phase prefill|decode] [--layers 0-1] [--title TEXT]

--phase picks the last prefill pass (bench-one-batch's measured one) or the first decode pass
after it; --layers keeps the spans of those layers (and the time between them).
"""
import argparse
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLOURS = {"dispatch_start": "#d62728", "dispatch_wait": "#ff9896", "combine_start": "#1f77b4",
           "combine_wait": "#aec7e8"}


def pick_pass(events, phase):
    prefill = sorted({e["args"]["pass"] for e in events if e["args"].get("prefill")})
    if phase == "prefill":
        return prefill[-1]
    after = sorted({e["args"]["pass"] for e in events
                    if not e["args"].get("prefill") and e["args"]["pass"] > prefill[-1]})
    return after[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("trace")
    parser.add_argument("out")
    parser.add_argument("--phase", choices=["prefill", "decode"], default="prefill")
    parser.add_argument("--layers", default="0-1")
    parser.add_argument("--title", default="")
    args = parser.parse_args()
    first, last = (int(x) for x in args.layers.split("-"))
    events = [e for e in json.load(open(args.trace))["traceEvents"] if e.get("ph") == "X"]
    chosen = pick_pass(events, args.phase)
    spans = [e for e in events if e["args"]["pass"] == chosen and
             first <= e["args"]["layer"] <= last]
    ranks = sorted({e["pid"] for e in spans})
    rows = [(r, mb) for r in ranks for mb in (0, 1) if any(
        e["pid"] == r and e["tid"] == mb for e in spans)]
    origin = {r: min(e["ts"] for e in spans if e["pid"] == r) for r in ranks}
    fig, ax = plt.subplots(figsize=(12, 0.7 * len(rows) + 1.4))
    for y, (r, mb) in enumerate(rows):
        for e in spans:
            if e["pid"] != r or e["tid"] != mb:
                continue
            start, dur = (e["ts"] - origin[r]) / 1e3, e["dur"] / 1e3
            ax.barh(y, dur, left=start, height=0.7, color=COLOURS.get(e["name"], "#bbbbbb"),
                    edgecolor="black", linewidth=0.3)
            if e["cat"] == "compute" and dur > 0:
                ax.text(start + dur / 2, y, e["name"], ha="center", va="center", fontsize=6,
                        clip_on=True)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([f"rank {r} {'AB'[mb]}" for r, mb in rows])
    ax.invert_yaxis()
    ax.set_xlabel("ms since the first span of the rank")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in COLOURS.values()]
    ax.legend(handles + [plt.Rectangle((0, 0), 1, 1, color="#bbbbbb")],
              list(COLOURS) + ["compute"], loc="upper center", bbox_to_anchor=(0.5, -0.25),
              ncol=5, fontsize=7)
    ax.set_title(args.title or f"{args.trace}: pass {chosen}, layers {first}-{last}", fontsize=9)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)


if __name__ == "__main__":
    main()
