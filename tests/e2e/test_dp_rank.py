"""SGLang's data_parallel_rank (and routed_dp_rank, its newer name): a request names the DP
attention group that serves it; a rank outside [0, dp_size) is a 400. And `epserve router
--dp-aware` in front of a DP attention server: each rank is a worker of its own, so round robin
spreads the requests over the groups by naming them."""

import requests

from conftest import DEEPSEEK_MODEL, Server
from helpers import assert_openai_error, post
from test_router import Router


def prefill_tokens(server):
    states = requests.get(server.url("/get_server_info"), timeout=10).json()["internal_states"]
    return [st["prefill_tokens"] for st in states]


def generate(server, prompt, **fields):
    return post(server, "/generate", {"input_ids": prompt, "sampling_params": {
        "max_new_tokens": 2, "temperature": 0}, **fields}, timeout=120)


def test_a_named_rank_gets_the_request_and_others_are_refused():
    s = Server(["--ep-size", "2", "--enable-dp-attention", "--load-balance-method",
                "round_robin"], model=DEEPSEEK_MODEL)
    router = None
    try:
        before = prefill_tokens(s)
        # Three requests named for group 1 (round robin alone would put one on group 0).
        for i, fields in enumerate(({"data_parallel_rank": 1}, {"routed_dp_rank": 1},
                                    {"data_parallel_rank": 0, "routed_dp_rank": 1})):
            r = generate(s, [5 + i] * 40, **fields)
            assert r.status_code == 200, r.text
        r = post(s, "/v1/completions", {"model": "m", "prompt": [9] * 40, "max_tokens": 2,
                                        "data_parallel_rank": 1}, timeout=120)
        assert r.status_code == 200, r.text
        after = prefill_tokens(s)
        assert after[0] == before[0] and after[1] - before[1] >= 4 * 40, (before, after)

        for fields, needle in (({"data_parallel_rank": 2}, "must be less than dp_size: 2"),
                               ({"routed_dp_rank": 5}, "must be less than dp_size: 2"),
                               ({"data_parallel_rank": -1}, "must be non-negative"),
                               ({"data_parallel_rank": "1"}, "expected an integer"),
                               ({"data_parallel_rank": 1.5}, "expected an integer")):
            assert_openai_error(generate(s, [3] * 8, **fields), 400, needle)
            for path, body in (("/v1/completions", {"prompt": [3] * 8}),
                               ("/v1/chat/completions",
                                {"messages": [{"role": "user", "content": "hi"}]})):
                assert_openai_error(post(s, path, {"model": "m", "max_tokens": 2, **body, **fields},
                                         timeout=60), 400, needle)
        assert generate(s, [4] * 8, data_parallel_rank=None).status_code == 200

        # The router's --dp-aware: a worker per group, data_parallel_rank added by the router.
        router = Router(["--worker-urls", s.base_url, "--dp-aware", "--policy", "round_robin"])
        before = prefill_tokens(s)
        for i in range(4):
            r = requests.post(router.url("/generate"), json={
                "input_ids": [20 + i] * 30, "sampling_params": {"max_new_tokens": 2}}, timeout=120)
            assert r.status_code == 200, r.text
        after = prefill_tokens(s)
        assert [a - b for a, b in zip(after, before)] == [60, 60], (before, after)
    finally:
        if router is not None:
            assert router.stop() == 0, router.output()
        assert s.stop() == 0, s.output()


def test_without_dp_groups_only_rank_zero_is_taken(server):
    assert generate(server, [5] * 8, data_parallel_rank=0).status_code == 200
    assert_openai_error(generate(server, [5] * 8, data_parallel_rank=1), 400,
                        "data_parallel_rank must be less than dp_size: 1")
