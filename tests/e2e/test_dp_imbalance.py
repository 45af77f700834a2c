"""DP attention under imbalance: with two groups and round-robin placement, every long prompt goes
to group 0 and every short one to group 1. Group 1 runs out of work long before group 0 and then
joins each MoE forward with an empty batch; every request must still finish with the tokens the
one-rank server gives, and the test prints the throughput (`pytest -s` shows it)."""

import threading
import time

import requests

from conftest import DEEPSEEK_MODEL, Server
from helpers import post

LONG = [list(range(3 + i, 3 + i + 700)) for i in range(4)]
SHORT = [[11 + i, 12, 13, 14, 15, 16] for i in range(4)]
NEW_TOKENS = 24


def in_flight(server):
    return requests.get(server.url("/get_server_info"), timeout=10).json()["num_requests_in_flight"]


def run_all(server, prompts):
    """Sends the prompts one after another (each waits until the previous one is in flight, so the
    round-robin order is the list order) and returns their output ids and the wall time."""
    results = [None] * len(prompts)

    def run(i):
        r = post(server, "/generate", {"input_ids": prompts[i], "sampling_params": {
            "max_new_tokens": NEW_TOKENS, "temperature": 0, "ignore_eos": True}}, timeout=300)
        assert r.status_code == 200, r.text
        results[i] = r.json()["output_ids"]

    start = time.perf_counter()
    threads = []
    for i in range(len(prompts)):
        before = in_flight(server)
        threads.append(threading.Thread(target=run, args=(i,)))
        threads[-1].start()
        deadline = time.time() + 30
        while in_flight(server) <= before and threads[-1].is_alive() and time.time() < deadline:
            time.sleep(0.005)
    for t in threads:
        t.join(300)
    return results, time.perf_counter() - start


def test_long_prompts_on_one_group_all_finish():
    prompts = [p for pair in zip(LONG, SHORT) for p in pair]  # long, short, long, short, ...
    single = Server(model=DEEPSEEK_MODEL)
    try:
        expected, _ = run_all(single, prompts)
    finally:
        assert single.stop() == 0, single.output()

    s = Server(["--ep-size", "2", "--enable-dp-attention", "--load-balance-method", "round_robin"],
               model=DEEPSEEK_MODEL)
    try:
        results, seconds = run_all(s, prompts)
        states = requests.get(s.url("/get_server_info"), timeout=10).json()["internal_states"]
    finally:
        assert s.stop() == 0, s.output()
    assert results == expected
    assert all(len(r) == NEW_TOKENS for r in results)
    prefill = [st["prefill_tokens"] for st in states]
    assert len(prefill) == 2 and prefill[0] >= 4 * 700 and prefill[1] <= 4 * 6, prefill
    tokens = len(prompts) * NEW_TOKENS
    print(f"\nDP imbalance: prefill tokens per group {prefill}; {len(prompts)} requests, "
          f"{tokens} output tokens in {seconds:.2f} s = {tokens / seconds:.1f} tok/s")
