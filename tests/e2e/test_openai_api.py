"""The OpenAI API through the official `openai` client: models, completions, chat, streaming
invariants, stop strings, n > 1, logprobs, seeds, logit_bias, cached tokens; every response and
streamed chunk checked against OpenAI's schema."""

import math

import pytest
import requests

from helpers import post, sse_events, tokenize

COMPLETION_STREAM_NULLABLE = ("properties.choices.items.properties.finish_reason",)


def test_models(server, client, openai_schema):
    models = client.models.list()
    assert len(models.data) == 1
    model = models.data[0]
    assert model.id == "tiny-moe"
    raw = requests.get(server.url("/v1/models"), timeout=10).json()
    openai_schema("ListModelsResponse", raw)
    assert raw["data"][0]["root"] == "tiny-moe"
    assert isinstance(raw["data"][0]["max_model_len"], int)
    one = requests.get(server.url("/v1/models/tiny-moe"), timeout=10)
    assert one.status_code == 200
    assert one.json()["id"] == one.json()["root"] == "tiny-moe"
    openai_schema("Model", one.json())
    assert requests.get(server.url("/v1/models/other"), timeout=10).status_code == 404


def test_completion(server, client, openai_schema):
    r = client.completions.create(model="any-name", prompt="Hello world", max_tokens=8, temperature=0)
    openai_schema("CreateCompletionResponse", r.model_dump(exclude_unset=True))
    assert r.object == "text_completion"
    assert len(r.choices) == 1 and isinstance(r.choices[0].text, str)
    assert r.choices[0].finish_reason in ("stop", "length")
    assert r.usage.prompt_tokens == len(tokenize(server, "Hello world"))
    assert 1 <= r.usage.completion_tokens <= 8
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_chat(server, client, openai_schema):
    r = client.chat.completions.create(
        model="tiny-moe", messages=[{"role": "user", "content": "Hi there"}], max_tokens=8, temperature=0)
    openai_schema("CreateChatCompletionResponse", r.model_dump(exclude_unset=True))
    assert r.object == "chat.completion"
    assert r.choices[0].message.role == "assistant"
    assert isinstance(r.choices[0].message.content, str)
    assert r.usage.completion_tokens <= 8


def test_max_tokens_is_honoured(client):
    for field in ("max_tokens", "max_completion_tokens"):
        r = client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "count"}], temperature=0,
            extra_body={"ignore_eos": True}, **{field: 5})
        assert r.usage.completion_tokens == 5
        assert r.choices[0].finish_reason == "length"


def collect_completion_stream(client, openai_schema, **kwargs):
    texts, finishes, usage, chunks = {}, {}, None, 0
    for chunk in client.completions.create(stream=True, **kwargs):
        data = chunk.model_dump(exclude_unset=True)
        openai_schema("CreateCompletionResponse", data, nullable=COMPLETION_STREAM_NULLABLE)
        chunks += 1
        if not chunk.choices:
            assert chunk.usage is not None
            usage = chunk.usage
            continue
        for c in chunk.choices:
            texts[c.index] = texts.get(c.index, "") + c.text
            if c.finish_reason is not None:
                assert c.index not in finishes, "two chunks with a finish_reason"
                finishes[c.index] = c.finish_reason
    return texts, finishes, usage


@pytest.mark.parametrize("temperature", [0.0, 0.9])
def test_completion_stream_equals_whole(client, openai_schema, temperature):
    args = dict(model="m", prompt="Once upon a time", max_tokens=24, temperature=temperature, seed=1234)
    whole = client.completions.create(**args)
    texts, finishes, usage = collect_completion_stream(
        client, openai_schema, stream_options={"include_usage": True}, **args)
    assert texts == {0: whole.choices[0].text}
    assert finishes == {0: whole.choices[0].finish_reason}
    assert usage.completion_tokens == whole.usage.completion_tokens
    assert usage.prompt_tokens == whole.usage.prompt_tokens


def test_chat_stream_equals_whole(client, openai_schema):
    args = dict(model="m", messages=[{"role": "user", "content": "Tell me a story"}], max_tokens=24,
                temperature=0.8, seed=7, n=2)
    whole = client.chat.completions.create(**args)
    texts, finishes, roles, usage, last_was_usage = {}, {}, {}, None, False
    for chunk in client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **args):
        openai_schema("CreateChatCompletionStreamResponse", chunk.model_dump(exclude_unset=True))
        assert not last_was_usage, "a chunk after the usage chunk"
        if not chunk.choices:
            usage, last_was_usage = chunk.usage, True
            continue
        for c in chunk.choices:
            if c.index not in roles:
                roles[c.index] = c.delta.role
            texts[c.index] = texts.get(c.index, "") + (c.delta.content or "")
            if c.finish_reason is not None:
                assert c.index not in finishes
                finishes[c.index] = c.finish_reason
    assert roles == {0: "assistant", 1: "assistant"}
    assert texts == {c.index: c.message.content for c in whole.choices}
    assert finishes == {c.index: c.finish_reason for c in whole.choices}
    assert usage.completion_tokens == whole.usage.completion_tokens
    assert usage.prompt_tokens == whole.usage.prompt_tokens


def test_stop_string(client, openai_schema):
    base = client.completions.create(model="m", prompt="The weather today", max_tokens=32, temperature=0,
                                     extra_body={"ignore_eos": True}).choices[0].text
    assert len(base) > 6, base
    stop = base[3:6]
    expected = base[:base.index(stop)]
    r = client.completions.create(model="m", prompt="The weather today", max_tokens=32, temperature=0,
                                  stop=[stop], extra_body={"ignore_eos": True})
    assert r.choices[0].text == expected
    assert r.choices[0].finish_reason == "stop"
    assert r.model_dump()["choices"][0]["matched_stop"] == stop
    texts, finishes, _ = collect_completion_stream(
        client, openai_schema, model="m", prompt="The weather today", max_tokens=32, temperature=0,
        stop=stop, extra_body={"ignore_eos": True})
    assert texts == {0: expected} and finishes == {0: "stop"}


def test_n_choices_and_prompt_lists(client):
    r = client.completions.create(model="m", prompt="Hi", n=3, max_tokens=6, temperature=1.0, seed=3)
    assert sorted(c.index for c in r.choices) == [0, 1, 2]
    assert 3 <= r.usage.completion_tokens <= 18  # all three choices counted
    single = client.completions.create(model="m", prompt="Hi", max_tokens=6, temperature=1.0, seed=3)
    assert r.usage.prompt_tokens == single.usage.prompt_tokens  # each prompt counted once
    r = client.completions.create(model="m", prompt=["Hi", "Hello there"], n=2, max_tokens=4, temperature=0)
    assert [c.index for c in r.choices] == [0, 1, 2, 3]
    assert r.choices[0].text == r.choices[1].text  # greedy: the n choices of one prompt agree
    chat = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}], n=2,
                                          max_tokens=4, temperature=1.0)
    assert len(chat.choices) == 2


def test_seed_reproducible(client):
    args = dict(model="m", prompt="Random words:", max_tokens=16, temperature=1.0, top_p=0.95)
    a = client.completions.create(seed=99, **args).choices[0].text
    b = client.completions.create(seed=99, **args).choices[0].text
    assert a == b


def test_completion_logprobs(client):
    r = client.completions.create(model="m", prompt="Logprobs please", max_tokens=6, temperature=0,
                                  logprobs=3, extra_body={"ignore_eos": True})
    lp = r.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == 6
    assert "".join(lp.tokens) == r.choices[0].text
    for chosen, top in zip(lp.token_logprobs, lp.top_logprobs):
        assert len(top) <= 3 and chosen <= 0
        assert math.isclose(max(top.values()), chosen, abs_tol=1e-4)  # greedy picks the top token


def test_chat_logprobs(client, openai_schema):
    r = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hello"}],
                                       max_tokens=5, temperature=0, logprobs=True, top_logprobs=2,
                                       extra_body={"ignore_eos": True})
    openai_schema("CreateChatCompletionResponse", r.model_dump(exclude_unset=True))
    content = r.choices[0].logprobs.content
    assert len(content) == 5
    for item in content:
        assert len(item.top_logprobs) == 2
        assert math.isclose(item.top_logprobs[0].logprob, item.logprob, abs_tol=1e-4)
        assert item.top_logprobs[0].token == item.token


def test_penalties_accepted(client):
    r = client.completions.create(model="m", prompt="a a a a", max_tokens=8, temperature=0.7,
                                  frequency_penalty=1.0, presence_penalty=0.5, seed=1)
    assert r.usage.completion_tokens > 0


def test_logit_bias_forces_and_forbids(server, client):
    def generate(bias=None):
        params = {"max_new_tokens": 6, "temperature": 0, "ignore_eos": True}
        if bias:
            params["logit_bias"] = bias
        r = post(server, "/generate", {"text": "Bias", "sampling_params": params})
        assert r.status_code == 200, r.text
        return r.json()["output_ids"]

    plain = generate()
    assert generate({"77": 100}) == [77] * 6
    assert generate({str(plain[0]): -100})[0] != plain[0]
    r = client.completions.create(model="m", prompt="Bias", max_tokens=6, temperature=0,
                                  logit_bias={"77": 100}, extra_body={"ignore_eos": True})
    assert r.usage.completion_tokens == 6
    assert generate() == plain  # the bias did not leak into later requests


def test_cached_tokens_reported(server, client):
    assert post(server, "/flush_cache", {}).status_code == 200
    prompt = "A long shared prefix that the cache should keep " * 4
    first = client.completions.create(model="m", prompt=prompt, max_tokens=2, temperature=0)
    second = client.completions.create(model="m", prompt=prompt, max_tokens=2, temperature=0)
    assert first.usage.prompt_tokens_details.cached_tokens == 0
    assert second.usage.prompt_tokens_details.cached_tokens > 0
    assert post(server, "/flush_cache", {}).status_code == 200
    third = client.completions.create(model="m", prompt=prompt, max_tokens=2, temperature=0)
    assert third.usage.prompt_tokens_details.cached_tokens == 0


def test_raw_stream_framing(server):
    r = requests.post(server.url("/v1/chat/completions"), stream=True, timeout=60,
                      headers={"Accept-Encoding": "gzip, deflate, br"}, json={
        "model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, "stream": True})
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/event-stream")
    # A compressed stream would be held back by the compressor: events must go out as they come.
    assert "Content-Encoding" not in r.headers
    events = sse_events(r)
    assert events[-1] == "[DONE]"
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"
    assert sum(1 for e in events[:-1] if e["choices"] and e["choices"][0]["finish_reason"]) == 1


def test_schema_check_rejects_a_bad_shape(openai_schema):
    import jsonschema

    good = {"id": "x", "object": "chat.completion", "created": 1, "model": "m", "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "a", "refusal": None},
         "logprobs": None, "finish_reason": "stop"}]}
    openai_schema("CreateChatCompletionResponse", good)
    bad = dict(good, choices=[dict(good["choices"][0], finish_reason="abort")])
    with pytest.raises(jsonschema.ValidationError):
        openai_schema("CreateChatCompletionResponse", bad)


def test_echo(server, client):
    plain = client.completions.create(model="m", prompt="Echo this", max_tokens=4, temperature=0)
    echoed = client.completions.create(model="m", prompt="Echo this", max_tokens=4, temperature=0, echo=True,
                                       logprobs=1)
    assert echoed.choices[0].text == "Echo this" + plain.choices[0].text
    lp = echoed.choices[0].logprobs
    prompt_len = len(tokenize(server, "Echo this"))
    assert len(lp.tokens) == prompt_len + plain.usage.completion_tokens
    assert lp.token_logprobs[0] is None and all(x is not None for x in lp.token_logprobs[1:])
    assert lp.text_offset[0] == 0 and lp.text_offset == sorted(lp.text_offset)
