"""What SGLang's clients expect of the OpenAI and native routes, beyond OpenAI's schema: chat chunk
shapes, continuous usage stats, requests ended by /abort_request, max_tokens 0, chat text parts,
EOS ids from generation_config.json, and text streamed as tokens are made."""

import json
import pathlib
import shutil
import threading

import pytest
import requests

from conftest import MODEL, Server
from helpers import post, sse_events

CHAT = [{"role": "user", "content": "Tell me a story"}]


def stream_events(server, path, body):
    r = post(server, path, dict(body, stream=True), stream=True)
    assert r.status_code == 200, r.text
    events = sse_events(r)
    assert events[-1] == "[DONE]"
    return events[:-1]


def test_chat_stream_chunk_shapes(server, client, openai_schema):
    events = stream_events(server, "/v1/chat/completions",
                           {"messages": CHAT, "max_tokens": 8, "temperature": 0, "ignore_eos": True})
    for e in events:
        openai_schema("CreateChatCompletionStreamResponse", e)
        assert "matched_stop" in e["choices"][0]
    deltas = [e["choices"][0]["delta"] for e in events]
    assert deltas[0] == {"role": "assistant", "content": "", "reasoning_content": None}
    assert deltas[-1] == {"content": None, "reasoning_content": None}
    assert events[-1]["choices"][0]["finish_reason"] == "length"
    for d in deltas[1:-1]:
        assert set(d) == {"content", "reasoning_content"} and isinstance(d["content"], str), d
        assert d["reasoning_content"] is None
    assert all(e["choices"][0]["finish_reason"] is None for e in events[:-1])
    # The openai client's consumers read reasoning_content on every chunk.
    for chunk in client.chat.completions.create(model="m", messages=CHAT, max_tokens=4, stream=True):
        assert chunk.choices[0].delta.reasoning_content is None


@pytest.mark.parametrize("path", ["/v1/completions", "/v1/chat/completions"])
def test_continuous_usage_stats(server, openai_schema, path):
    chat = path.endswith("chat/completions")
    body = {"max_tokens": 12, "temperature": 0, "ignore_eos": True, "n": 2,
            "stream_options": {"include_usage": True, "continuous_usage_stats": True}}
    body.update({"messages": CHAT} if chat else {"prompt": "Once upon a time"})
    events = stream_events(server, path, body)
    final = events[-1]
    assert final["choices"] == [] and final["usage"]["completion_tokens"] == 24
    seen = {}
    for e in events[:-1]:
        choice = e["choices"][0]
        has_text = bool(choice["delta"]["content"] if chat else choice["text"])
        if not has_text and (chat or choice["finish_reason"] is None):
            continue  # chat's role and finish chunks carry no usage, as in SGLang
        if chat:
            openai_schema("CreateChatCompletionStreamResponse", e)
        usage = e["usage"]
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
        assert usage["prompt_tokens"] == final["usage"]["prompt_tokens"]  # one prompt
        assert usage["completion_tokens"] > seen.get(choice["index"], 0)
        seen[choice["index"]] = usage["completion_tokens"]
    assert set(seen) == {0, 1} and all(v <= 12 for v in seen.values())
    if not chat:
        assert seen == {0: 12, 1: 12}  # the finish chunks carry the usage too


def run_and_abort(server, path, body, rid):
    """Sends `body` (not streamed) on a thread, aborts it by rid once it is in flight, returns the
    response."""
    result = {}
    thread = threading.Thread(target=lambda: result.update(r=post(server, path, body)))
    thread.start()
    while not post(server, "/abort_request", {"rid": rid}).json()["aborted"]:
        assert thread.is_alive(), result["r"].text
    thread.join(60)
    return result["r"]


LONG = {"temperature": 0, "ignore_eos": True}


def test_abort_request_answers_like_sglang(server):
    r = run_and_abort(server, "/v1/completions",
                      dict(LONG, prompt="Hi", max_tokens=3000, rid="abort-cmpl"), "abort-cmpl")
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["finish_reason"] == "abort"
    assert r.json()["usage"]["completion_tokens"] < 3000

    r = run_and_abort(server, "/v1/chat/completions",
                      dict(LONG, messages=CHAT, max_tokens=3000, rid="abort-chat"), "abort-chat")
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["finish_reason"] == "abort"
    assert isinstance(r.json()["choices"][0]["message"]["content"], str)

    r = run_and_abort(server, "/generate",
                      {"text": "Hi", "rid": "abort-gen",
                       "sampling_params": dict(LONG, max_new_tokens=3000)}, "abort-gen")
    assert r.status_code == 200, r.text
    meta = r.json()["meta_info"]
    assert meta["finish_reason"] == {"type": "abort", "message": "Aborted", "status_code": None,
                                     "err_type": None}
    assert meta["completion_tokens"] == len(r.json()["output_ids"]) < 3000


@pytest.mark.parametrize("path", ["/v1/completions", "/v1/chat/completions", "/generate"])
def test_aborted_stream_ends_with_finish_reason_abort(server, path):
    rid = "abort-stream-" + path.strip("/").replace("/", "-")
    if path == "/generate":
        body = {"text": "Hi", "sampling_params": dict(LONG, max_new_tokens=3000)}
    elif path == "/v1/completions":
        body = dict(LONG, prompt="Hi", max_tokens=3000)
    else:
        body = dict(LONG, messages=CHAT, max_tokens=3000)
    r = post(server, path, dict(body, stream=True, rid=rid), stream=True)
    assert r.status_code == 200, r.text
    lines = r.iter_lines()
    events = []
    for raw in lines:
        if raw:
            events.append(raw)
            if len(events) == 2:
                break
    assert post(server, "/abort_request", {"rid": rid}).json()["aborted"]
    payloads = [raw.decode()[len("data: "):] for raw in events + [raw for raw in lines if raw]]
    assert payloads[-1] == "[DONE]"
    last = json.loads(payloads[-2])
    assert "error" not in last, last
    if path == "/generate":
        assert last["meta_info"]["finish_reason"]["type"] == "abort"
    else:
        assert last["choices"][0]["finish_reason"] == "abort"


def test_max_tokens_zero(server):
    r = post(server, "/v1/completions", {"prompt": "Hi", "max_tokens": 0})
    assert r.status_code == 400 and "max_tokens must be positive" in r.text, r.text

    r = post(server, "/v1/chat/completions", {"messages": CHAT, "max_tokens": 0})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["choices"][0]["message"]["content"] == ""
    assert out["choices"][0]["finish_reason"] == "length"
    assert out["usage"]["completion_tokens"] == 0 and out["usage"]["prompt_tokens"] > 0

    # Native: a prefill-only request, e.g. to score a prompt.
    r = post(server, "/generate", {"text": "Score this prompt", "return_logprob": True,
                                   "logprob_start_len": 0, "sampling_params": {"max_new_tokens": 0}})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["output_ids"] == [] and out["text"] == ""
    assert out["meta_info"]["finish_reason"] == {"type": "length", "length": 0}
    assert out["meta_info"]["completion_tokens"] == 0
    logprobs = out["meta_info"]["input_token_logprobs"]
    assert len(logprobs) == out["meta_info"]["prompt_tokens"] and logprobs[1][0] is not None


def test_chat_text_parts_joined_with_a_space(server):
    """Both fixture templates take string content: SGLang joins text parts with one space."""
    def chat(content):
        r = post(server, "/v1/chat/completions", {
            "messages": [{"role": "user", "content": content}], "max_tokens": 6, "temperature": 0})
        assert r.status_code == 200, r.text
        return r.json()["usage"]["prompt_tokens"], r.json()["choices"][0]["message"]["content"]

    parts = chat([{"type": "text", "text": "Hello"}, {"type": "text", "text": "world"}])
    assert parts == chat("Hello world")
    assert parts[0] != chat("Helloworld")[0]


def greedy_ids(server, **params):
    body = {"text": "The weather today",
            "sampling_params": dict(max_new_tokens=16, temperature=0, **params)}
    r = post(server, "/generate", body)
    assert r.status_code == 200, r.text
    return r.json()


def test_eos_ids_of_generation_config_and_tokenizer_stop_generation(server, tmp_path):
    """SGLang stops on the EOS ids of config.json, generation_config.json and the tokenizer."""
    base = greedy_ids(server, ignore_eos=True)["output_ids"]
    config_eos = json.loads((pathlib.Path(MODEL) / "config.json").read_text())["eos_token_id"]
    limit = base.index(config_eos) if config_eos in base else len(base)
    assert limit >= 2, base
    token = base[limit - 1]
    first = base.index(token)
    vocab = json.loads((pathlib.Path(MODEL) / "tokenizer.json").read_text())["model"]["vocab"]
    spelling = next(k for k, v in vocab.items() if v == token)

    def edited(name, edit):
        model = tmp_path / name
        shutil.copytree(MODEL, model)
        path = model / edit[0]
        path.write_text(json.dumps(edit[1](json.loads(path.read_text()))))
        return Server(model=str(model))

    for name, edit in [
            ("generation_config", ("generation_config.json",
                                   lambda c: dict(c, eos_token_id=[config_eos, token]))),
            ("tokenizer", ("tokenizer_config.json", lambda c: dict(c, eos_token=spelling)))]:
        s = edited(name, edit)
        try:
            out = greedy_ids(s)
            assert out["output_ids"] == base[:first + 1], name
            assert out["meta_info"]["finish_reason"] == {"type": "stop", "matched": token}
            # ignore_eos ignores it, and every stop token id too (SGLang).
            out = greedy_ids(s, ignore_eos=True, stop_token_ids=[token])
            assert out["output_ids"] == base, name
        finally:
            assert s.stop() == 0, s.output()


def unfinished_utf8(data):
    try:
        data.decode("utf-8")
        return False
    except UnicodeDecodeError as e:
        return e.start == 0 and e.reason == "unexpected end of data"


def test_stream_carries_each_token_once_it_is_text(server):
    """Each chat chunk carries the text of its tokens as soon as their bytes are valid UTF-8: after
    every chunk, the text streamed so far is the decoded bytes of the tokens so far (logprobs give
    each chunk's tokens and bytes), short of an unfinished character at the end. Special tokens
    have no text."""
    events = stream_events(server, "/v1/chat/completions", {
        "messages": CHAT, "max_tokens": 48, "temperature": 0, "ignore_eos": True, "logprobs": True})
    data, text, steps = b"", "", 0
    for e in events[1:]:
        choice = e["choices"][0]
        if choice["logprobs"] is None:
            continue
        for t in choice["logprobs"]["content"]:
            steps += 1
            if not (t["token"].startswith("<|") and t["token"].endswith("|>")):
                data += bytes(t["bytes"])
        text += choice["delta"].get("content") or ""
        if text != data.decode("utf-8", "replace"):
            assert any(unfinished_utf8(data[-k:]) and data[:-k].decode("utf-8", "replace") == text
                       for k in (1, 2, 3)), (text, data)
    assert steps == 48
