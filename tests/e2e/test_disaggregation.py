"""PD disaggregation: `epserve serve --disaggregation-mode prefill` and `... decode`, driven the way
SGLang's router drives them (`epserve router --pd-disaggregation`): the same request, with
bootstrap_host/bootstrap_port/bootstrap_room added, goes to the prefill and the decode server at
once, and the client gets the decode server's answer.
"""

import concurrent.futures
import http.server
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest
import requests

import conftest
from conftest import BINARY, DEEPSEEK_MODEL, MODEL, Server, free_port
from helpers import assert_openai_error, metric

PROMPTS = [
    [1, 15, 27, 99, 140, 7, 300],
    [5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23],
    list(range(40, 100)),
]
MAX_NEW = 8
EP2 = ["--tp", "2", "--ep-size", "2"]
EP2_DP = ["--tp", "2", "--ep-size", "2", "--enable-dp-attention", "--dp-size", "2"]


class PdPair:
    """A prefill and a decode server; generate() acts as the router."""

    def __init__(self, model, prefill_args=(), decode_args=(), env=None, decode_env=None):
        self.bootstrap_port = free_port()
        self.prefill = Server(["--disaggregation-mode", "prefill", "--disaggregation-bootstrap-port",
                               str(self.bootstrap_port)] + list(prefill_args), model=model,
                              wait=False, env=env)
        self.decode = Server(["--disaggregation-mode", "decode"] + list(decode_args), model=model,
                             wait=False, env={**(env or {}), **(decode_env or {})})
        self.prefill.wait_healthy()
        self.decode.wait_healthy()

    def body(self, prompt, max_new=MAX_NEW, room=None, **extra):
        return {"input_ids": prompt,
                "sampling_params": {"temperature": 0, "max_new_tokens": max_new},
                "bootstrap_host": "127.0.0.1", "bootstrap_port": self.bootstrap_port,
                "bootstrap_room": random.getrandbits(62) if room is None else room, **extra}

    def send(self, body, path="/generate", timeout=60):
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            p = pool.submit(requests.post, self.prefill.url(path), json=body, timeout=timeout)
            d = pool.submit(requests.post, self.decode.url(path), json=body, timeout=timeout)
            return p.result(), d.result()

    def generate(self, prompt, max_new=MAX_NEW):
        p, d = self.send(self.body(prompt, max_new))
        assert p.status_code == 200, p.text + self.prefill.output()
        assert d.status_code == 200, d.text + self.decode.output()
        return d.json()["output_ids"]

    def stop(self):
        for s in (self.decode, self.prefill):
            assert s.stop() == 0, s.output()


def wait_metric(server, name, value, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if metric(server, name) == value:
            return
        time.sleep(0.1)
    assert metric(server, name) == value, f"{name} on {server.base_url}"


def reference_ids(model, prompts):
    single = Server(model=model)
    try:
        out = []
        for prompt in prompts:
            r = requests.post(single.url("/generate"), json={
                "input_ids": prompt, "sampling_params": {"temperature": 0, "max_new_tokens": MAX_NEW}},
                timeout=60)
            assert r.status_code == 200, r.text
            out.append(r.json()["output_ids"])
        return out
    finally:
        assert single.stop() == 0


@pytest.mark.parametrize("model,prefill_args,decode_args", [
    pytest.param(MODEL, EP2, EP2, id="qwen3-ep2-ep2"),
    pytest.param(MODEL, EP2, EP2_DP, id="qwen3-ep2-dpattn"),
    pytest.param(DEEPSEEK_MODEL, EP2, EP2_DP, id="deepseek-ep2-dpattn"),
])
def test_greedy_tokens_match_one_server(model, prefill_args, decode_args, monkeypatch):
    expected = reference_ids(model, PROMPTS)
    # At info level, where each decode rank names the memory its KV cache is in.
    monkeypatch.setattr(conftest, "DEFAULT_ARGS",
                        [a if a != "warning" else "info" for a in conftest.DEFAULT_ARGS])
    pair = PdPair(model, prefill_args, decode_args + ["--page-size", "4"])
    try:
        got = [pair.generate(p) for p in PROMPTS]
        assert got == expected
        # Concurrent requests, each through both servers.
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            again = list(pool.map(pair.generate, PROMPTS))
        assert again == expected
        # Per-request KV figures on both sides.
        for s in (pair.prefill, pair.decode):
            assert metric(s, "sglang:kv_transfer_total_mb_count") == 2 * len(PROMPTS)
            assert metric(s, "sglang:kv_transfer_bytes_total") > 0
        # Every decode rank's KV cache is one block of shared memory UCX allocated (what lets
        # the prefill ranks on this host write it directly); the prefill ranks' are their own.
        sizes = [int(b) for b in re.findall(r"the KV cache \((\d+) bytes\) is in memory UCX allocated",
                                            pair.decode.output())]
        pids = rank_pids(pair.decode)
        assert len(sizes) == len(pids) == 2, pair.decode.output()
        for pid in pids:
            # (rounded up to UCX's page size; a huge page at most)
            assert any(0 <= m - size < 2 << 20 for m in sysv_mapping_sizes(pid) for size in sizes), pid
        assert "is in memory UCX allocated" not in pair.prefill.output()
    finally:
        pair.stop()


def sysv_mapping_sizes(pid):
    sizes = []
    with open(f"/proc/{pid}/maps") as maps:
        for line in maps:
            if "/SYSV" in line:
                begin, end = (int(x, 16) for x in line.split()[0].split("-"))
                sizes.append(end - begin)
    return sizes


@pytest.fixture(scope="module")
def pair():
    # Short timeouts so that the fault tests end quickly.
    env = {"SGLANG_DISAGGREGATION_BOOTSTRAP_TIMEOUT": "2",
           "SGLANG_DISAGGREGATION_WAITING_TIMEOUT": "4",
           "EPSERVE_DISAGGREGATION_TRANSFER_TIMEOUT": "2",
           "UCX_TLS": "tcp,self"}
    p = PdPair(MODEL, ["--context-length", "96"], ["--context-length", "512"], env=env)
    yield p
    p.stop()


def bytes_per_token():
    # qwen3_moe_tiny: 3 layers, 2 kv heads of 32, K and V, fp32.
    return 3 * 2 * 32 * 2 * 4


def test_kv_bytes_and_first_token(pair):
    before = metric(pair.decode, "sglang:kv_transfer_bytes_total") or 0
    handoffs = metric(pair.decode, "epserve:pd_handoff_latency_seconds_count")
    p, d = pair.send(pair.body(PROMPTS[1]))
    assert p.status_code == 200 and d.status_code == 200, (p.text, d.text)
    # The prefill server answers with the first token; the decode server's answer starts with it.
    assert p.json()["output_ids"] == d.json()["output_ids"][:1]
    assert len(d.json()["output_ids"]) == MAX_NEW
    after = metric(pair.decode, "sglang:kv_transfer_bytes_total")
    assert after - before == len(PROMPTS[1]) * bytes_per_token()
    # The decode side's handoff latency (prefill's answer here -> first decode step): one more
    # request; the prefill server has none.
    assert metric(pair.decode, "epserve:pd_handoff_latency_seconds_count") == handoffs + 1
    text = requests.get(pair.decode.url("/metrics"), timeout=10).text
    assert re.search(r'^epserve:pd_handoff_latency_seconds_bucket\{[^}]*le="\+Inf"\} ', text, re.M)
    assert metric(pair.prefill, "epserve:pd_handoff_latency_seconds_count") is None


def test_openai_completion_through_both(pair):
    body = pair.body(PROMPTS[0])
    body = {"model": "x", "prompt": PROMPTS[0], "max_tokens": 4, "temperature": 0,
            **{k: body[k] for k in ("bootstrap_host", "bootstrap_port", "bootstrap_room")}}
    p, d = pair.send(body, path="/v1/completions")
    assert p.status_code == 200 and d.status_code == 200, (p.text, d.text)
    assert d.json()["usage"]["completion_tokens"] == 4


def test_request_without_bootstrap_fields_is_refused(pair):
    r = requests.post(pair.decode.url("/generate"), json={"input_ids": [1, 2, 3]}, timeout=30)
    assert_openai_error(r, 400, "bootstrap_room")


def test_decode_that_never_comes_frees_prefill_pages(pair):
    # Only the prefill server gets the request: after the bootstrap timeout it fails and frees
    # its pages, then serves on.
    t = time.time()
    r = requests.post(pair.prefill.url("/generate"), json=pair.body(PROMPTS[2]), timeout=30)
    assert_openai_error(r, 504, "SGLANG_DISAGGREGATION_BOOTSTRAP_TIMEOUT")
    assert time.time() - t < 15
    wait_metric(pair.prefill, "sglang:num_used_tokens", 0)
    assert pair.generate(PROMPTS[0])


def test_prefill_that_never_comes_frees_decode_pages(pair):
    r = requests.post(pair.decode.url("/generate"), json=pair.body(PROMPTS[2]), timeout=30)
    assert_openai_error(r, 504, "SGLANG_DISAGGREGATION_WAITING_TIMEOUT")
    wait_metric(pair.decode, "sglang:num_used_tokens", 0)
    assert pair.generate(PROMPTS[0])


def test_failed_prefill_is_an_error_not_a_hang(pair):
    # 100 prompt tokens: over the prefill server's --context-length 96, fine for the decode one.
    p, d = pair.send(pair.body(list(range(100, 200))), timeout=30)
    assert_openai_error(p, 400, "context length")
    assert_openai_error(d, 400, "context length")
    wait_metric(pair.decode, "sglang:num_used_tokens", 0)
    assert pair.generate(PROMPTS[0])


def test_unreachable_prefill_server_is_an_error(pair):
    body = pair.body(PROMPTS[0])
    body["bootstrap_port"] = free_port()  # nobody listens there
    r = requests.post(pair.decode.url("/generate"), json=body, timeout=30)
    assert_openai_error(r, 502, "bootstrap service")
    wait_metric(pair.decode, "sglang:num_used_tokens", 0)


def rank_pids(server):
    out = subprocess.run(["pgrep", "-P", str(server.proc.pid)], capture_output=True, text=True)
    return [int(x) for x in out.stdout.split()]


def test_stalled_transfer_is_aborted_on_both_sides(pair):
    # The tokens of the requests after the stall must equal these (no leftover put lands in
    # pages handed to them).
    before = [pair.generate(PROMPTS[0]), pair.generate(PROMPTS[2])]
    # The decode server reserves pages and asks the prefill server; its rank process is then
    # stopped, so the KV puts (UCX over TCP here) cannot complete: the prefill server gives up
    # after EPSERVE_DISAGGREGATION_TRANSFER_TIMEOUT, frees its pages and tells the decode server,
    # which frees its pages once its rank runs again. Both serve on.
    body = pair.body(PROMPTS[2])
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        d = pool.submit(requests.post, pair.decode.url("/generate"), json=body, timeout=60)
        wait_metric(pair.decode, "sglang:num_decode_transfer_queue_reqs", 1)
        ranks = rank_pids(pair.decode)
        assert ranks
        for pid in ranks:
            os.kill(pid, signal.SIGSTOP)
        try:
            p = requests.post(pair.prefill.url("/generate"), json=body, timeout=60)
            assert_openai_error(p, 502, "transfer timeout")
        finally:
            for pid in ranks:
                os.kill(pid, signal.SIGCONT)
        assert_openai_error(d.result(), 502, "transfer timeout")
    wait_metric(pair.prefill, "sglang:num_used_tokens", 0)
    wait_metric(pair.decode, "sglang:num_used_tokens", 0)
    assert metric(pair.prefill, "sglang:kv_transfer_failed_total") >= 1
    assert [pair.generate(PROMPTS[0]), pair.generate(PROMPTS[2])] == before


class _FakeBootstrap(http.server.BaseHTTPRequestHandler):
    """A prefill bootstrap service under the test's control: /kv/transfer is always pending;
    /kv/cancel is pending while `server.draining` is set, then settled."""

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        self.server.calls.append((self.path, body["room"]))
        time.sleep(0.05)
        if self.path == "/kv/cancel" and not self.server.draining.is_set():
            status, answer = 200, {"settled": True}
        else:
            status, answer = 202, {"pending": True}
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def fake_bootstrap():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FakeBootstrap)
    server.calls = []
    server.draining = threading.Event()
    server.draining.set()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def wait_for(pred, what, timeout=20):
    deadline = time.time() + timeout
    while not pred():
        assert time.time() < deadline, what
        time.sleep(0.05)


def start_decode_request(pair, body):
    pool = concurrent.futures.ThreadPoolExecutor(1)
    future = pool.submit(requests.post, pair.decode.url("/generate"), json=body, timeout=60)
    pool.shutdown(wait=False)
    return future


def test_aborted_decode_request_keeps_its_pages_until_the_prefill_side_answers(pair):
    # The client hangs up (here: /abort_request) while the KV is on its way. The decode server
    # must not hand the reserved pages on while the prefill server may still write into them:
    # it asks the prefill side to cancel (POST /kv/cancel) and frees them only once that answers
    # that nothing more will be written. Before, it freed them at once and never told it.
    fake = fake_bootstrap()
    try:
        body = pair.body(PROMPTS[2], rid="pd-abort-held")
        body["bootstrap_port"] = fake.server_address[1]
        room = body["bootstrap_room"]
        d = start_decode_request(pair, body)
        wait_for(lambda: ("/kv/transfer", room) in fake.calls, "the decode server never asked")
        assert metric(pair.decode, "sglang:num_used_tokens") > 0
        r = requests.post(pair.decode.url("/abort_request"), json={"rid": "pd-abort-held"},
                          timeout=10)
        assert r.json() == {"aborted": True}
        d.result()  # the client's request has ended
        wait_for(lambda: ("/kv/cancel", room) in fake.calls, "no cancel reached the prefill side")
        for _ in range(10):  # still draining there: the pages stay
            assert metric(pair.decode, "sglang:num_used_tokens") > 0
            time.sleep(0.1)
        fake.draining.clear()
        wait_metric(pair.decode, "sglang:num_used_tokens", 0)
    finally:
        fake.shutdown()
    assert len(pair.generate(PROMPTS[1])) == MAX_NEW


def test_pages_are_freed_after_a_bound_when_the_prefill_side_is_gone(pair):
    # The prefill side stops answering after the decode request started: the decode server
    # keeps asking it to cancel, then frees the pages after DisaggTimeouts::lost_contact()
    # (5 s lease + 2 s transfer timeout + 2 s here).
    fake = fake_bootstrap()
    body = pair.body(PROMPTS[2], rid="pd-abort-gone")
    body["bootstrap_port"] = fake.server_address[1]
    room = body["bootstrap_room"]
    d = start_decode_request(pair, body)
    wait_for(lambda: ("/kv/transfer", room) in fake.calls, "the decode server never asked")
    fake.shutdown()
    fake.server_close()
    requests.post(pair.decode.url("/abort_request"), json={"rid": "pd-abort-gone"}, timeout=10)
    d.result()
    t = time.time()
    time.sleep(1)
    assert metric(pair.decode, "sglang:num_used_tokens") > 0
    wait_metric(pair.decode, "sglang:num_used_tokens", 0, timeout=30)
    assert time.time() - t > 5
    assert len(pair.generate(PROMPTS[1])) == MAX_NEW


def test_prefill_request_after_its_decode_side_gave_up_sends_nothing(pair):
    # The decode request is aborted before its prefill request arrives. The prefill server must
    # not send the KV into the pages that request had reserved (before, the decode server's relay
    # went on asking for it, and the prefill server sent it).
    body = pair.body(PROMPTS[2], rid="pd-abort-early")
    d = start_decode_request(pair, body)
    wait_metric(pair.decode, "sglang:num_decode_transfer_queue_reqs", 1)
    requests.post(pair.decode.url("/abort_request"), json={"rid": "pd-abort-early"}, timeout=10)
    d.result()
    wait_metric(pair.decode, "sglang:num_used_tokens", 0)
    before = metric(pair.prefill, "sglang:kv_transfer_total_mb_count") or 0
    p = requests.post(pair.prefill.url("/generate"), json=body, timeout=30)
    # Stopped by the cancel that came before it (499), not left holding its pages until
    # SGLANG_DISAGGREGATION_BOOTSTRAP_TIMEOUT (504).
    assert_openai_error(p, 499, "cancelled")
    assert (metric(pair.prefill, "sglang:kv_transfer_total_mb_count") or 0) == before
    wait_metric(pair.prefill, "sglang:num_used_tokens", 0)
    assert len(pair.generate(PROMPTS[1])) == MAX_NEW


def test_prefill_server_cancels_a_room_its_decode_server_stopped_asking_about(pair):
    # The lease: a decode server asks about its room at least every second until it has a
    # settled answer; after 5 s of silence the prefill server cancels the room itself, so that it
    # never starts writing into pages a decode server that lost contact may have freed. Here the
    # test plays a decode server that asks once and vanishes, while the prefill server's rank is
    # stopped (so the request is still queued when the lease ends).
    bootstrap = f"http://127.0.0.1:{pair.bootstrap_port}"
    ranks = requests.get(bootstrap + "/route", timeout=10).json()["groups"][0]["kv_ranks"]
    body = pair.body(PROMPTS[0])
    pids = rank_pids(pair.prefill)
    assert pids
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            p = pool.submit(requests.post, pair.prefill.url("/generate"), json=body, timeout=60)
            target = {"ranks": ranks, "slots": list(range(len(PROMPTS[0])))}
            deadline = time.time() + 20
            while True:  # until the request has reached the prefill server's frontend
                r = requests.post(bootstrap + "/kv/transfer",
                                  json={"room": body["bootstrap_room"], "target": target},
                                  timeout=10)
                assert r.status_code == 202, r.text
                if r.json()["waiting_for"] == "the KV transfer":
                    break
                assert time.time() < deadline
            time.sleep(6.5)
            for pid in pids:
                os.kill(pid, signal.SIGCONT)
            pids = []
            assert_openai_error(p.result(), 499, "cancelled")
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
    wait_metric(pair.prefill, "sglang:num_used_tokens", 0)
    assert len(pair.generate(PROMPTS[1])) == MAX_NEW


def test_a_bootstrap_room_in_use_is_refused(pair):
    # Two live requests with one room on a prefill server: the second is refused with 409 (the
    # first one's decode server would otherwise get either's KV). The first is not disturbed.
    body = pair.body(PROMPTS[0])
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        first = pool.submit(requests.post, pair.prefill.url("/generate"), json=body, timeout=30)
        wait_metric(pair.prefill, "sglang:num_prefill_inflight_queue_reqs", 1)
        second = requests.post(pair.prefill.url("/generate"), json=body, timeout=30)
        assert_openai_error(second, 409, "bootstrap_room")
        d = requests.post(pair.decode.url("/generate"), json=body, timeout=30)
        assert d.status_code == 200, d.text
        assert first.result().status_code == 200


def test_prefill_server_computes_other_prompts_while_a_transfer_stalls():
    # The KV send runs beside the prefill scheduler: while one transfer is stalled (its decode
    # rank stopped), another prompt is computed and parked. Before, the send blocked the
    # scheduler until the transfer timeout (20 s here).
    env = {"EPSERVE_DISAGGREGATION_TRANSFER_TIMEOUT": "20", "UCX_TLS": "tcp,self"}
    pd = PdPair(MODEL, env=env)
    ranks = []
    try:
        body = pd.body(PROMPTS[2])
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            d = pool.submit(requests.post, pd.decode.url("/generate"), json=body, timeout=60)
            wait_metric(pd.decode, "sglang:num_decode_transfer_queue_reqs", 1)
            ranks = rank_pids(pd.decode)
            for pid in ranks:
                os.kill(pid, signal.SIGSTOP)
            p = pool.submit(requests.post, pd.prefill.url("/generate"), json=body, timeout=60)
            wait_metric(pd.prefill, "sglang:num_prefill_inflight_queue_reqs", 1)
            other = pool.submit(requests.post, pd.prefill.url("/generate"),
                                json=pd.body(PROMPTS[0], rid="pd-beside"), timeout=60)
            wait_metric(pd.prefill, "sglang:num_prefill_inflight_queue_reqs", 2, timeout=15)
            for pid in ranks:
                os.kill(pid, signal.SIGCONT)
            ranks = []
            assert p.result().status_code == 200, p.result().text
            assert d.result().status_code == 200, d.result().text
            requests.post(pd.prefill.url("/abort_request"), json={"rid": "pd-beside"}, timeout=10)
            assert other.result().json()["meta_info"]["finish_reason"]["type"] == "abort"
        wait_metric(pd.prefill, "sglang:num_used_tokens", 0)
    finally:
        for pid in ranks:
            os.kill(pid, signal.SIGCONT)
        pd.stop()


NETNS_CLIENT = r"""
import concurrent.futures, json, sys, time, requests
prefill, decode, body = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
deadline = time.time() + 120
for url in (prefill, decode):
    while True:
        try:
            if requests.get(url + "/health", timeout=1).status_code == 200:
                break
        except requests.RequestException:
            pass
        assert time.time() < deadline, url + " not healthy"
        time.sleep(0.2)
out = []
for i, prompt in enumerate(body["prompts"]):
    b = {"input_ids": prompt, "sampling_params": {"temperature": 0, "max_new_tokens": body["max_new"]},
         "bootstrap_host": body["host"], "bootstrap_port": body["port"], "bootstrap_room": 1000 + i}
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        p = pool.submit(requests.post, prefill + "/generate", json=b, timeout=60)
        d = pool.submit(requests.post, decode + "/generate", json=b, timeout=60)
        assert p.result().status_code == 200, p.result().text
        assert d.result().status_code == 200, d.result().text
        out.append(d.result().json()["output_ids"])
print(json.dumps(out))
"""


def test_prefill_and_decode_in_separate_network_namespaces():
    """The KV goes over a veth pair between two network namespaces with UCX_TLS=tcp,self (as
    between two nodes); the client runs in the decode server's namespace."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("making network namespaces needs root and `ip`")
    tag = os.getpid() % 100000
    ns = [f"eps-pd{tag}a", f"eps-pd{tag}b"]
    addr = ["10.79.0.1", "10.79.0.2"]
    veth = [f"epd{tag}a", f"epd{tag}b"]

    def ip(*args):
        return subprocess.run(["ip", *args], capture_output=True, text=True)

    made = []
    servers = []
    try:
        for n in ns:
            r = ip("netns", "add", n)
            if r.returncode != 0:
                pytest.skip(f"cannot make a network namespace: {r.stderr.strip()}")
            made.append(n)
        steps = [("link", "add", veth[0], "type", "veth", "peer", "name", veth[1])]
        for i in range(2):
            steps += [("link", "set", veth[i], "netns", ns[i]),
                      ("-n", ns[i], "addr", "add", addr[i] + "/24", "dev", veth[i]),
                      ("-n", ns[i], "link", "set", "lo", "up"),
                      ("-n", ns[i], "link", "set", veth[i], "up")]
        for step in steps:
            r = ip(*step)
            if r.returncode != 0:
                pytest.skip(f"cannot link the namespaces (ip {' '.join(step)}): {r.stderr.strip()}")
        env = {**os.environ, "UCX_TLS": "tcp,self"}
        bootstrap, ports = free_port(), [free_port(), free_port()]
        modes = [["prefill", "--disaggregation-bootstrap-port", str(bootstrap)], ["decode"]]
        for i in range(2):
            log = open(f"/tmp/epserve-pd-netns-{tag}-{i}.log", "w")
            servers.append((subprocess.Popen(
                ["ip", "netns", "exec", ns[i], BINARY, "serve", "--model-path", MODEL, "--host",
                 addr[i], "--port", str(ports[i]), "--max-total-tokens", "4096", "--log-level",
                 "warning", "--disaggregation-mode", *modes[i]],
                stdout=log, stderr=subprocess.STDOUT, env=env), log))
        body = {"prompts": PROMPTS, "max_new": MAX_NEW, "host": addr[0], "port": bootstrap}
        r = subprocess.run(["ip", "netns", "exec", ns[1], sys.executable, "-c", NETNS_CLIENT,
                            f"http://{addr[0]}:{ports[0]}", f"http://{addr[1]}:{ports[1]}",
                            json.dumps(body)], capture_output=True, text=True, timeout=300)
        logs = "".join(open(f"/tmp/epserve-pd-netns-{tag}-{i}.log").read() for i in range(2))
        assert r.returncode == 0, r.stdout + r.stderr + logs
        assert json.loads(r.stdout) == reference_ids(MODEL, PROMPTS)
    finally:
        for proc, log in servers:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()
        for n in made:
            ip("netns", "del", n)


class _BadBootstrap(http.server.BaseHTTPRequestHandler):
    """A 'prefill bootstrap service' that answers every transfer with a malformed first token."""

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = json.dumps({"ok": True, "first_token": "not a token", "bytes": "many"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_malformed_prefill_answer_is_a_502_and_decode_serves_on(pair):
    # The decode server posts to whatever bootstrap_host/port a request names; a bad answer from
    # there must fail that request, not the decode server's rank.
    bad = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _BadBootstrap)
    threading.Thread(target=bad.serve_forever, daemon=True).start()
    try:
        body = pair.body(PROMPTS[0])
        body["bootstrap_port"] = bad.server_address[1]
        r = requests.post(pair.decode.url("/generate"), json=body, timeout=30)
        assert_openai_error(r, 502, "first_token")
        wait_metric(pair.decode, "sglang:num_used_tokens", 0)
    finally:
        bad.shutdown()
    # A non-object target is refused by the prefill side's bootstrap service.
    r = requests.post(f"http://127.0.0.1:{pair.bootstrap_port}/kv/transfer",
                      json={"room": 1, "target": 5}, timeout=10)
    assert r.status_code == 400
    assert len(pair.generate(PROMPTS[1])) == MAX_NEW
