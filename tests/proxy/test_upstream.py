"""The proxy's client to the model server against a raw TCP peer that answers exactly
the bytes each test gives: framings, 1xx, broken and cut-off answers, a kept-alive
connection the peer closed."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterable, Iterator

import httpx2 as httpx
import pytest

from tests.helpers import wait_until
from tests.proxy.conftest import Proxied

Answer = Callable[[bytes], Iterable[bytes | None]]  # request -> chunks to send (None: close)


class RawPeer:
    """Accepts connections and, for each request head, sends what ``answer`` returns."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.connections = 0
        self._threads: list[threading.Thread] = []
        self._conns: list[socket.socket] = []
        self._accept = threading.Thread(target=self._serve, daemon=True)
        self._accept.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            self._conns.append(conn)
            thread = threading.Thread(target=self._talk, args=(conn,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _talk(self, conn: socket.socket) -> None:
        with conn:
            buffered = b""
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                buffered += data
                if b"\r\n\r\n" not in buffered:
                    continue
                request, buffered = buffered, b""
                for piece in self.answer(request):
                    if piece is None:
                        return
                    conn.sendall(piece)

    def close(self) -> None:
        """Wake the blocked accept and reads (a plain close wakes neither), then join."""
        for sock in (self.sock, *self._conns):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self._accept.join(5)
        for thread in self._threads:
            thread.join(5)


@pytest.fixture
def peer() -> Iterator[Callable[[Answer], RawPeer]]:
    peers: list[RawPeer] = []

    def make(answer: Answer) -> RawPeer:
        peers.append(RawPeer(answer))
        return peers[-1]

    yield make
    for p in peers:
        p.close()


def call(px: Proxied, path: str = "/v1/models/m:predict") -> httpx.Response:
    with httpx.Client(timeout=10) as c:
        return c.post(px.url + path, content=b'{"instances": [[1]]}')


def test_an_answer_that_ends_with_the_connection(
    proxied: Callable[..., Proxied], peer: Callable[[Answer], RawPeer]
) -> None:
    raw = peer(
        lambda req: [
            b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n",
            b'{"predictions"',
            b": [5]}",
            None,
        ]
    )
    px = proxied(proxy_to=raw.url)
    answer = call(px)
    assert (answer.status_code, answer.content) == (200, b'{"predictions": [5]}')


def test_a_chunked_answer_and_informational_answers(
    proxied: Callable[..., Proxied], peer: Callable[[Answer], RawPeer]
) -> None:
    raw = peer(
        lambda req: [
            b"HTTP/1.1 100 Continue\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nx-a: 1\r\nx-a: 2\r\n\r\n",
            b"5\r\nhello\r\n",
            b"6\r\n world\r\n0\r\n\r\n",
        ]
    )
    px = proxied(proxy_to=raw.url)
    for _ in range(3):  # the connection is kept and reused
        answer = call(px)
        assert (answer.status_code, answer.content) == (200, b"hello world")
        assert answer.headers.get_list("x-a") == ["1", "2"]
    assert raw.connections == 1


def test_a_cut_off_answer_closes_the_callers_connection(
    proxied: Callable[..., Proxied], peer: Callable[[Answer], RawPeer]
) -> None:
    raw = peer(lambda req: [b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n", b"only part", None])
    px = proxied(proxy_to=raw.url)
    with pytest.raises(httpx.RemoteProtocolError):
        call(px)
    wait_until(lambda: px.metric('mlwatch_proxy_upstream_errors_total{reason="protocol"}') == 1)


def test_garbage_is_a_502(
    proxied: Callable[..., Proxied], peer: Callable[[Answer], RawPeer]
) -> None:
    raw = peer(lambda req: [b"SMTP ready\r\n\r\n", None])
    px = proxied(proxy_to=raw.url)
    assert call(px).status_code == 502
    # the worker's counts reach the sidecar with its next batch, after the answer
    wait_until(lambda: px.metric('mlwatch_proxy_upstream_errors_total{reason="protocol"}') == 1)


def test_a_kept_connection_the_peer_closed_is_replaced(
    proxied: Callable[..., Proxied], peer: Callable[[Answer], RawPeer]
) -> None:
    # keep-alive by the headers, but the peer closes after each answer: the proxy finds
    # the kept connection closed and takes a new one, without the caller noticing
    raw = peer(lambda req: [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", None])
    px = proxied(proxy_to=raw.url)
    for _ in range(5):
        assert call(px).content == b"ok"
    assert raw.connections == 5


def test_a_body_the_model_server_never_finishes_is_a_timeout(
    proxied: Callable[..., Proxied], peer: Callable[[Answer], RawPeer]
) -> None:
    import time

    def stalls(req: bytes) -> Iterator[bytes | None]:
        yield b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc"
        time.sleep(1.0)
        yield None

    raw = peer(stalls)
    px = proxied(proxy_to=raw.url, proxy_timeout_s=0.2)
    with pytest.raises(httpx.RemoteProtocolError):
        call(px)
    wait_until(lambda: px.metric('mlwatch_proxy_upstream_errors_total{reason="timeout"}') == 1)
