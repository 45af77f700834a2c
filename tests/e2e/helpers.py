"""Small helpers shared by the end-to-end tests."""

import json
import re

import requests


def sse_events(response):
    """The `data:` payloads of a streamed response, parsed (the final [DONE] as the string)."""
    events = []
    for raw in response.iter_lines():
        if not raw:
            continue
        line = raw.decode("utf-8")
        assert line.startswith("data: "), line
        payload = line[len("data: "):]
        events.append(payload if payload == "[DONE]" else json.loads(payload))
    return events


def post(server, path, body, **kwargs):
    kwargs.setdefault("timeout", 60)
    return requests.post(server.url(path), json=body, **kwargs)


def tokenize(server, text, add_special_tokens=True):
    r = post(server, "/tokenize", {"prompt": text, "add_special_tokens": add_special_tokens})
    assert r.status_code == 200, r.text
    return r.json()["tokens"]


def assert_openai_error(response, status, needle=None):
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"message", "type", "param", "code"}, body
    assert isinstance(body["error"]["message"], str)
    if needle is not None:
        assert needle in body["error"]["message"], body


def metric(server, name):
    """The value of a label-carrying sample `name{...} value` on the server's /metrics, or None."""
    text = requests.get(server.url("/metrics"), timeout=30).text
    m = re.search(r"^" + re.escape(name) + r"\{[^}]*\} (\S+)$", text, re.M)
    return None if m is None else float(m.group(1))
