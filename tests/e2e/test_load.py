"""Load: 64 concurrent streaming clients for a bounded time (EPSERVE_LOAD_SECONDS, default 20;
the full run is 60), a quarter of the requests dropped mid-stream. No server error, every
completed stream well-formed, and afterwards nothing running and the KV cache holds no request's
tokens."""

import http.client
import json
import os
import random
import threading
import time

import requests

from helpers import sse_events

CLIENTS = 64
SECONDS = float(os.environ.get("EPSERVE_LOAD_SECONDS", "20"))


def request_body(rng):
    kind = rng.choice(["chat", "completion", "native"])
    tokens = rng.randint(4, 48)
    if kind == "chat":
        return "/v1/chat/completions", {
            "model": "m", "stream": True, "max_tokens": tokens, "temperature": rng.choice([0, 0.8]),
            "messages": [{"role": "user", "content": "client %d says hi" % rng.randint(0, 999)}]}
    if kind == "completion":
        return "/v1/completions", {"model": "m", "stream": True, "max_tokens": tokens,
                                   "prompt": "prompt number %d" % rng.randint(0, 999), "n": rng.choice([1, 2])}
    return "/generate", {"text": "native %d" % rng.randint(0, 999), "stream": True,
                         "sampling_params": {"max_new_tokens": tokens}}


def check_stream(path, events):
    assert events[-1] == "[DONE]", events[-3:]
    body = events[:-1]
    assert body, "no events"
    for e in body:
        assert "error" not in e, e
    if path == "/generate":
        assert body[-1]["meta_info"]["finish_reason"] is not None
        return
    finishes = {}
    for e in body:
        for c in e["choices"]:
            if c["finish_reason"] is not None:
                assert c["index"] not in finishes
                finishes[c["index"]] = c["finish_reason"]
    assert finishes and set(finishes.values()) <= {"stop", "length"}, finishes


def drop_mid_stream(server, path, body, rng):
    """Reads a few lines of a stream, then closes the socket as a client that goes away does."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        response = conn.getresponse()
        if response.status != 200:
            return f"{path}: HTTP {response.status}: {response.read()[:200]!r}"
        for _ in range(rng.randint(1, 3)):
            response.fp.readline()
    finally:
        conn.sock and conn.sock.close()
        conn.close()
    return None


def client(server, seed, deadline, stats, failures):
    rng = random.Random(seed)
    session = requests.Session()
    while time.time() < deadline:
        path, body = request_body(rng)
        try:
            if rng.random() < 0.25:
                body["max_tokens" if "max_tokens" in body else "sampling_params"] = (
                    2000 if "max_tokens" in body else {"max_new_tokens": 2000, "ignore_eos": True})
                if "max_tokens" in body:
                    body["ignore_eos"] = True
                error = drop_mid_stream(server, path, body, rng)
                if error:
                    failures.append(error)
                stats["dropped"] += 1
                continue
            with session.post(server.url(path), json=body, stream=True, timeout=60) as r:
                if r.status_code != 200:
                    failures.append(f"{path}: HTTP {r.status_code}: {r.text[:200]}")
                    continue
                check_stream(path, sse_events(r))
                stats["completed"] += 1
        except AssertionError as e:
            failures.append(f"{path}: malformed stream: {e}")
        except (requests.RequestException, OSError, json.JSONDecodeError) as e:
            failures.append(f"{path}: {type(e).__name__}: {e}")


def test_concurrent_streams_with_disconnects(server):
    deadline = time.time() + SECONDS
    stats = {"completed": 0, "dropped": 0}
    failures = []
    threads = [threading.Thread(target=client, args=(server, i, deadline, stats, failures))
               for i in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(SECONDS + 120)
    assert not any(t.is_alive() for t in threads), "a client hung"
    assert not failures, failures[:5]
    assert stats["completed"] > CLIENTS and stats["dropped"] > 0, stats

    # Afterwards: nothing running or queued, no KV pages held by requests.
    deadline = time.time() + 15
    while True:
        info = requests.get(server.url("/get_server_info"), timeout=10).json()
        state = info["internal_states"][0]
        idle = (state["num_running_reqs"] == 0 and state["num_queue_reqs"] == 0 and
                state["kv_used_tokens"] == 0 and info["num_requests_in_flight"] == 0)
        if idle or time.time() > deadline:
            break
        time.sleep(0.2)
    assert idle, (state, info["num_requests_in_flight"])
    metrics = requests.get(server.url("/metrics"), timeout=10).text
    aborted = [l for l in metrics.splitlines() if l.startswith("sglang:num_aborted_requests_total")]
    assert float(aborted[0].split()[-1]) > 0  # dropped clients were aborted, not run to the end
    print(f"load: {stats['completed']} streams completed, {stats['dropped']} dropped in {SECONDS:.0f} s")
