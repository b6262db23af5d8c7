"""The client against peers at ``sidecar_url`` that misbehave: an endless or enormous
answer, an answer trickled a byte at a time. The serving process's memory and the
worker's time stay bounded, the drop reason says what happened, and shutdown ends a
send in progress by its deadline.

Each peer is a raw socket server in this process that reads one request and answers
as its ``mode`` says; every loop is bounded in bytes and seconds.
"""

from __future__ import annotations

import socket
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator

import pytest

from mlwatch.client.exporter import ExportBatch, Result
from mlwatch.client.identity import Identity
from mlwatch.client.shipper import Shipper
from mlwatch.client.site import Site
from mlwatch.client.transport import HttpExporter

HEAD_202 = b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\n"
MiB = 1 << 20
#: Built before any measurement: tracemalloc sees the peer's allocations too.
BLOCK = b"100000\r\n" + b"x" * MiB + b"\r\n"
HUGE = HEAD_202 + b"Content-Length: 1000000000000\r\n\r\n" + b"x" * 65536


class Peer:
    """A server that answers every request with ``answer(conn)``; counts requests and
    the bytes it managed to send."""

    def __init__(self, answer: Callable[[socket.socket, Peer], None]) -> None:
        self.answer = answer
        self.requests = 0
        self.sent = 0
        self.stop = threading.Event()
        self.srv = socket.create_server(("127.0.0.1", 0))
        self.srv.settimeout(0.2)
        self.port = self.srv.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.srv.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            buf = b""
            try:
                while b"\r\n\r\n" not in buf:
                    buf += conn.recv(65536)
                self.requests += 1
                self.answer(conn, self)
            except OSError:
                pass  # the client closed the connection: what these tests want

    def send(self, conn: socket.socket, data: bytes) -> None:
        conn.sendall(data)
        self.sent += len(data)


@pytest.fixture
def peer() -> Iterator[Callable[[Callable[[socket.socket, Peer], None]], Peer]]:
    peers: list[Peer] = []

    def start(answer: Callable[[socket.socket, Peer], None]) -> Peer:
        peers.append(Peer(answer))
        return peers[-1]

    yield start
    for p in peers:
        p.stop.set()
        p.thread.join(5)
        p.srv.close()


def endless_chunked(conn: socket.socket, peer: Peer) -> None:
    peer.send(conn, HEAD_202 + b"Transfer-Encoding: chunked\r\n\r\n")
    end = time.monotonic() + 20
    while not peer.stop.is_set() and time.monotonic() < end and peer.sent < 2048 * MiB:
        peer.send(conn, BLOCK)


def huge_length(conn: socket.socket, peer: Peer) -> None:
    peer.send(conn, HUGE)
    time.sleep(2)


def trickle(conn: socket.socket, peer: Peer) -> None:
    for byte in HEAD_202 + b"X-A: " + b"a" * 200:
        if peer.stop.is_set():
            return
        peer.send(conn, bytes([byte]))
        time.sleep(0.1)


def export(exporter: HttpExporter, deadline_s: float) -> tuple[Result, float]:
    batch = ExportBatch("events", [{"model": "m", "latency_ms": 1}], time.monotonic() + deadline_s)
    start = time.monotonic()
    res = exporter.export(batch)
    assert isinstance(res, Result)
    return res, time.monotonic() - start


@pytest.mark.parametrize("answer", [endless_chunked, huge_length], ids=["endless", "1TB-length"])
def test_an_endless_or_enormous_answer_is_read_only_in_part(
    peer: Callable[..., Peer], answer: Callable[[socket.socket, Peer], None]
) -> None:
    server = peer(answer)
    exporter = HttpExporter(f"http://127.0.0.1:{server.port}", timeout_s=10)
    tracemalloc.start()
    try:
        for _ in range(3):  # each time on a new connection: the old one is closed
            res, took = export(exporter, 30)
            assert res is Result.REJECTED and took < 5  # a 202 that is not the sidecar's
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        exporter.shutdown()
    assert peak < 2 * MiB, f"the client held {peak / MiB:.1f} MiB of answer"
    assert server.requests == 3
    assert exporter.last_error is not None and "is not an mlwatch sidecar" in exporter.last_error


def test_a_trickled_answer_ends_the_attempt_at_send_timeout(peer: Callable[..., Peer]) -> None:
    server = peer(trickle)
    exporter = HttpExporter(f"http://127.0.0.1:{server.port}", timeout_s=0.5)
    res, took = export(exporter, 2.0)
    exporter.shutdown()
    assert res is Result.FAILED  # given up at the batch's deadline, not stuck in one read
    assert took < 4, f"one export took {took:.1f}s"
    assert server.requests >= 2  # each attempt was cut at timeout_s, then retried


def _shipper(url: str, *, send_timeout_s: float, retry_timeout_s: float) -> Shipper:
    return Shipper(
        HttpExporter(url, timeout_s=send_timeout_s),
        queue_size=1000,
        batch_size=10,
        flush_interval_s=0.05,
        retry_timeout_s=retry_timeout_s,
        identity_of=lambda s: Identity(s.model, "1", "c"),
        registration_of=lambda s: {"model": s.model, "version": "1"},
    )


def test_a_trickling_peer_counts_send_failed_not_only_queue_full(
    peer: Callable[..., Peer],
) -> None:
    server = peer(trickle)
    shipper = _shipper(f"http://127.0.0.1:{server.port}", send_timeout_s=0.3, retry_timeout_s=1)
    site = Site(name="p", model="m")
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            shipper.record(site, 1000, {"x": 1}, 1, None, None)
            time.sleep(0.005)
            if any(reason == "send_failed" for _, reason in shipper.drops.snapshot()):
                break
        assert any(reason == "send_failed" for _, reason in shipper.drops.snapshot())
    finally:
        shipper.shutdown(1)


def test_shutdown_ends_a_send_in_progress_by_its_deadline(peer: Callable[..., Peer]) -> None:
    server = peer(trickle)
    shipper = _shipper(f"http://127.0.0.1:{server.port}", send_timeout_s=60, retry_timeout_s=60)
    site = Site(name="p", model="m")
    shipper.record(site, 1000, {"x": 1}, 1, None, None)
    end = time.monotonic() + 10
    while server.requests == 0 and time.monotonic() < end:
        time.sleep(0.01)
    assert server.requests >= 1
    time.sleep(0.3)  # the worker is inside the trickled answer now
    start = time.monotonic()
    assert not shipper.shutdown(1.0)  # the event in the trickled request is lost
    assert time.monotonic() - start < 2.0
    assert shipper.thread is not None and not shipper.thread.is_alive()


def closing_slowly(conn: socket.socket, peer: Peer) -> None:
    """A 202 with Connection: close whose body comes in a later segment (a proxy, or a
    server shutting down gracefully)."""
    body = b'{"accepted":1}'
    peer.send(conn, HEAD_202 + f"Connection: close\r\nContent-Length: {len(body)}\r\n\r\n".encode())
    time.sleep(0.05)
    peer.send(conn, body)


def test_an_answer_that_closes_the_connection_is_read_whole(peer: Callable[..., Peer]) -> None:
    server = peer(closing_slowly)
    exporter = HttpExporter(f"http://127.0.0.1:{server.port}", timeout_s=5)
    try:
        for _ in range(3):
            res, _ = export(exporter, 10)
            assert res is Result.OK, exporter.last_error
    finally:
        exporter.shutdown()
    assert server.requests == 3  # nothing sent twice
