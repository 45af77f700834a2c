"""`epserve router`: SGLang router's behaviour in front of small Python fake prefill/decode servers
that record what they receive (bootstrap injection, pairing, streaming pass-through, balancing,
health checks, failures), and in front of real `epserve serve` servers in the plain mode."""

import json
import os
import pathlib
import signal
import socket
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from conftest import BINARY, Server, free_port
from helpers import assert_openai_error, sse_events

INFERENCE_ROUTES = ("/generate", "/v1/chat/completions", "/v1/completions")


class FakeWorker:
    """A fake epserve server: records the JSON bodies of the inference routes and answers like
    epserve (decode: a text, or an SSE stream of three events; prefill: meta_info with logprobs).
    Its behaviour is switched by attributes: `status` (an error status to answer), `healthy`,
    `load` (for GET /get_load), `die_mid_stream`, `hold_stream` (an Event the stream waits for
    after its first event)."""

    def __init__(self, role):
        self.role = role
        self.received = []  # (path, body)
        self.auth = []  # (path, the Authorization headers of the request)
        self.status = 200
        self.healthy = True
        self.load = None
        self.load_polls = 0
        self.dp_size = None  # reported by GET /get_server_info when set (--dp-aware)
        self.die_mid_stream = False
        self.hold_stream = None
        self.released_in_time = None
        self.stall = None  # an Event a non-streamed decode answer waits for
        self.answered = 0
        self.disconnected = False
        self.lock = threading.Lock()
        worker = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def send_json(self, status, body):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                with worker.lock:
                    worker.auth.append((self.path, self.headers.get_all("Authorization") or []))
                if self.path == "/health":
                    self.send_json(200 if worker.healthy else 503, {})
                elif self.path == "/health_generate":
                    self.send_json(200, {})
                elif self.path == "/get_load":
                    worker.load_polls += 1
                    if worker.load is None:
                        self.send_json(404, {"error": {"message": "no route"}})
                    elif isinstance(worker.load, list):  # SGLang today: per DP rank
                        self.send_json(200, [{"dp_rank": i, "num_tokens": n}
                                             for i, n in enumerate(worker.load)])
                    else:
                        self.send_json(200, {"load": worker.load})
                elif self.path in ("/v1/models", "/get_model_info", "/get_server_info"):
                    info = {"role": worker.role, "path": self.path}
                    if worker.dp_size is not None and self.path == "/get_server_info":
                        info["dp_size"] = worker.dp_size
                    self.send_json(200, info)
                else:
                    self.send_json(404, {"error": {"message": "no route"}})

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                body = json.loads(raw) if raw else {}
                with worker.lock:
                    worker.received.append((self.path, body))
                    worker.auth.append((self.path, self.headers.get_all("Authorization") or []))
                if self.path == "/flush_cache":
                    self.send_json(200, {})
                    return
                if worker.status != 200:
                    self.send_json(worker.status, {"error": {"message": f"{worker.role} failed",
                                                             "type": "server_error",
                                                             "param": None, "code": None}})
                    return
                if worker.role == "prefill":
                    if worker.stall is not None:
                        worker.stall.wait(30)
                    self.send_json(200, {"text": "", "meta_info": {
                        "input_token_logprobs": [[-1.0, 1, None]]}})
                elif body.get("stream"):
                    self.stream(body)
                else:
                    if worker.stall is not None:
                        # Wait, noticing a client that closes the connection meanwhile.
                        self.connection.settimeout(0.05)
                        while not worker.stall.is_set():
                            try:
                                if self.connection.recv(1, socket.MSG_PEEK) == b"":
                                    worker.disconnected = True
                                    return
                            except (socket.timeout, BlockingIOError):
                                pass
                        self.connection.settimeout(None)
                    worker.answered += 1
                    self.send_json(200, {"text": "decoded", "meta_info": {
                        "room": body.get("bootstrap_room"),
                        "input_token_logprobs": [[-2.0, 2, None]]}})

            def chunk(self, data):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()

            def stream(self, body):
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for i in range(3):
                    event = {"text": f"t{i}", "index": i, "meta_info": {
                        "input_token_logprobs": [[-2.0, 2, None]]}}
                    self.chunk(b"data: " + json.dumps(event).encode() + b"\n\n")
                    if i == 0 and worker.hold_stream is not None:
                        worker.released_in_time = worker.hold_stream.wait(20)
                    if i == 0 and worker.die_mid_stream:
                        self.close_connection = True
                        self.wfile.flush()
                        self.connection.shutdown(2)
                        return
                self.chunk(b"data: [DONE]\n\n")
                self.wfile.write(b"0\r\n\r\n")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def inference_bodies(self):
        with self.lock:
            return [b for p, b in self.received if p in INFERENCE_ROUTES]

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class Router:
    """One `epserve router` process (quick health checks and retries unless told otherwise)."""

    FAST = ["--health-check-interval-secs", "1", "--health-failure-threshold", "1",
            "--health-success-threshold", "1", "--health-check-timeout-secs", "1",
            "--worker-startup-check-interval", "1", "--retry-initial-backoff-ms", "1",
            "--retry-max-backoff-ms", "5", "--request-timeout-secs", "30"]

    def __init__(self, args, fast=True):
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.NamedTemporaryFile(prefix="epserve-router-", suffix=".log", delete=False)
        cmd = [BINARY, "router", "--port", str(self.port)] + (self.FAST if fast else []) + args
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while time.time() < deadline:
            assert self.proc.poll() is None, self.output()
            try:
                if requests.get(self.url("/health"), timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise RuntimeError("router did not start:\n" + self.output())

    def url(self, path):
        return self.base_url + path

    def output(self):
        self.log.flush()
        return pathlib.Path(self.log.name).read_text(errors="replace")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)
        return self.proc.returncode


@pytest.fixture
def fakes():
    made = []

    def make(role, n):
        workers = [FakeWorker(role) for _ in range(n)]
        made.extend(workers)
        return workers

    yield make
    for w in made:
        w.stop()


@pytest.fixture
def router():
    made = []

    def make(args, **kwargs):
        r = Router(args, **kwargs)
        made.append(r)
        return r

    yield make
    for r in made:
        assert r.stop() == 0, r.output()


def pd_args(prefills, decodes, policy="round_robin", prefill_ports=None):
    args = ["--pd-disaggregation", "--policy", policy]
    for i, p in enumerate(prefills):
        args += ["--prefill", p.url] + ([str(prefill_ports[i])] if prefill_ports and prefill_ports[i] else [])
    for d in decodes:
        args += ["--decode", d.url]
    return args


def wait_until(condition, what, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_pd_injects_bootstrap_and_pairs_one_prefill_with_one_decode(fakes, router):
    prefills, decodes = fakes("prefill", 2), fakes("decode", 2)
    r = router(pd_args(prefills, decodes, prefill_ports=[8998, None]))
    rooms = []
    for i in range(4):
        resp = requests.post(r.url("/generate"), json={"text": f"hi {i}", "sampling_params": {}},
                             timeout=30)
        assert resp.status_code == 200, resp.text
        assert resp.json()["text"] == "decoded"  # the client gets decode's answer
        rooms.append(resp.json()["meta_info"]["room"])
    wait_until(lambda: sum(len(p.inference_bodies()) for p in prefills) == 4, "prefill requests")
    # Round robin on each side: every server got two of the four.
    for w in prefills + decodes:
        assert len(w.inference_bodies()) == 2
    for p, port in zip(prefills, [8998, None]):
        for body in p.inference_bodies():
            assert body["bootstrap_host"] == "127.0.0.1"
            assert body["bootstrap_port"] == port  # null when --prefill has no port
            assert isinstance(body["bootstrap_room"], int) and 0 <= body["bootstrap_room"] < 2**63
            assert body["text"].startswith("hi ")
    # Each request went to exactly one prefill and one decode server, with the same fields.
    for room in rooms:
        seen_p = [b for p in prefills for b in p.inference_bodies() if b["bootstrap_room"] == room]
        seen_d = [b for d in decodes for b in d.inference_bodies() if b["bootstrap_room"] == room]
        assert len(seen_p) == 1 and len(seen_d) == 1
        assert seen_p[0] == seen_d[0]
    assert len(set(rooms)) == 4


def test_pd_pairs_concurrent_streams(fakes, router):
    from concurrent.futures import ThreadPoolExecutor

    prefills, decodes = fakes("prefill", 2), fakes("decode", 2)
    r = router(pd_args(prefills, decodes))

    def one(i):
        with requests.post(r.url("/generate"), json={"text": f"c{i}", "stream": True}, stream=True,
                           timeout=60) as resp:
            assert resp.status_code == 200
            return [e if e == "[DONE]" else e["text"] for e in sse_events(resp)]

    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(one, range(64)))
    assert all(x == ["t0", "t1", "t2", "[DONE]"] for x in results)
    sent_p = {b["bootstrap_room"]: b["text"] for p in prefills for b in p.inference_bodies()}
    sent_d = {b["bootstrap_room"]: b["text"] for d in decodes for b in d.inference_bodies()}
    assert len(sent_d) == 64 and sent_p == sent_d


@pytest.mark.parametrize("route,body,n", [
    ("/generate", {"text": ["a", "b", "c"]}, 3),
    ("/generate", {"input_ids": [[1, 2], [3]]}, 2),
    # A string text beside a batch of ids: the ids make the batch (not a 500 on text[0]).
    ("/generate", {"text": "a", "input_ids": [[1, 2], [3]]}, 2),
    ("/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 2}, 2),
    ("/v1/completions", {"model": "m", "prompt": ["a", "b"]}, 2),
    ("/v1/completions", {"model": "m", "prompt": [1, 2, 3]}, 0),
])
def test_pd_batches_get_one_room_per_item(fakes, router, route, body, n):
    prefills, decodes = fakes("prefill", 1), fakes("decode", 1)
    r = router(pd_args(prefills, decodes, prefill_ports=[9001]))
    resp = requests.post(r.url(route), json=body, timeout=30)
    assert resp.status_code == 200, resp.text
    (sent,) = decodes[0].inference_bodies()
    if n == 0:
        assert isinstance(sent["bootstrap_room"], int) and sent["bootstrap_port"] == 9001
    else:
        assert sent["bootstrap_host"] == ["127.0.0.1"] * n
        assert sent["bootstrap_port"] == [9001] * n
        assert len(set(sent["bootstrap_room"])) == n


def test_pd_stream_passes_through_as_it_arrives(fakes, router):
    prefills, decodes = fakes("prefill", 1), fakes("decode", 1)
    decodes[0].hold_stream = threading.Event()
    r = router(pd_args(prefills, decodes))
    with requests.post(r.url("/generate"), json={"text": "x", "stream": True}, stream=True,
                       timeout=30) as resp:
        assert resp.status_code == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        lines = resp.iter_lines()
        first = next(line for line in lines if line)
        # The first event reached the client while decode still held the rest back.
        assert json.loads(first[len(b"data: "):])["text"] == "t0"
        decodes[0].hold_stream.set()
        rest = [line for line in lines if line]
    assert decodes[0].released_in_time is True
    assert [json.loads(x[6:])["text"] for x in rest[:-1]] == ["t1", "t2"] and rest[-1] == b"data: [DONE]"


def test_pd_stream_does_not_wait_for_the_prefill_answer(fakes, router):
    # As SGLang's router: without logprobs a stream passes decode's events on at once; the
    # prefill's answer (after its KV transfer) is only drained.
    (p,), (d,) = fakes("prefill", 1), fakes("decode", 1)
    p.stall = threading.Event()
    r = router(pd_args([p], [d]))
    first = []

    def read():
        with requests.post(r.url("/generate"), json={"text": "hi", "stream": True},
                           stream=True, timeout=60) as resp:
            for line in resp.iter_lines():
                if line.startswith(b"data: "):
                    first.append(line)
                    return
    reader = threading.Thread(target=read)
    reader.start()
    wait_until(lambda: first, "decode's first event while the prefill still holds its answer")
    p.stall.set()
    reader.join(timeout=30)


def test_pd_return_logprob_merges_prefill_input_logprobs(fakes, router):
    prefills, decodes = fakes("prefill", 1), fakes("decode", 1)
    r = router(pd_args(prefills, decodes))
    resp = requests.post(r.url("/generate"), json={"text": "x", "return_logprob": True}, timeout=30)
    assert resp.status_code == 200, resp.text
    assert resp.json()["meta_info"]["input_token_logprobs"] == [[-1.0, 1, None], [-2.0, 2, None]]
    with requests.post(r.url("/generate"), json={"text": "x", "return_logprob": True, "stream": True},
                       stream=True, timeout=30) as s:
        events = sse_events(s)
    assert events[-1] == "[DONE]"
    for e in events[:-1]:
        assert e["meta_info"]["input_token_logprobs"] == [[-1.0, 1, None], [-2.0, 2, None]]
    # A failed prefill is the client's error when its answer is needed.
    prefills[0].status = 500
    resp = requests.post(r.url("/generate"), json={"text": "x", "return_logprob": True}, timeout=30)
    assert_openai_error(resp, 500, "Prefill server error (500)")


def test_pd_decode_errors_reach_the_client_and_retryable_ones_are_retried(fakes, router):
    prefills, decodes = fakes("prefill", 1), fakes("decode", 1)
    r = router(pd_args(prefills, decodes) + ["--retry-max-retries", "3", "--disable-circuit-breaker"])
    decodes[0].status = 400  # not retried; decode's own body and status
    resp = requests.post(r.url("/generate"), json={"text": "x"}, timeout=30)
    assert resp.status_code == 400 and resp.json()["error"]["message"] == "decode failed"
    assert len(decodes[0].inference_bodies()) == 1
    decodes[0].status = 503  # retried on a freshly chosen pair, three attempts in all
    resp = requests.post(r.url("/generate"), json={"text": "x"}, timeout=30)
    assert resp.status_code == 503
    assert len(decodes[0].inference_bodies()) == 4
    rooms = {b["bootstrap_room"] for b in decodes[0].inference_bodies()[1:]}
    assert len(rooms) == 3


def test_pd_failed_prefill_is_the_clients_error_at_once(fakes, router):
    prefills, decodes = fakes("prefill", 1), fakes("decode", 1)
    r = router(pd_args(prefills, decodes) + ["--disable-retries"])
    prefills[0].status = 500
    # The decode server would wait for KV that never comes; the client hears of the prefill failure
    # without waiting for it, and the decode request is closed.
    decodes[0].stall = threading.Event()
    resp = requests.post(r.url("/generate"), json={"text": "x"}, timeout=30)
    assert_openai_error(resp, 500, "Prefill server error (500)")
    assert decodes[0].answered == 0
    wait_until(lambda: decodes[0].disconnected, "the decode request to be closed")
    decodes[0].stall.set()
    prefills[0].stop()  # unreachable: 502
    resp = requests.post(r.url("/v1/completions"), json={"model": "m", "prompt": "x"}, timeout=30)
    assert_openai_error(resp, 502, "Prefill server error")


def test_pd_decode_dying_mid_stream_ends_the_stream_with_an_error(fakes, router):
    prefills, decodes = fakes("prefill", 1), fakes("decode", 1)
    decodes[0].die_mid_stream = True
    r = router(pd_args(prefills, decodes))
    with requests.post(r.url("/v1/completions"), json={"model": "m", "prompt": "x", "stream": True},
                       stream=True, timeout=30) as resp:
        assert resp.status_code == 200
        events = sse_events(resp)
    assert events[0]["text"] == "t0"
    assert "error" in events[-1] and "Decode server error" in events[-1]["error"]["message"]


def test_pd_unreachable_decode_is_a_502_and_its_circuit_opens(fakes, router):
    prefills, decodes = fakes("prefill", 2), fakes("decode", 2)
    r = router(pd_args(prefills, decodes) + ["--disable-retries", "--cb-failure-threshold", "1",
                                              "--cb-timeout-duration-secs", "600",
                                              "--health-check-interval-secs", "600"])
    decodes[0].stop()
    codes = [requests.post(r.url("/generate"), json={"text": "x"}, timeout=30).status_code
             for _ in range(4)]
    # The first request meets the dead server (no retries): 502. The failure opens the circuits
    # of its pair (as SGLang's router records it on both), and the rest go to the live servers.
    assert codes == [502, 200, 200, 200], codes
    assert len(decodes[1].inference_bodies()) == 3


def test_pd_retries_reach_the_live_decode_server(fakes, router):
    prefills, decodes = fakes("prefill", 1), fakes("decode", 2)
    r = router(pd_args(prefills, decodes) + ["--health-check-interval-secs", "600"])
    decodes[1].stop()
    for _ in range(4):
        resp = requests.post(r.url("/v1/chat/completions"),
                             json={"model": "m", "messages": [{"role": "user", "content": "x"}]},
                             timeout=30)
        assert resp.status_code == 200, resp.text


def test_health_checks_take_a_server_out_and_back(fakes, router):
    prefills, decodes = fakes("prefill", 1), fakes("decode", 2)
    r = router(pd_args(prefills, decodes))
    assert requests.get(r.url("/readiness"), timeout=5).json()["decode"] == {"healthy": 2, "total": 2}
    decodes[0].healthy = False
    wait_until(lambda: requests.get(r.url("/readiness"), timeout=5).json()["decode"]["healthy"] == 1,
               "the failing server to leave the rotation")
    before = len(decodes[0].inference_bodies())
    for _ in range(4):
        assert requests.post(r.url("/generate"), json={"text": "x"}, timeout=30).status_code == 200
    assert len(decodes[0].inference_bodies()) == before
    decodes[0].healthy = True
    wait_until(lambda: requests.get(r.url("/readiness"), timeout=5).json()["decode"]["healthy"] == 2,
               "the server to come back")
    for _ in range(4):
        assert requests.post(r.url("/generate"), json={"text": "x"}, timeout=30).status_code == 200
    assert len(decodes[0].inference_bodies()) == before + 2
    # No healthy decode server: 503 with an OpenAI-style body.
    for d in decodes:
        d.healthy = False
    wait_until(lambda: requests.get(r.url("/readiness"), timeout=5).status_code == 503, "not ready")
    assert_openai_error(requests.post(r.url("/generate"), json={"text": "x"}, timeout=30), 503,
                        "No available decode workers")
    assert requests.get(r.url("/health"), timeout=5).status_code == 200  # the router's liveness


@pytest.mark.parametrize("loads", [(100, 0), ([60, 40], [0, 3])])
def test_power_of_two_prefers_the_less_loaded_server(fakes, router, loads):
    prefills, decodes = fakes("prefill", 1), fakes("decode", 2)
    decodes[0].load, decodes[1].load = loads
    r = router(pd_args(prefills, decodes, policy="power_of_two"))
    wait_until(lambda: all(d.load_polls > 0 for d in decodes), "the load monitor")
    for _ in range(6):
        assert requests.post(r.url("/generate"), json={"text": "x"}, timeout=30).status_code == 200
    assert len(decodes[0].inference_bodies()) == 0 and len(decodes[1].inference_bodies()) == 6


def test_cache_aware_sends_a_shared_prefix_to_the_same_worker(fakes, router):
    workers = fakes("regular", 2)
    r = router(["--worker-urls"] + [w.url for w in workers])  # cache_aware: SGLang's default
    prefixes = ["You are a helpful assistant. Answer briefly. ", "Translate into French: "]
    for i in range(3):
        for prefix in prefixes:
            resp = requests.post(r.url("/generate"), json={"text": prefix + f"question {i}"}, timeout=30)
            assert resp.status_code == 200, resp.text
    owners = [{w.url for w in workers for b in w.inference_bodies() if b["text"].startswith(p)}
              for p in prefixes]
    # Each prefix stayed on one worker, and the second went to the worker with the smaller tree.
    assert all(len(o) == 1 for o in owners) and owners[0] != owners[1], owners
    # Chat: the system and user texts are what is matched.
    chat = {"model": "m", "messages": [{"role": "system", "content": prefixes[1]},
                                       {"role": "user", "content": "question 9"}]}
    assert requests.post(r.url("/v1/chat/completions"), json=chat, timeout=30).status_code == 200
    (owner,) = [w.url for w in workers if any("messages" in b for b in w.inference_bodies())]
    assert {owner} == owners[1]


def test_info_routes_health_generate_and_flush(fakes, router):
    prefills, decodes = fakes("prefill", 1), fakes("decode", 1)
    r = router(pd_args(prefills, decodes))
    for path in ("/v1/models", "/get_model_info", "/get_server_info"):
        resp = requests.get(r.url(path), timeout=5)
        assert resp.status_code == 200 and resp.json() == {"role": "prefill", "path": path}
    assert requests.get(r.url("/health_generate"), timeout=5).status_code == 200
    assert requests.post(r.url("/flush_cache"), timeout=5).status_code == 200
    assert_openai_error(requests.post(r.url("/generate"), data="not json", timeout=5), 400)


def held_burst(r, worker, n):
    """One request that holds the only token (its worker stalls), then `n` more at once. Returns
    the burst's responses once each has either been answered by the router or reached the worker
    (then the worker is let go)."""
    worker.stall = threading.Event()
    body = {"text": "hi", "sampling_params": {"max_new_tokens": 2}}
    responses = []
    lock = threading.Lock()

    def one():
        resp = requests.post(r.url("/generate"), json=body, timeout=60)
        with lock:
            responses.append(resp)

    first = threading.Thread(target=one)
    first.start()
    wait_until(lambda: len(worker.inference_bodies()) == 1, "the first request at the worker")
    burst = [threading.Thread(target=one) for _ in range(n)]
    for t in burst:
        t.start()

    def settled():
        with lock:
            answered = len(responses)
        return answered + len(worker.inference_bodies()) - 1 == n
    wait_until(settled, "the burst to be answered or at the worker")
    worker.stall.set()
    for t in [first] + burst:
        t.join(timeout=60)
    return responses


def test_concurrency_limiter_answers_429_when_no_token_and_no_queue_place(fakes, router):
    # SGLang's token bucket: 1 token, refilled at 1 per second, no queue. While one request holds
    # the token, a burst of five can get at most what the refill brings (one per second): the
    # others are 429s that never reach the worker.
    (w,) = fakes("decode", 1)
    r = router(["--worker-urls", w.url, "--max-concurrent-requests", "1",
                "--rate-limit-tokens-per-second", "1", "--queue-size", "0"])
    responses = held_burst(r, w, 5)
    rejected = [x for x in responses if x.status_code == 429]
    assert rejected, [x.status_code for x in responses]
    for x in rejected:
        assert_openai_error(x, 429, "Too many requests")
    assert all(x.status_code in (200, 429) for x in responses)
    assert len(w.inference_bodies()) == len(responses) - len(rejected)
    # The tokens are back: the next request passes.
    assert requests.post(r.url("/generate"), json={"text": "x"}, timeout=30).status_code == 200


def test_concurrency_limiter_queue_wait_times_out_with_408(fakes, router):
    # With a queue, the requests that find no token wait (in order) for one; those that get none
    # within --queue-timeout-secs are 408s. One token per second cannot serve a burst of six
    # within one second.
    (w,) = fakes("decode", 1)
    r = router(["--worker-urls", w.url, "--max-concurrent-requests", "1",
                "--rate-limit-tokens-per-second", "1", "--queue-size", "10",
                "--queue-timeout-secs", "1"])
    responses = held_burst(r, w, 6)
    timed_out = [x for x in responses if x.status_code == 408]
    assert timed_out, [x.status_code for x in responses]
    for x in timed_out:
        assert_openai_error(x, 408, "in the router's queue")
    assert all(x.status_code in (200, 408) for x in responses)
    assert len(w.inference_bodies()) == len(responses) - len(timed_out)


def test_concurrency_limiter_holds_a_streams_token_until_its_end(fakes, router):
    # The token of a stream goes back when its last chunk is sent, not when its headers are:
    # while one stream is held open, requests one after another find no token (but for what the
    # refill of one per second brings).
    (w,) = fakes("decode", 1)
    w.hold_stream = threading.Event()
    r = router(["--worker-urls", w.url, "--max-concurrent-requests", "1",
                "--rate-limit-tokens-per-second", "1", "--queue-size", "0"])
    body = {"text": "hi", "stream": True}
    held = requests.post(r.url("/generate"), json=body, stream=True, timeout=60)
    assert held.status_code == 200
    next(held.iter_lines())  # the first event: the worker now holds the stream
    statuses = []
    for _ in range(5):
        with requests.post(r.url("/generate"), json=body, stream=True, timeout=60) as resp:
            statuses.append(resp.status_code)
    assert 429 in statuses, statuses
    w.hold_stream.set()
    held.close()


def test_concurrency_limiter_is_off_with_a_non_positive_limit(fakes, router):
    (w,) = fakes("decode", 1)
    r = router(["--worker-urls", w.url, "--max-concurrent-requests", "-1",
                "--queue-size", "0"])
    assert all(x.status_code == 200 for x in held_burst(r, w, 5))


def test_api_key_is_required_from_clients_and_sent_to_the_workers(fakes, router):
    prefills, decodes = fakes("prefill", 1), fakes("decode", 1)
    r = router(pd_args(prefills, decodes) + ["--api-key", "sekrit"])
    key = {"Authorization": "Bearer sekrit"}
    body = {"text": "hi", "sampling_params": {"max_new_tokens": 2}}
    # Inference and /flush_cache need the key; nothing reaches the workers without it.
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "sekrit"}):
        for path in INFERENCE_ROUTES:
            assert_openai_error(requests.post(r.url(path), json=body, headers=headers, timeout=10),
                                401, "Incorrect API key")
        assert_openai_error(requests.post(r.url("/flush_cache"), headers=headers, timeout=10), 401)
    assert not prefills[0].inference_bodies() and not decodes[0].inference_bodies()
    assert requests.post(r.url("/generate"), json=body, headers=key, timeout=30).status_code == 200
    assert requests.post(r.url("/flush_cache"), headers=key, timeout=30).status_code == 200
    # The health, info and model routes are open; the router sends its key on everything it asks.
    assert requests.get(r.url("/health"), timeout=10).status_code == 200
    assert requests.get(r.url("/v1/models"), timeout=10).status_code == 200
    for w in prefills + decodes:
        paths = {p for p, _ in w.auth}
        assert {"/health", "/generate", "/flush_cache"} <= paths, paths
        for path, values in w.auth:
            assert values == ["Bearer sekrit"], (w.role, path, values)


def test_without_api_key_the_clients_authorization_passes_through(fakes, router):
    (w,) = fakes("decode", 1)
    r = router(["--worker-urls", w.url])
    requests.post(r.url("/generate"), json={"text": "hi"},
                  headers={"Authorization": "Bearer client"}, timeout=30)
    assert ("/generate", ["Bearer client"]) in w.auth and ("/health", []) in w.auth


def test_dp_aware_sends_each_request_to_one_dp_rank(fakes, router):
    """--dp-aware as SGLang's router: each worker's /get_server_info gives its dp_size (asked with
    the --api-key), the worker stands for that many "URL@RANK" workers, and every request goes
    to URL with data_parallel_rank RANK (the client's own value replaced)."""
    a, b = fakes("decode", 2)
    a.dp_size, b.dp_size = 2, 3
    r = router(["--worker-urls", a.url, b.url, "--policy", "round_robin", "--dp-aware",
                "--api-key", "sekrit"])
    key = {"Authorization": "Bearer sekrit"}
    bodies = {"/generate": {"text": "hi", "data_parallel_rank": 7},
              "/v1/completions": {"model": "m", "prompt": "hi"},
              "/v1/chat/completions": {"model": "m", "messages": [{"role": "user", "content": "hi"}]}}
    for i in range(10):
        path = list(bodies)[i % 3]
        resp = requests.post(r.url(path), json=bodies[path], headers=key, timeout=30)
        assert resp.status_code == 200, resp.text
    ranks = {w.url: [body.get("data_parallel_rank") for body in w.inference_bodies()]
             for w in (a, b)}
    # Round robin over a@0, a@1, b@0, b@1, b@2: each rank of each server twice.
    assert sorted(ranks[a.url]) == [0, 0, 1, 1], ranks
    assert sorted(ranks[b.url]) == [0, 0, 1, 1, 2, 2], ranks
    for w in (a, b):
        assert ("/get_server_info", ["Bearer sekrit"]) in w.auth, w.auth


def test_dp_aware_needs_dp_size_from_every_worker(fakes):
    a, b = fakes("decode", 2)
    a.dp_size = 2  # b reports none
    p = subprocess.run([BINARY, "router", "--worker-urls", a.url, b.url, "--dp-aware", "--port",
                        str(free_port()), "--worker-startup-check-interval", "1"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode != 0 and "no dp_size" in p.stderr and b.url in p.stderr, p.stderr


@pytest.mark.parametrize("args,needle", [
    (["--pd-disaggregation", "--prefill", "http://127.0.0.1:1", "--decode", "http://127.0.0.1:2",
      "--dp-aware"], "--dp-aware with --pd-disaggregation is not implemented"),
    (["--worker-urls", "http://127.0.0.1:1", "--policy", "least_load"], "least_load"),
    (["--worker-urls", "http://127.0.0.1:1", "--queue-size", "-1"],
     "--queue-size must not be negative"),
    (["--pd-disaggregation", "--prefill", "http://127.0.0.1:1"], "requires --decode"),
    (["--pd-disaggregation", "--prefill", "http://127.0.0.1:1", "x", "--decode", "http://h:2"],
     "invalid bootstrap port"),
    (["--worker-urls", "https://127.0.0.1:1"], "only http://"),
])
def test_refused_flags(args, needle):
    p = subprocess.run([BINARY, "router"] + args, capture_output=True, text=True, timeout=30)
    assert p.returncode != 0 and needle in p.stderr, p.stderr


def test_startup_waits_for_workers_and_gives_up(fakes):
    (w,) = fakes("decode", 1)
    w.healthy = False
    p = subprocess.run([BINARY, "router", "--worker-urls", w.url, "--port", str(free_port()),
                        "--worker-startup-timeout-secs", "1", "--worker-startup-check-interval", "1"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode != 0 and "not healthy" in p.stderr and w.url in p.stderr, p.stderr
    # SIGTERM while it waits stops it at once.
    proc = subprocess.Popen([BINARY, "router", "--worker-urls", w.url, "--port", str(free_port())],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0, proc.stderr.read()


def test_plain_mode_over_two_epserve_servers(router):
    servers = [Server(["--served-model-name", "tiny-moe"]) for _ in range(2)]
    try:
        r = router(["--worker-urls"] + [s.base_url for s in servers])
        body = {"text": "The capital of France is", "sampling_params": {"max_new_tokens": 8,
                                                                         "temperature": 0}}
        direct = requests.post(servers[0].url("/generate"), json=body, timeout=60).json()["text"]
        for _ in range(2):
            resp = requests.post(r.url("/generate"), json=body, timeout=60)
            assert resp.status_code == 200 and resp.json()["text"] == direct
        stream = requests.post(r.url("/v1/completions"), json={
            "model": "tiny-moe", "prompt": "The capital of France is", "max_tokens": 8,
            "temperature": 0, "stream": True}, stream=True, timeout=60)
        events = sse_events(stream)
        assert events[-1] == "[DONE]" and "".join(e["choices"][0]["text"] for e in events[:-1]) == direct
        assert requests.get(r.url("/v1/models"), timeout=10).json()["data"][0]["id"] == "tiny-moe"
    finally:
        for s in servers:
            s.stop()
