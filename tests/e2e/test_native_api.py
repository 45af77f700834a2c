"""SGLang's native routes over plain HTTP: /generate (single, batch, n, stream, logprobs, rid,
stop), health, model and server info, flush_cache, abort_request, tokenize/detokenize, metrics."""

import threading
import time

import requests

from helpers import post, sse_events, tokenize

NONE_KEY = {"Authorization": "Bearer None"}  # what SGLang's test harness sends without a key


def generate(server, **body):
    r = post(server, "/generate", body)
    assert r.status_code == 200, r.text
    return r.json()


def test_generate_text(server):
    out = generate(server, text="Hello world", sampling_params={"max_new_tokens": 8, "temperature": 0})
    assert set(out) >= {"text", "output_ids", "meta_info"}
    meta = out["meta_info"]
    assert meta["prompt_tokens"] == len(tokenize(server, "Hello world"))
    assert meta["completion_tokens"] == len(out["output_ids"]) <= 8
    assert meta["cached_tokens"] >= 0
    assert meta["e2e_latency"] > 0
    assert isinstance(meta["id"], str) and meta["id"]
    assert meta["finish_reason"]["type"] in ("length", "stop")
    if meta["finish_reason"]["type"] == "length":
        assert meta["finish_reason"]["length"] == 8


def test_generate_input_ids_and_rid(server):
    out = generate(server, input_ids=[5, 6, 7, 8], rid="my-request",
                   sampling_params={"max_new_tokens": 4, "temperature": 0, "ignore_eos": True})
    assert out["meta_info"]["id"] == "my-request"
    assert out["meta_info"]["prompt_tokens"] == 4
    assert len(out["output_ids"]) == 4
    assert out["meta_info"]["finish_reason"] == {"type": "length", "length": 4}


def test_generate_batch_and_n(server):
    outs = generate(server, text=["first", "second prompt"], sampling_params={"max_new_tokens": 3})
    assert isinstance(outs, list) and len(outs) == 2
    assert [o["meta_info"]["prompt_tokens"] for o in outs] == [
        len(tokenize(server, "first")), len(tokenize(server, "second prompt"))]
    outs = generate(server, input_ids=[[1, 2], [3, 4, 5]], sampling_params={"max_new_tokens": 2})
    assert len(outs) == 2
    outs = generate(server, text="parallel", sampling_params={"max_new_tokens": 3, "n": 3})
    assert len(outs) == 3 and len({o["meta_info"]["id"] for o in outs}) == 3


def test_generate_stream(server):
    params = {"max_new_tokens": 12, "temperature": 0, "ignore_eos": True}
    whole = generate(server, text="Streaming test", sampling_params=params)
    r = requests.post(server.url("/generate"), stream=True, timeout=60,
                      json={"text": "Streaming test", "sampling_params": params, "stream": True})
    assert r.status_code == 200
    events = sse_events(r)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    for a, b in zip(chunks, chunks[1:]):  # SGLang streams the text so far
        assert b["text"].startswith(a["text"])
        assert b["output_ids"][:len(a["output_ids"])] == a["output_ids"]
        assert a["meta_info"]["finish_reason"] is None
    assert chunks[-1]["text"] == whole["text"]
    assert chunks[-1]["output_ids"] == whole["output_ids"]
    assert chunks[-1]["meta_info"]["finish_reason"] == {"type": "length", "length": 12}


def test_generate_logprobs(server):
    prompt = tokenize(server, "log probabilities")
    out = generate(server, input_ids=prompt, return_logprob=True, logprob_start_len=0, top_logprobs_num=2,
                   sampling_params={"max_new_tokens": 5, "temperature": 0, "ignore_eos": True})
    meta = out["meta_info"]
    inputs = meta["input_token_logprobs"]
    assert [t[1] for t in inputs] == prompt
    assert inputs[0][0] is None and all(t[0] <= 0 for t in inputs[1:])
    assert all(t[2] is None for t in inputs)
    outputs = meta["output_token_logprobs"]
    assert [t[1] for t in outputs] == out["output_ids"]
    assert len(meta["output_top_logprobs"]) == 5
    for chosen, top in zip(outputs, meta["output_top_logprobs"]):
        assert len(top) == 2
        assert top[0][1] == chosen[1] and abs(top[0][0] - chosen[0]) < 1e-4  # greedy
    assert meta["input_top_logprobs"][0] is None
    with_text = generate(server, text="x", return_logprob=True, return_text_in_logprobs=True,
                         sampling_params={"max_new_tokens": 2})
    assert all(isinstance(t[2], str) for t in with_text["meta_info"]["output_token_logprobs"])


def test_generate_stops(server):
    base = generate(server, text="Stop here", sampling_params={"max_new_tokens": 16, "temperature": 0,
                                                               "ignore_eos": True})
    stop = base["text"][2:5]
    out = generate(server, text="Stop here", sampling_params={"max_new_tokens": 16, "temperature": 0,
                                                              "ignore_eos": True, "stop": stop})
    assert out["text"] == base["text"][:base["text"].index(stop)]
    assert out["meta_info"]["finish_reason"] == {"type": "stop", "matched": stop}
    token = base["output_ids"][3]
    out = generate(server, text="Stop here", sampling_params={"max_new_tokens": 16, "temperature": 0,
                                                              "stop_token_ids": [token]})
    first = base["output_ids"].index(token)
    assert out["output_ids"] == base["output_ids"][:first + 1]
    assert out["meta_info"]["finish_reason"] == {"type": "stop", "matched": token}
    # As in SGLang, ignore_eos also ignores stop_token_ids.
    out = generate(server, text="Stop here", sampling_params={"max_new_tokens": 16, "temperature": 0,
                                                              "ignore_eos": True, "stop_token_ids": [token]})
    assert out["output_ids"] == base["output_ids"]


def test_health_routes(server):
    assert requests.get(server.url("/health"), timeout=10).status_code == 200
    assert requests.get(server.url("/health_generate"), headers=NONE_KEY, timeout=30).status_code == 200


def test_info_routes(server):
    for path in ("/get_model_info", "/model_info"):
        info = requests.get(server.url(path), timeout=10).json()
        assert info["is_generation"] is True
        assert info["model_path"].endswith("qwen3_moe_tiny") or info["model_path"]
    for path in ("/get_server_info", "/server_info"):
        info = requests.get(server.url(path), timeout=10).json()
        assert isinstance(info["max_total_num_tokens"], int) and info["max_total_num_tokens"] > 0
        assert isinstance(info["version"], str)
        assert info["served_model_name"] == "tiny-moe"
        assert info["internal_states"][0]["kv_total_tokens"] == info["max_total_num_tokens"]


def test_flush_cache(server):
    r = requests.post(server.url("/flush_cache"), timeout=10)
    assert r.status_code == 200, r.text


def test_abort_request(server):
    events = []

    def stream():
        r = requests.post(server.url("/generate"), stream=True, timeout=120, json={
            "text": "abort me", "rid": "to-abort", "stream": True,
            "sampling_params": {"max_new_tokens": 3000, "ignore_eos": True}})
        events.extend(sse_events(r))

    t = threading.Thread(target=stream)
    t.start()
    deadline = time.time() + 30
    while time.time() < deadline and not events:
        time.sleep(0.02)
        r = post(server, "/abort_request", {"rid": "to-abort"})
        assert r.status_code == 200
        if r.json()["aborted"]:
            break
    t.join(60)
    assert not t.is_alive()
    assert events[-1] == "[DONE]"
    assert events[-2]["meta_info"]["finish_reason"]["type"] == "abort"
    assert len(events[-2]["output_ids"]) < 3000


def test_tokenize_detokenize(server):
    for path in ("/tokenize", "/v1/tokenize"):
        r = post(server, path, {"prompt": "round trip text"}).json()
        assert r["count"] == len(r["tokens"]) and isinstance(r["max_model_len"], int)
    ids = tokenize(server, "round trip text")
    for path in ("/detokenize", "/v1/detokenize"):
        assert post(server, path, {"tokens": ids}).json()["text"] == "round trip text"
    batch = post(server, "/tokenize", {"prompt": ["a", "bb"]}).json()
    assert len(batch["tokens"]) == 2 and len(batch["count"]) == 2


def test_metrics(server):
    generate(server, text="metrics", sampling_params={"max_new_tokens": 3})
    text = requests.get(server.url("/metrics"), timeout=10).text
    for name in ("sglang:num_requests_total", "sglang:prompt_tokens_total", "sglang:generation_tokens_total",
                 "sglang:num_running_reqs", "sglang:num_queue_reqs", "sglang:token_usage",
                 "sglang:time_to_first_token_seconds_bucket", "sglang:inter_token_latency_seconds_bucket"):
        assert name in text, name
    requests_total = [l for l in text.splitlines() if l.startswith("sglang:num_requests_total")]
    assert float(requests_total[0].split()[-1]) >= 1
