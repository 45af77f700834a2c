"""A second architecture and tokenizer family: the tiny DeepSeek-V3 fixture (MLA, its own chat
template, which writes the BOS token, and `thinking`). Usage counts follow the tokenizer."""

import pytest

from conftest import DEEPSEEK_MODEL as DEEPSEEK
from conftest import Server
from helpers import post


@pytest.fixture(scope="module")
def deepseek():
    s = Server(model=DEEPSEEK)
    yield s
    assert s.stop() == 0, s.output()


def test_completion_usage_counts_the_tokenizers_tokens(deepseek):
    tokens = post(deepseek, "/tokenize", {"prompt": "Hello there"}).json()["tokens"]
    r = post(deepseek, "/v1/completions", {"model": "m", "prompt": "Hello there", "max_tokens": 4})
    assert r.status_code == 200, r.text
    assert r.json()["usage"]["prompt_tokens"] == len(tokens)


def test_chat_through_the_deepseek_template(deepseek):
    r = post(deepseek, "/v1/chat/completions", {"model": "m", "max_tokens": 6, "temperature": 0,
                                                "messages": [{"role": "system", "content": "Be brief."},
                                                             {"role": "user", "content": "Hi"}]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["choices"][0]["message"]["role"] == "assistant"
    assert body["usage"]["prompt_tokens"] > 4
    thinking = post(deepseek, "/v1/chat/completions", {
        "model": "m", "max_tokens": 2, "messages": [{"role": "user", "content": "Hi"}],
        "chat_template_kwargs": {"thinking": True}})
    assert thinking.status_code == 200, thinking.text
