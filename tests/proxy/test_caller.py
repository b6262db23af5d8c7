"""The proxy's side towards its callers, on raw sockets: the bounds the sidecar's own
listener has (431, 408, 503, 400), requests answered in order on one connection,
``Expect: 100-continue``, HTTP/1.0 callers, and a stop that lets a call in progress finish."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable

from tests.helpers import wait_until
from tests.proxy.conftest import Proxied
from tests.proxy.test_forward import OIP

BODY = json.dumps(OIP).encode()


def connect(px: Proxied) -> socket.socket:
    host, port = px.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    return sock


def read_all(sock: socket.socket) -> bytes:
    """Everything until the proxy closes the connection."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def infer(extra: bytes = b"", version: bytes = b"1.1") -> bytes:
    return (
        b"POST /v2/models/iris/infer HTTP/" + version + b"\r\nhost: x\r\n"
        b"content-type: application/json\r\ncontent-length: %d\r\n"
        % len(BODY)
        + extra
        + b"\r\n"
        + BODY
    )


def test_a_head_over_the_limit_is_431_and_counted(proxied: Callable[..., Proxied]) -> None:
    px = proxied(max_header_bytes=4096)
    with connect(px) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nx-big: " + b"a" * 8192 + b"\r\n\r\n")
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 431 ")
    assert b"request head exceeds 4096 bytes" in answer
    wait_until(lambda: px.metric('mlwatch_requests_rejected_total{status="431"}') == 1)


def test_a_head_too_slow_is_408_and_an_idle_connection_just_closes(
    proxied: Callable[..., Proxied],
) -> None:
    px = proxied(request_timeout_s=0.5)
    with connect(px) as slow, connect(px) as idle:
        slow.sendall(b"GET /v2/health/ready HTTP/1.1\r\nhost: x\r\n")  # never finished
        t0 = time.monotonic()
        assert read_all(slow).startswith(b"HTTP/1.1 408 ")
        assert read_all(idle) == b""
        assert time.monotonic() - t0 < 5
    wait_until(lambda: px.metric('mlwatch_requests_rejected_total{status="408"}') == 1)


def test_connections_beyond_the_limit_get_503(proxied: Callable[..., Proxied]) -> None:
    px = proxied(max_connections=2)
    with connect(px) as a, connect(px) as b, connect(px) as c:
        answer = read_all(c)
        assert answer.startswith(b"HTTP/1.1 503 ") and b"retry-after: 1" in answer
        a.sendall(infer())
        assert a.recv(65536).startswith(b"HTTP/1.1 200 ")
        del b
    wait_until(lambda: px.metric('mlwatch_requests_rejected_total{status="503"}') == 1)


def test_garbage_is_400(proxied: Callable[..., Proxied]) -> None:
    px = proxied()
    with connect(px) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        assert read_all(sock).startswith(b"HTTP/1.1 400 ")


def test_pipelined_requests_are_answered_in_order(proxied: Callable[..., Proxied]) -> None:
    px = proxied(model="iris")
    slow = b"GET /slow?s=0.3 HTTP/1.1\r\nhost: x\r\n\r\n"
    last = b"GET /v2/health/ready HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
    with connect(px) as sock:
        sock.sendall(slow + infer() + last)  # one write: three requests
        answer = read_all(sock)
    parts = answer.split(b"HTTP/1.1 ")[1:]
    assert [p[:3] for p in parts] == [b"200", b"200", b"200"]
    assert parts[0].endswith(b"late") and b'"outputs"' in parts[1]
    assert b"connection: close" in parts[2]
    wait_until(lambda: len(px.events()) == 2, what="the inference call's 2 rows recorded")


def test_expect_100_continue_and_http_10(proxied: Callable[..., Proxied]) -> None:
    px = proxied()
    with connect(px) as sock:
        head, _, _ = infer(b"expect: 100-continue\r\n").partition(b"\r\n\r\n")
        sock.sendall(head + b"\r\n\r\n")
        assert sock.recv(65536) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(BODY)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
    with connect(px) as sock:
        sock.sendall(infer(version=b"1.0"))
        answer = read_all(sock)  # closed after one answer: no keep-alive for HTTP/1.0
    assert answer.startswith(b"HTTP/1.1 200 ") and b"connection: close\r\n" in answer
    assert answer.endswith(b"}")


def test_a_call_in_progress_finishes_when_the_proxy_stops(
    proxied: Callable[..., Proxied],
) -> None:
    px = proxied()
    answers: list[bytes] = []

    def call() -> None:
        with connect(px) as sock:
            sock.sendall(b"GET /slow?s=1 HTTP/1.1\r\nhost: x\r\n\r\n")
            answers.append(read_all(sock))

    caller = threading.Thread(target=call)
    caller.start()
    time.sleep(0.3)  # the call is at the model server
    worker = px.listener.worker
    worker.terminate()  # what the sidecar's stop sends it
    caller.join(10)
    assert worker.wait(10) == 0
    assert answers and answers[0].startswith(b"HTTP/1.1 200 ") and answers[0].endswith(b"late")
    assert b"connection: close" in answers[0]
