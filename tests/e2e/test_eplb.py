"""SGLang's EPLB seed command on 4 ranks: `--tp 4 --ep-size 4 --enable-dp-attention --dp-size 4
--enable-eplb --ep-num-redundant-experts 4 --expert-distribution-recorder-mode stat
--enable-expert-distribution-metrics --moe-a2a-backend deepep --deepep-mode auto
--trust-remote-code`, on a tiny DeepSeek-V3 written by `epserve make-model` with a skewed router.
A chat request is answered, the recorder endpoints record and dump SGLang's keys, and the
experts are rebalanced while serving (a short --eplb-rebalance-num-iterations)."""

import json
import os
import pathlib
import subprocess
import tempfile

import sys

import pytest
import requests

from conftest import BINARY, Server
from helpers import metric, post

SEED_FLAGS = ["--tp", "4", "--ep-size", "4", "--enable-dp-attention", "--dp-size", "4",
              "--enable-eplb", "--ep-num-redundant-experts", "4",
              "--expert-distribution-recorder-mode", "stat",
              "--enable-expert-distribution-metrics", "--moe-a2a-backend", "deepep",
              "--deepep-mode", "auto", "--trust-remote-code"]
REBALANCE_EVERY = 12


@pytest.fixture(scope="module")
def eplb_server():
    model_dir = tempfile.mkdtemp(prefix="epserve-e2e-eplb-model-")
    dump_dir = tempfile.mkdtemp(prefix="epserve-e2e-eplb-dump-")
    subprocess.run([BINARY, "make-model", "--arch", "deepseek_v3", "--preset", "tiny",
                    "--router-skew", "3", "--output", model_dir], check=True, capture_output=True)
    s = Server(SEED_FLAGS + ["--eplb-rebalance-num-iterations", str(REBALANCE_EVERY)],
               model=model_dir, wait=False,
               env={"EPSERVE_EXPERT_DISTRIBUTION_RECORDER_DIR": dump_dir})
    s.wait_healthy(timeout=300)
    s.dump_dir = dump_dir
    yield s
    assert s.stop() == 0, s.output()


def chat(server, content, max_tokens):
    return post(server, "/v1/chat/completions",
                {"model": "m", "max_tokens": max_tokens, "temperature": 0,
                 "messages": [{"role": "user", "content": content}]})


def test_chat_answer(eplb_server):
    r = chat(eplb_server, "Hello, who are you?", 8)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["choices"][0]["message"]["role"] == "assistant"
    assert isinstance(body["choices"][0]["message"]["content"], str)
    assert body["usage"]["completion_tokens"] == 8
    eplb_server.first_answer = body["choices"][0]["message"]["content"]  # before any rebalance


def test_experts_are_rebalanced_while_serving(eplb_server):
    assert (metric(eplb_server, "epserve:eplb_rebalances_total") or 0) == 0
    before = getattr(eplb_server, "first_answer", None)
    if before is None:
        before = chat(eplb_server, "Hello, who are you?", 8).json()["choices"][0]["message"]["content"]
    for i in range(12):
        r = chat(eplb_server, f"Tell me about the number {i}.", 8)
        assert r.status_code == 200, r.text
        # Balancedness is summed over the ranks 16 passes at a time.
        if ((metric(eplb_server, "epserve:eplb_layers_moved_total") or 0) > 0
                and metric(eplb_server, "epserve:expert_balancedness") is not None):
            break
    assert metric(eplb_server, "epserve:eplb_rebalances_total") >= 1, eplb_server.output()
    assert metric(eplb_server, "epserve:eplb_layers_moved_total") > 0, eplb_server.output()
    assert metric(eplb_server, "epserve:eplb_chunks_failed_total") == 0
    balancedness = metric(eplb_server, "epserve:expert_balancedness")
    assert balancedness is not None and 0 < balancedness <= 1
    # Still serving, with the greedy answer given before any rebalance (replicas are the same
    # weights, so moving them changes nothing).
    after = chat(eplb_server, "Hello, who are you?", 8).json()["choices"][0]["message"]["content"]
    assert after == before


def test_record_and_dump(eplb_server):
    r = requests.get(eplb_server.url("/start_expert_distribution_record"), timeout=60)
    assert r.status_code == 200, r.text
    assert chat(eplb_server, "Count to three.", 4).status_code == 200
    r = requests.post(eplb_server.url("/stop_expert_distribution_record"), timeout=60)
    assert r.status_code == 200, r.text
    r = requests.post(eplb_server.url("/dump_expert_distribution_record"), timeout=120)
    assert r.status_code == 200, r.text
    path = r.text.split("Written to ")[1].strip()
    assert pathlib.Path(path).parent == pathlib.Path(eplb_server.dump_dir)
    dump = json.loads(pathlib.Path(path).read_text())
    assert dump["rank"] == 0
    counts = dump["logical_count"]
    # [buffer (= the rebalance interval), layers, logical experts]
    assert len(counts) == REBALANCE_EVERY
    assert len(counts[0]) == 3 and len(counts[0][0]) == 16
    total = sum(sum(sum(layer) for layer in row) for row in counts)
    # Every token goes to top-k = 4 experts in each of the 2 MoE layers.
    assert total > 0 and total % (4 * 2) == 0
    assert dump["num_recorded_passes"] >= 4
    assert len(dump["last_physical_to_logical_map"][1]) == 16 + 4
    # Recording again after a start, with nothing in between, dumps zeros.
    requests.post(eplb_server.url("/start_expert_distribution_record"), timeout=60)
    r = requests.get(eplb_server.url("/dump_expert_distribution_record"), timeout=120)
    assert r.status_code == 200, r.text
    again = json.loads(pathlib.Path(r.text.split("Written to ")[1].strip()).read_text())
    assert sum(sum(sum(layer) for layer in row) for row in again["logical_count"]) == 0


@pytest.fixture(scope="module")
def per_token_server():
    dump_dir = tempfile.mkdtemp(prefix="epserve-e2e-per-token-")
    # The flag wins over SGLang's variable (which names another folder here); the dump folder is
    # made when missing, as SGLang does.
    env_dir = tempfile.mkdtemp(prefix="epserve-e2e-per-token-env-")
    s = Server(["--tp", "2", "--ep-size", "2", "--expert-distribution-recorder-mode", "per_token",
                "--expert-distribution-recorder-dir", dump_dir + "/dumps",
                "--expert-distribution-recorder-format", "both"],
               wait=False, env={"SGLANG_EXPERT_DISTRIBUTION_RECORDER_DIR": env_dir})
    s.wait_healthy(timeout=300)
    s.dump_dir = dump_dir + "/dumps"
    yield s
    assert s.stop() == 0, s.output()


def test_per_token_records_of_every_rank(per_token_server):
    """Two ranks split each batch's tokens; the dump gathers both ranks' records, as JSON and as
    SGLang's .pt (torch.load's format, checked here without torch)."""
    s = per_token_server
    assert requests.post(s.url("/start_expert_distribution_record"), timeout=60).status_code == 200
    r = post(s, "/v1/completions", {"model": "m", "prompt": "Hello there, how are", "max_tokens": 3})
    assert r.status_code == 200, r.text
    r = requests.post(s.url("/dump_expert_distribution_record"), timeout=120)
    assert r.status_code == 200, r.text
    path, pt_path = map(pathlib.Path, r.text.split("Written to ")[1].strip().split(" and "))
    assert path.parent == pathlib.Path(s.dump_dir)
    assert (path.suffix, pt_path.suffix) == (".json", ".pt") and pt_path.stem == path.stem
    check = pathlib.Path(__file__).parents[1] / "unit" / "eplb" / "torch_archive_check.py"
    out = subprocess.run([sys.executable, str(check), str(pt_path), str(path)],
                         capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stdout + out.stderr
    dump = json.loads(path.read_text())
    records = dump["records"]
    assert {rec["rank"] for rec in records} == {0, 1}
    assert len(dump["logical_count"]) == dump["num_recorded_passes"] >= 3
    tokens = sum(len(rec["input_ids"]) for rec in records)
    prompt_tokens = post(s, "/tokenize", {"prompt": "Hello there, how are"}).json()["tokens"]
    assert tokens >= len(prompt_tokens) + 2  # the prompt (or its uncached part) and 2 decode steps
    # qwen3_moe_tiny: 3 MoE layers, top-4: every recorded token counts 12 times.
    total = sum(sum(sum(layer) for layer in row) for row in dump["logical_count"])
    assert total == 12 * tokens
    for rec in records:
        assert len(rec["topk_ids_of_layer"]) == 3
        assert all(len(t) == 4 for layer in rec["topk_ids_of_layer"] for t in layer)
        assert len(rec["positions"]) == len(rec["input_ids"])
        assert len(rec["global_physical_count"]) == 3


def test_recorder_endpoints_need_a_mode(server):
    r = requests.post(server.url("/dump_expert_distribution_record"), timeout=60)
    assert r.status_code == 400
    assert "--expert-distribution-recorder-mode" in r.text
