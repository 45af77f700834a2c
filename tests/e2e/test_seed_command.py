"""SGLang's expert-parallel example, verbatim but for the binary name, on the trained default model:
4 ranks, DP attention, EPLB and the recorder. Its chat answers must be transformers' greedy
answers (tests/data/golden/default_chat.json, made by tools/train/golden_chat.py), whichever DP
group serves them, and the recorder must have counted the tokens."""

import json
import pathlib
import threading

import requests

from conftest import REPO, Server
from helpers import post

SEED_FLAGS = ["--ep-size", "4", "--enable-dp-attention", "--enable-eplb",
              "--expert-distribution-recorder-mode", "stat", "--trust-remote-code"]
GOLDEN = json.loads((REPO / "tests" / "data" / "golden" / "default_chat.json").read_text())


def test_seed_command_answers_like_transformers(tmp_path):
    s = Server(SEED_FLAGS, model=str(REPO / "models" / "default"))
    try:
        cases = GOLDEN["cases"]
        answers = [None] * len(cases)

        def ask(i):  # concurrently, so that the requests spread over the DP groups
            r = post(s, "/v1/chat/completions", {
                "model": "default", "messages": cases[i]["messages"], "temperature": 0,
                "max_tokens": GOLDEN["max_new_tokens"]}, timeout=120)
            assert r.status_code == 200, r.text
            answers[i] = r.json()["choices"][0]["message"]["content"]

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(cases))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(180)
        assert answers == [c["answer"] for c in cases]
        states = requests.get(s.url("/get_server_info"), timeout=10).json()["internal_states"]
        assert len(states) == 4 and sum(st["decode_tokens"] > 0 for st in states) >= 2
        reply = post(s, "/dump_expert_distribution_record", {}).text
        path = pathlib.Path(reply.split("Written to ")[1].strip())
        dump = json.loads(path.read_text())
        path.unlink()
        counted = sum(sum(sum(layer) for layer in entry) for entry in dump["logical_count"])
        assert counted > 0
    finally:
        assert s.stop() == 0, s.output()
