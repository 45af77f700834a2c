"""Writes tests/data/eplb/deepseek_reference.json: inputs and outputs of DeepSeek's EPLB
(deepseek-ai/EPLB eplb.py, rebalance_experts) on a set of layouts, for the C++ re-implementation
to match exactly (tie-breaking included). Run by a developer, not by CI:

    git clone https://github.com/deepseek-ai/EPLB /tmp/EPLB
    python tools/reference/eplb_deepseek_fixtures.py --eplb-dir /tmp/EPLB

Needs torch. Counts are small integers in some cases so that equal weights (ties) occur in every
step of the algorithm.
"""

import argparse
import json
import sys
from pathlib import Path

import torch

# (name, layers, experts, physical, groups, nodes, gpus, kind)
CASES = [
    ("tiny_ties", 4, 12, 16, 4, 2, 8, "ties"),
    ("two_gpus_per_node", 4, 16, 24, 4, 2, 4, "ties"),
    ("no_redundancy_identity_packs", 3, 16, 16, 4, 4, 4, "ties"),
    ("one_gpu_per_node", 3, 16, 20, 4, 2, 2, "ties"),
    ("one_node_many_groups", 3, 64, 72, 8, 1, 8, "ties"),
    ("medium_zipf", 3, 64, 80, 8, 2, 8, "zipf"),
    ("global_groups_not_divisible", 3, 60, 72, 3, 2, 8, "ties"),
    ("global_zipf", 2, 256, 288, 8, 3, 24, "zipf"),
    ("deepseek_v3_zipf", 2, 256, 288, 8, 4, 32, "zipf"),
    ("deepseek_v3_ties", 2, 256, 288, 8, 4, 32, "ties"),
    ("mostly_zero", 2, 32, 48, 4, 2, 8, "sparse"),
]


def make_weight(layers, experts, kind, gen):
    if kind == "ties":
        return torch.randint(0, 6, (layers, experts), generator=gen)
    if kind == "sparse":
        w = torch.randint(0, 50, (layers, experts), generator=gen)
        return w * (torch.rand(layers, experts, generator=gen) < 0.2)
    ranks = torch.stack([torch.randperm(experts, generator=gen) for _ in range(layers)]) + 1
    return torch.round(100000.0 / ranks.double() ** 1.2).long()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--eplb-dir", required=True, help="checkout of deepseek-ai/EPLB")
    parser.add_argument("--output", default=str(Path(__file__).resolve().parents[2] /
                                                "tests/data/eplb/deepseek_reference.json"))
    args = parser.parse_args()
    sys.path.insert(0, args.eplb_dir)
    import eplb  # noqa: E402

    gen = torch.Generator().manual_seed(20240601)
    cases = [{
        "name": "readme_example",
        "num_physical": 16, "num_groups": 4, "num_nodes": 2, "num_gpus": 8,
        "weight": [[90, 132, 40, 61, 104, 165, 39, 4, 73, 56, 183, 86],
                   [20, 107, 104, 64, 19, 197, 187, 157, 172, 86, 16, 27]],
    }]
    for name, layers, experts, physical, groups, nodes, gpus, kind in CASES:
        cases.append({
            "name": name, "num_physical": physical, "num_groups": groups, "num_nodes": nodes,
            "num_gpus": gpus, "weight": make_weight(layers, experts, kind, gen).tolist(),
        })
    for case in cases:
        phy2log, log2phy, logcnt = eplb.rebalance_experts(
            torch.tensor(case["weight"]), case["num_physical"], case["num_groups"],
            case["num_nodes"], case["num_gpus"])
        case["physical_to_logical_map"] = phy2log.tolist()
        case["logical_to_physical_map"] = log2phy.tolist()
        case["logical_count"] = logcnt.tolist()
    out = {"generator": "tools/reference/eplb_deepseek_fixtures.py",
           "torch_version": torch.__version__, "cases": cases}
    Path(args.output).write_text(json.dumps(out, separators=(",", ":")) + "\n")
    print(f"wrote {len(cases)} cases to {args.output}")


if __name__ == "__main__":
    main()
