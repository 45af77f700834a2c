"""HTTP-level limits and forms (docs/server.md "HTTP limits"): the body limit holds for chunked and
compressed bodies, slow connections cannot starve the others, POSTs without a body and HEAD
requests are answered. Oversized bodies are generated as they are sent, never held whole."""

import json
import select
import socket
import threading
import time
import zlib

import pytest
import requests

from conftest import Server
from helpers import assert_openai_error, post

MiB = 1 << 20


@pytest.fixture(autouse=True)
def still_serving(server):
    yield
    r = post(server, "/v1/completions", {"model": "m", "prompt": "still alive?", "max_tokens": 2})
    assert r.status_code == 200, r.text


def connect(server):
    return socket.create_connection(("127.0.0.1", server.port), timeout=30)


def read_response(sock):
    """(status, headers dict with lower-case names, body) of one response; reads until the body
    is complete (Content-Length) or the server closes."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"the server closed the connection without an answer: {data!r}"
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    length = int(headers.get("content-length", -1))
    while length < 0 or len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, headers, body


def send_until_answered(sock, head, pieces):
    """Sends `head`, then the byte strings of `pieces` until the server answers (or closes); then
    reads the answer. The sender stops as soon as an answer is readable, as a client would."""
    sock.sendall(head)
    for piece in pieces:
        readable, _, _ = select.select([sock], [], [], 0)
        if readable:
            break
        try:
            sock.sendall(piece)
        except (BrokenPipeError, ConnectionResetError):
            break
    return read_response(sock)


def assert_413(status, body):
    assert status == 413, body[:300]
    error = json.loads(body)["error"]
    assert "too large" in error["message"], error


def test_chunked_body_over_limit(server):
    # 64 MiB in 64 KiB chunks (the limit is 8 MiB); the JSON would be valid if read whole.
    def chunks():
        start = b'{"model": "m", "prompt": "x", "max_tokens": 1'
        yield b"%x\r\n" % len(start) + start + b"\r\n"
        filler = b" " * (64 << 10)
        for _ in range(1024):
            yield b"%x\r\n" % len(filler) + filler + b"\r\n"
        yield b"1\r\n}\r\n0\r\n\r\n"

    with connect(server) as sock:
        head = (b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n")
        status, _, body = send_until_answered(sock, head, chunks())
    assert_413(status, body)


def test_chunked_body_under_limit_is_served(server):
    body = json.dumps({"model": "m", "prompt": "hello", "max_tokens": 2}).encode()
    r = requests.post(server.url("/v1/completions"), data=iter([body[:10], body[10:]]), timeout=60,
                      headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text


def gzip_of_spaces(total, prefix, suffix):
    """A gzip stream of prefix + `total` spaces + suffix, compressed piece by piece."""
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    out = [z.compress(prefix)]
    block = b" " * MiB
    for _ in range(total // MiB):
        out.append(z.compress(block))
    out.append(z.compress(suffix))
    out.append(z.flush())
    return b"".join(out)


def test_gzip_body_over_limit(server):
    # 256 MiB of JSON whitespace in a body of about 256 KB: valid JSON once expanded.
    bomb = gzip_of_spaces(256 * MiB, b'{"model": "m", "prompt": "x", "max_tokens": 1', b"}")
    assert len(bomb) < 1 * MiB
    r = requests.post(server.url("/v1/completions"), data=bomb, timeout=60,
                      headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert_openai_error(r, 413, "too large")


def test_gzip_body_under_limit_is_served(server):
    body = gzip_of_spaces(MiB, b'{"model": "m", "prompt": "x", "max_tokens": 1', b"}")
    r = requests.post(server.url("/v1/completions"), data=body, timeout=60,
                      headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert r.status_code == 200, r.text


def test_content_length_over_limit_is_not_read(server):
    # Declares 256 MiB; the server must answer 413 without reading it all.
    def pieces():
        for _ in range(1024):
            yield b" " * (64 << 10)

    with connect(server) as sock:
        head = (b"POST /generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n" % (256 * MiB))
        status, _, body = send_until_answered(sock, head, pieces())
    assert_413(status, body)


def test_expect_continue_over_limit_is_refused_before_the_body(server):
    with connect(server) as sock:
        sock.sendall(b"POST /generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\nExpect: 100-continue\r\n\r\n" % (9 * MiB))
        status, headers, body = read_response(sock)
    assert_413(status, body)
    assert headers["connection"] == "close"


def test_post_without_body_or_length(server):
    # curl -X POST .../flush_cache sends neither a body nor Content-Length.
    with connect(server) as sock:
        sock.sendall(b"POST /flush_cache HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n")
        sock.settimeout(3)  # the old server waited 5 s for a body, then answered 400
        status, _, body = read_response(sock)
    assert status == 200, body
    assert b"Cache flushed" in body


def test_head_requests(server):
    for path in ["/health", "/v1/models", "/get_model_info", "/get_server_info"]:
        r = requests.head(server.url(path), timeout=10)
        assert r.status_code == 200, (path, r.status_code)
        assert r.content == b""
    assert requests.head(server.url("/generate"), timeout=10).status_code == 405


def test_recorder_routes_without_body():
    s = Server(["--expert-distribution-recorder-mode", "stat"])
    try:
        for route in ["start", "stop"]:
            with socket.create_connection(("127.0.0.1", s.port), timeout=30) as sock:
                sock.sendall(b"POST /%s_expert_distribution_record HTTP/1.1\r\nHost: x\r\n\r\n"
                             % route.encode())
                sock.settimeout(3)
                status, _, body = read_response(sock)
            assert status == 200, body
    finally:
        assert s.stop() == 0


def test_slow_header_connections_do_not_starve_requests():
    # More slow connections than the old server had handler threads (512 by default): each sends
    # a byte of its request line every 2 s from the start and never finishes its headers.
    s = Server([])
    socks = []
    stop = threading.Event()

    def trickle():
        while not stop.wait(2):
            for sock in list(socks):
                try:
                    sock.sendall(b"O")
                except OSError:
                    pass

    threading.Thread(target=trickle, daemon=True).start()
    try:
        for _ in range(600):
            sock = socket.create_connection(("127.0.0.1", s.port), timeout=10)
            sock.sendall(b"P")
            socks.append(sock)
        r = requests.get(s.url("/health"), timeout=10)
        assert r.status_code == 200
        r = post(s, "/generate", {"text": "hello", "sampling_params": {"max_new_tokens": 2}}, timeout=10)
        assert r.status_code == 200, r.text
    finally:
        stop.set()
        for sock in socks:
            sock.close()
        assert s.stop() == 0
