"""Faults and strangers: bytes sent to the rendezvous store's port, a rank that stops (SIGSTOP),
socket files after every kind of exit, a model path that is a file, and SGLang's batch log lines."""

import glob
import os
import signal
import socket
import struct
import subprocess
import time

import pytest
import requests

import conftest
from conftest import BINARY, MODEL, Server
from helpers import post

GENERATE = {"text": "hello", "sampling_params": {"max_new_tokens": 4, "temperature": 0}}


def listening_ports(pid):
    """The TCP ports process `pid` listens on (from /proc: its socket inodes in LISTEN state)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[len("socket:["):-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in inodes:
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def rank_pids(server):
    """{rank: pid} of the server's rank processes."""
    children = []
    for path in glob.glob(f"/proc/{server.proc.pid}/task/*/children"):  # the launcher's thread
        with open(path) as f:
            children += [int(p) for p in f.read().split()]
    ranks = {}
    for pid in children:
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = dict(item.split(b"=", 1) for item in f.read().split(b"\0") if b"=" in item)
        ranks[int(env[b"EPSERVE_RANK"])] = pid
    return ranks


def wait_for_status(server, path, status, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        r = requests.get(server.url(path), timeout=30)
        if r.status_code == status:
            return r
        time.sleep(0.2)
    raise AssertionError(f"{path} did not answer {status} within {timeout} s:\n{server.output()}")


def socket_files(pid):
    return glob.glob(f"/tmp/epserve-{pid}-*")


def server_with_defaults(defaults, extra_args, wait=True):
    """A Server started with `defaults` in place of conftest's DEFAULT_ARGS."""
    saved = conftest.DEFAULT_ARGS
    conftest.DEFAULT_ARGS = defaults
    try:
        return Server(extra_args, wait=wait)
    finally:
        conftest.DEFAULT_ARGS = saved


@pytest.fixture(scope="module")
def two_ranks():
    s = Server(["--tp-size", "2"])
    yield s
    assert s.stop() == 0, s.output()
    assert socket_files(s.proc.pid) == []


def test_strangers_on_the_store_port_are_dropped(two_ranks):
    s = two_ranks
    store_ports = listening_ports(s.proc.pid) - {s.port}
    assert len(store_ports) == 1, store_ports
    store = ("127.0.0.1", store_ports.pop())
    key, value = b"epserve/abort", b"pwned!"
    set_abort = b"\x01" + struct.pack("<I", len(key)) + key + struct.pack("<Q", len(value)) + value
    set_abort += struct.pack("<q", 0)
    assert len(set_abort) == 40  # the message that once stopped the whole server
    wrong_secret = b"EPSTORE1" + struct.pack("<H", 64) + b"x" * 64
    huge_length = b"\x02" + b"\xff" * 12
    silent = socket.create_connection(store)
    for payload in (set_abort, wrong_secret, huge_length, os.urandom(4096)):
        with socket.create_connection(store) as c:
            c.sendall(payload)
            c.settimeout(30)
            try:
                while c.recv(4096):
                    pass  # the store closes the connection (after one refusal byte at most)
            except ConnectionResetError:
                pass
    # The server still serves, with a stranger's silent connection still open.
    r = post(s, "/generate", GENERATE)
    assert r.status_code == 200, r.text
    assert requests.get(s.url("/health"), timeout=10).status_code == 200
    silent.close()
    assert post(s, "/generate", GENERATE).status_code == 200
    assert "rendezvous store" in s.output() and "dropped a connection" in s.output()
    assert s.proc.poll() is None


def test_stopped_rank_makes_health_503_until_it_resumes(two_ranks):
    s = two_ranks
    victim = rank_pids(s)[1]  # a follower: it talks to no one but its leader
    os.kill(victim, signal.SIGSTOP)
    try:
        r = wait_for_status(s, "/health", 503)
        assert "rank 1" in r.json()["error"]["message"], r.text
        r = requests.get(s.url("/health_generate"), timeout=30)
        assert r.status_code == 503 and "rank 1" in r.json()["error"]["message"], r.text
        assert f"rank 1 (pid {victim}, node 0) has not answered" in s.output()
    finally:
        os.kill(victim, signal.SIGCONT)
    wait_for_status(s, "/health", 200)
    assert "rank 1 (pid %d, node 0) answers again" % victim in s.output()
    assert post(s, "/generate", GENERATE).status_code == 200


def test_clean_stop_removes_socket_files():
    s = Server()
    assert socket_files(s.proc.pid) != []
    assert s.stop() == 0, s.output()
    assert socket_files(s.proc.pid) == []


def test_rank_death_removes_socket_files():
    s = Server(["--tp-size", "2"])
    os.kill(rank_pids(s)[1], signal.SIGKILL)
    s.proc.wait(timeout=60)
    assert s.proc.returncode != 0, s.output()
    assert "rank 1" in s.output()
    assert socket_files(s.proc.pid) == []


def test_error_exit_removes_socket_files():
    # The rank fails while the frontend is up: no memory is left for the KV cache.
    s = server_with_defaults(["--log-level", "warning"], ["--mem-fraction-static", "0.0000001"],
                             wait=False)
    try:
        s.proc.wait(timeout=120)
    finally:
        s.stop()
    assert s.proc.returncode != 0, s.output()
    assert "leaves no memory for the KV cache" in s.output()
    assert socket_files(s.proc.pid) == []


def test_model_path_that_is_a_file():
    r = subprocess.run([BINARY, "serve", "--model-path", os.path.join(MODEL, "config.json")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "is a file" in r.stderr and "--model-path takes a model directory" in r.stderr, r.stderr
    assert "does not exist" not in r.stderr, r.stderr
    assert MODEL.rstrip("/") in r.stderr  # it names the directory meant


def test_batch_log_lines_like_sglang():
    defaults = [a if a != "warning" else "info" for a in conftest.DEFAULT_ARGS]
    s = server_with_defaults(defaults, ["--decode-log-interval", "5"])
    try:
        body = {"text": "hello", "sampling_params": {"max_new_tokens": 21, "ignore_eos": True}}
        assert post(s, "/generate", body).status_code == 200
        assert post(s, "/v1/completions", {"prompt": "hi", "max_tokens": 2}).status_code == 200
    finally:
        assert s.stop() == 0, s.output()
    lines = s.output().splitlines()
    decode = [l for l in lines if "Decode batch. #running-req: " in l]
    # 20 decode steps after the prefill's first token: a line every 5.
    assert len(decode) == 4, "\n".join(lines)
    for line in decode:
        assert line.startswith("[") and " TP0] Decode batch. " in line, line
        for field in ("#token: ", "token usage: ", "gen throughput (token/s): ", "#queue-req: 0"):
            assert field in line, line
    prefill = [l for l in lines if "Prefill batch. #new-seq: 1, #new-token: " in l]
    assert len(prefill) == 2, "\n".join(lines)
    assert "#cached-token: " in prefill[0] and "#running-req: 0" in prefill[0]
    # No line per request at the default HTTP level, and no progress bar redrawn in a log file.
    assert not [l for l in lines if "/generate" in l or "/v1/completions" in l], "\n".join(lines)
    assert "\r" not in s.output()
    loading = [l for l in lines if "loading weights" in l]
    assert 1 <= len(loading) <= 5, loading
