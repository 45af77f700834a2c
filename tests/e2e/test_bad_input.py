"""Bad input, one test each: a 4xx in OpenAI's error shape, never a crash; the server keeps
answering afterwards (checked after every test)."""

import pytest
import requests

from helpers import assert_openai_error, post

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"


@pytest.fixture(autouse=True)
def still_serving(server):
    yield
    r = post(server, COMPLETIONS, {"model": "m", "prompt": "still alive?", "max_tokens": 2})
    assert r.status_code == 200, r.text
    assert requests.get(server.url("/health"), timeout=10).status_code == 200


def raw_post(server, path, data, headers=None):
    return requests.post(server.url(path), data=data, timeout=30,
                         headers=headers or {"Content-Type": "application/json"})


def test_malformed_json(server):
    assert_openai_error(raw_post(server, CHAT, b'{"model": "m", "messages": ['), 400, "not valid JSON")
    assert_openai_error(raw_post(server, "/generate", b"not json"), 400, "not valid JSON")


def test_body_not_an_object(server):
    assert_openai_error(raw_post(server, COMPLETIONS, b"[1, 2, 3]"), 400, "JSON object")


def test_wrong_types(server):
    r = post(server, CHAT, {"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"})
    assert_openai_error(r, 400, "temperature")
    assert r.json()["error"]["param"] == "temperature"
    assert_openai_error(post(server, CHAT, {"model": "m", "messages": "hello"}), 400, "messages")
    assert_openai_error(post(server, COMPLETIONS, {"model": "m", "prompt": 42}), 400, "prompt")
    assert_openai_error(post(server, COMPLETIONS, {"model": "m", "prompt": "x", "max_tokens": 2.5}), 400,
                        "max_tokens")
    assert_openai_error(post(server, CHAT, {"model": "m", "messages": [{"role": "robot", "content": "x"}]}),
                        400, "role")


def test_unknown_fields(server):
    r = post(server, CHAT, {"model": "m", "messages": [{"role": "user", "content": "x"}], "temprature": 1})
    assert_openai_error(r, 400, "Unrecognized request argument supplied: temprature")
    assert_openai_error(post(server, "/generate", {"text": "x", "sampling_params": {"max_tokens": 3}}), 400,
                        "sampling_params.max_tokens")
    assert_openai_error(post(server, CHAT, {"model": "m", "messages": [{"role": "user", "content": "x"}],
                                            "tools": [{"type": "function"}]}), 400, "not supported")


def test_empty_messages(server):
    assert_openai_error(post(server, CHAT, {"model": "m", "messages": []}), 400, "messages")
    assert_openai_error(post(server, CHAT, {"model": "m"}), 400, "messages")


def test_prompt_longer_than_context(server):
    r = post(server, COMPLETIONS, {"model": "m", "prompt": [7] * 5000, "max_tokens": 1})
    assert_openai_error(r, 400, "is longer than the model's context length")
    r = post(server, "/generate", {"input_ids": [7] * 5000})
    assert_openai_error(r, 400, "is longer than the model's context length")


def test_max_tokens_beyond_context(server):
    r = post(server, CHAT, {"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 5000})
    assert_openai_error(r, 400, "max_completion_tokens is too large")
    r = post(server, COMPLETIONS, {"model": "m", "prompt": [7] * 4000, "max_tokens": 500})
    assert_openai_error(r, 400, "maximum context length")


@pytest.mark.parametrize("temperature", [-0.5, "NaN", "Infinity"])
def test_bad_temperature(server, temperature):
    body = '{"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": %s}' % temperature
    r = raw_post(server, CHAT, body.encode())
    assert_openai_error(r, 400)


def test_out_of_range_sampling(server):
    for field, value in [("top_p", 0), ("top_p", 1.5), ("n", 0), ("presence_penalty", 3),
                         ("top_logprobs", 50), ("max_tokens", -1)]:
        body = {"model": "m", "messages": [{"role": "user", "content": "x"}], field: value}
        if field == "top_logprobs":
            body["logprobs"] = True
        assert_openai_error(post(server, CHAT, body), 400, field)


def test_out_of_vocabulary(server):
    assert_openai_error(post(server, "/generate", {"input_ids": [1, 2, 999999]}), 400, "out-of-vocabulary")
    r = post(server, COMPLETIONS, {"model": "m", "prompt": "x", "logit_bias": {"999999": 5}})
    assert_openai_error(r, 400, "out-of-vocabulary")


def test_ten_megabyte_body(server):
    body = b'{"model": "m", "prompt": "' + b"a" * (10 << 20) + b'"}'
    try:
        r = raw_post(server, COMPLETIONS, body)
    except requests.ConnectionError:
        pytest.fail("the server closed the connection instead of answering 413")
    assert_openai_error(r, 413)


def test_unknown_route(server):
    r = requests.get(server.url("/v1/nothing-here"), timeout=10)
    assert_openai_error(r, 404)
    r = requests.get(server.url("/v1/chat/completions"), timeout=10)
    assert r.status_code == 405


def test_client_error_types(client):
    import openai

    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}], max_tokens=9999)
    assert "max_completion_tokens is too large" in str(e.value)
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


DEEP = 100_000
NESTED = "[" * DEEP + "]" * DEEP  # a JSON value 100k levels deep


@pytest.mark.parametrize("path,body", [
    ("/generate", '{"input_ids": %s}' % NESTED),
    ("/generate", '{"input_ids": [1, %s]}' % NESTED),
    ("/generate", '{"text": "x", "sampling_params": {"stop_token_ids": %s}}' % NESTED),
    ("/detokenize", '{"tokens": %s}' % NESTED),
    ("/detokenize", '{"tokens": [1, %s]}' % NESTED),
    (COMPLETIONS, '{"model": "m", "prompt": %s}' % NESTED),
    (CHAT, '{"model": "m", "messages": [{"role": "user", "content": %s}]}' % NESTED),
    (CHAT, '{"model": "m", "messages": [{"role": "user", "content": "x", "name": %s}]}' % NESTED),
    (CHAT, '{"model": "m", "messages": [{"role": "assistant", "content": "x", "tool_calls": %s}]}'
     % NESTED),
    (CHAT, '{"model": "m", "messages": [{"role": "user", "content": "x"}], "chat_template_kwargs": '
     '{"a": %s}}' % NESTED),
    (CHAT, '{"model": "m", "messages": [{"role": "user", "content": "x"}], "x": '
     + '{"a": ' * DEEP + "1" + "}" * DEEP + "}"),
])
def test_deeply_nested_json(server, path, body):
    r = raw_post(server, path, body.encode())
    assert_openai_error(r, 400, "nested")


def test_nesting_within_the_limit(server):
    # 60 levels: parsed, then refused for its type like any wrong value.
    nested = "[" * 60 + "1" + "]" * 60
    r = raw_post(server, "/generate", ('{"input_ids": [%s]}' % nested).encode())
    assert_openai_error(r, 400, "input_ids")
    body = '{"model": "m", "messages": [{"role": "user", "content": "x"}], "chat_template_kwargs": {"a": %s}}'
    r = raw_post(server, CHAT, (body % nested).encode())
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("path,fields,param", [
    (CHAT, '"temperature": 1e400', "temperature"),
    (CHAT, '"top_p": -1e400', "top_p"),
    (CHAT, '"max_tokens": 1e400', "max_tokens"),
    (CHAT, '"seed": 1e999', "seed"),
    (CHAT, '"presence_penalty": 1e400', "presence_penalty"),
    (CHAT, '"logit_bias": {"5": 1e400}', "logit_bias.5"),
    (COMPLETIONS, '"frequency_penalty": 2e308', "frequency_penalty"),
    ("/generate", '"sampling_params": {"temperature": 1e400}', "sampling_params.temperature"),
    ("/generate", '"input_ids": [1, 1e400]', "input_ids[1]"),
])
def test_numbers_that_do_not_fit(server, path, fields, param):
    base = {CHAT: '"model": "m", "messages": [{"role": "user", "content": "x"}]',
            COMPLETIONS: '"model": "m", "prompt": "x"', "/generate": '"text": "x"'}[path]
    if path == "/generate" and fields.startswith('"input_ids"'):
        base = '"sampling_params": {}'
    r = raw_post(server, path, ("{%s, %s}" % (base, fields)).encode())
    assert_openai_error(r, 400, param)
    assert r.json()["error"]["param"] == param


def test_integers_that_do_not_fit(server):
    body = '{"model": "m", "messages": [{"role": "user", "content": "x"}], "seed": 18446744073709551615}'
    assert_openai_error(raw_post(server, CHAT, body.encode()), 400, "seed")
    body = '{"model": "m", "prompt": "x", "max_tokens": 123456789012345678901234567890}'
    assert_openai_error(raw_post(server, COMPLETIONS, body.encode()), 400, "max_tokens")
