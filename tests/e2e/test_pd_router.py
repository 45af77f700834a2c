"""PD disaggregation end to end: `epserve router --pd-disaggregation` in front of a prefill and a
decode `epserve serve`, as SGLang's three commands run it. Greedy tokens through the router equal
one non-disaggregated server's, for both architectures, with EP 2 on each side and with DP
attention on the decode side; the official `openai` client and streams go through it too.
"""

import json

import openai
import pytest
import requests

from conftest import DEEPSEEK_MODEL, MODEL
from test_disaggregation import EP2, EP2_DP, MAX_NEW, PROMPTS, PdPair, reference_ids
from test_router import Router


def router_for(pair):
    return Router(["--pd-disaggregation", "--policy", "round_robin",
                   "--prefill", pair.prefill.base_url, str(pair.bootstrap_port),
                   "--decode", pair.decode.base_url])


@pytest.mark.parametrize("model,prefill_args,decode_args", [
    pytest.param(MODEL, EP2, EP2, id="qwen3-ep2-ep2"),
    pytest.param(DEEPSEEK_MODEL, EP2, EP2_DP, id="deepseek-ep2-dpattn"),
])
def test_router_gives_one_servers_greedy_tokens(model, prefill_args, decode_args):
    expected = reference_ids(model, PROMPTS)
    pair = PdPair(model, prefill_args, decode_args)
    router = None
    try:
        router = router_for(pair)
        for prompt, want in zip(PROMPTS, expected):
            r = requests.post(router.url("/generate"), json={
                "input_ids": prompt,
                "sampling_params": {"temperature": 0, "max_new_tokens": MAX_NEW}}, timeout=60)
            assert r.status_code == 200, r.text + router.output()
            assert r.json()["output_ids"] == want
        # A stream through the router carries the same tokens.
        with requests.post(router.url("/generate"), json={
                "input_ids": PROMPTS[0], "stream": True,
                "sampling_params": {"temperature": 0, "max_new_tokens": MAX_NEW}},
                stream=True, timeout=60) as r:
            assert r.status_code == 200
            events = [line[len(b"data: "):] for line in r.iter_lines() if line.startswith(b"data: ")]
        assert events[-1] == b"[DONE]"
        assert json.loads(events[-2])["output_ids"] == expected[0]
        # The official client through the router: same text as the decode tokens.
        client = openai.OpenAI(base_url=router.url("/v1"), api_key="none")
        model_id = client.models.list().data[0].id
        done = client.completions.create(model=model_id, prompt=PROMPTS[1], max_tokens=MAX_NEW,
                                         temperature=0)
        assert done.usage.prompt_tokens == len(PROMPTS[1])
        assert done.usage.completion_tokens == len(expected[1])
    finally:
        if router is not None:
            assert router.stop() == 0, router.output()
        pair.stop()
