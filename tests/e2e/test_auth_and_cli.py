"""--api-key, flag errors at start-up, and shutdown on SIGINT/SIGTERM with requests running."""

import signal
import subprocess
import threading
import time

import pytest
import requests

from conftest import BINARY, MODEL, Server
from helpers import assert_openai_error, sse_events

KEY = "sk-e2e-secret"


@pytest.fixture(scope="module")
def keyed_server():
    s = Server(["--api-key", KEY])
    yield s
    assert s.stop() == 0, s.output()


def test_api_key(keyed_server):
    url = keyed_server.url
    assert requests.get(url("/health"), timeout=10).status_code == 200  # the only open route
    assert_openai_error(requests.get(url("/v1/models"), timeout=10), 401)
    bad = {"Authorization": "Bearer wrong"}
    assert_openai_error(requests.get(url("/v1/models"), headers=bad, timeout=10), 401)
    assert_openai_error(requests.get(url("/health_generate"), headers={"Authorization": "Bearer None"},
                                     timeout=10), 401)
    assert_openai_error(requests.post(url("/generate"), json={"text": "x"}, timeout=10), 401)
    assert_openai_error(requests.get(url("/metrics"), timeout=10), 401)
    good = {"Authorization": f"Bearer {KEY}"}
    assert requests.get(url("/v1/models"), headers=good, timeout=10).status_code == 200
    assert requests.get(url("/health_generate"), headers=good, timeout=30).status_code == 200


def test_api_key_with_openai_client(keyed_server):
    import openai

    ok = openai.OpenAI(base_url=keyed_server.url("/v1"), api_key=KEY, max_retries=0)
    assert ok.completions.create(model="m", prompt="x", max_tokens=2).usage.completion_tokens > 0
    wrong = openai.OpenAI(base_url=keyed_server.url("/v1"), api_key="nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong.completions.create(model="m", prompt="x", max_tokens=2)


def run_cli(*args):
    return subprocess.run([BINARY, "serve", "--model-path", MODEL, *args], capture_output=True, text=True,
                          timeout=60)


@pytest.mark.parametrize("args,needle", [
    (["--kv-cache-dtype", "fp8_e5m2"], "--kv-cache-dtype is an SGLang flag that epserve does not implement yet"),
    (["--speculative-algorithm", "EAGLE"], "--speculative-algorithm is an SGLang flag"),
    (["--port-number", "1"], "unknown flag --port-number"),
    (["--tp-size", "6", "--ep-size", "4"], "--ep-size 4 must divide the world size 6"),
    (["--tp-size", "6", "--dp-size", "4", "--enable-dp-attention"], "divisible by --dp-size (4)"),
    (["--dp-size", "2"], "without --enable-dp-attention"),
    (["--mem-fraction-static", "2"], "--mem-fraction-static 2"),
    (["--context-length", "100000"], "longer than the model's max_position_embeddings"),
])
def test_flag_errors(args, needle):
    r = run_cli(*args)
    assert r.returncode != 0
    assert needle in r.stderr, r.stderr
    assert "epserve: error:" in r.stderr


def test_device_cpu_and_trust_remote_code_accepted():
    s = Server(["--device", "cpu", "--trust-remote-code"])
    try:
        assert requests.get(s.url("/health"), timeout=10).status_code == 200
    finally:
        assert s.stop() == 0, s.output()


def test_port_in_use(server):
    r = run_cli("--port", str(server.port))
    assert r.returncode != 0
    assert "cannot listen on 127.0.0.1:%d" % server.port in r.stderr, r.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_stops_cleanly_with_requests_running(sig):
    s = Server()
    events = []

    def stream():
        r = requests.post(s.url("/generate"), stream=True, timeout=60, json={
            "text": "long", "stream": True, "sampling_params": {"max_new_tokens": 3000, "ignore_eos": True}})
        events.extend(sse_events(r))

    t = threading.Thread(target=stream)
    t.start()
    time.sleep(0.5)
    start = time.time()
    code = s.stop(sig, timeout=30)
    t.join(30)
    assert code == 0, s.output()
    assert time.time() - start < 15
    assert events and events[-1] == "[DONE]"
    output = s.output()
    assert "shutting down" in output
    # Every process of the server is gone (the ranks run in their own process group).
    ps = subprocess.run(["pgrep", "-f", f"--port {s.port}"], capture_output=True, text=True)
    assert ps.stdout.strip() == "", ps.stdout
