"""A misbehaving Elasticsearch node: a raw HTTP/1.1 server whose answers a test scripts.

A real node cannot be made to answer a malformed bulk body, hang, or stream without end,
so this one exists for that alone (the real node's tests are in tests/integration). It
reads each request whole, hands it to ``answer(request) -> Answer`` and writes what the
answer says, byte for byte: a body, a status, silence, an endless or a trickled body.
"""

from __future__ import annotations

import contextlib
import gzip
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

PRODUCT = b"X-Elastic-Product: Elasticsearch\r\n"


@dataclass
class Request:
    method: str
    path: str
    body: bytes

    def documents(self) -> list[tuple[str, str]]:
        """``(index, _id)`` of each operation of a bulk body."""
        lines = self.body.splitlines()
        return [
            (a["create"]["_index"], a["create"]["_id"])
            for a in (orjson.loads(line) for line in lines[::2])
        ]


@dataclass
class Answer:
    """What to write back. ``mode``: ``body`` (status, headers, body), ``hang`` (nothing,
    until the node stops), ``endless`` (a chunked 200 body without end), ``trickle``
    (``body`` one byte every ``every`` seconds, after the headers)."""

    status: int = 200
    body: bytes = b'{"acknowledged":true}'
    mode: str = "body"
    content_type: bytes = b"application/json"
    every: float = 0.2


def items(request: Request, item: Callable[[str, str], Any]) -> Answer:
    """A bulk answer whose items ``item(index, _id)`` writes (any other request, such as
    a template's, is acknowledged)."""
    if not request.path.startswith("/_bulk"):
        return Answer()
    docs = [item(index, doc_id) for index, doc_id in request.documents()]
    return Answer(body=orjson.dumps({"took": 1, "errors": True, "items": docs}))


def created(request: Request) -> Answer:
    """What a healthy node answers: every document created."""
    return items(request, lambda index, doc_id: {"create": {"_id": doc_id, "status": 201}})


@dataclass
class BadNode:
    """The server (127.0.0.1, a free port) and what it was asked."""

    answer: Callable[[Request], Answer] = created
    requests: list[Request] = field(default_factory=list)
    #: where each endless body ends after all, so that a client without a bound fails a
    #: test instead of the machine
    endless_bytes: int = 512 << 20

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port = int(self._listener.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._threads: list[threading.Thread] = []
        self._accepting = threading.Thread(target=self._serve, daemon=True)
        self._accepting.start()

    def bulk_requests(self) -> list[Request]:
        return [r for r in self.requests if r.path.startswith("/_bulk")]

    def stop(self) -> None:
        self._stop.set()
        self._accepting.join(5)
        self._listener.close()
        for thread in self._threads:
            thread.join(5)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            thread = threading.Thread(target=self._connection, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _connection(self, conn: socket.socket) -> None:
        conn.settimeout(0.2)
        reader = _Reader(conn, self._stop)
        with contextlib.suppress(OSError, EOFError), conn:
            while not self._stop.is_set():
                request = reader.request()
                self.requests.append(request)
                if not self._write(conn, self.answer(request)):
                    return

    def _write(self, conn: socket.socket, answer: Answer) -> bool:
        """Write ``answer``; False when the connection must end after it."""
        head = b"HTTP/1.1 %d X\r\n" % answer.status + PRODUCT
        head += b"Content-Type: " + answer.content_type + b"\r\n"
        if answer.mode == "hang":
            self._stop.wait()
            return False
        if answer.mode == "endless":
            conn.sendall(head + b"Transfer-Encoding: chunked\r\n\r\n")
            block = b"%x\r\n%s\r\n" % (1 << 16, b" " * (1 << 16))
            sent = 0
            while not self._stop.is_set() and sent < self.endless_bytes:
                conn.sendall(block)
                sent += len(block)
            return False
        conn.sendall(head + b"Content-Length: %d\r\n\r\n" % len(answer.body))
        if answer.mode == "trickle":
            for i in range(len(answer.body)):
                if self._stop.wait(answer.every):
                    return False
                conn.sendall(answer.body[i : i + 1])
            return True
        conn.sendall(answer.body)
        return True


class _Reader:
    """Requests off one connection (Content-Length bodies, gzip'd or not)."""

    def __init__(self, conn: socket.socket, stop: threading.Event) -> None:
        self.conn = conn
        self.stop = stop
        self.buf = b""

    def _more(self) -> None:
        while not self.stop.is_set():
            try:
                data = self.conn.recv(1 << 16)
            except TimeoutError:
                continue
            if not data:
                raise EOFError
            self.buf += data
            return
        raise EOFError

    def request(self) -> Request:
        while b"\r\n\r\n" not in self.buf:
            self._more()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = {k.lower(): v.strip() for k, v in (h.split(":", 1) for h in lines[1:])}
        size = int(headers.get("content-length", "0"))
        deadline = time.monotonic() + 10
        while len(self.buf) < size and time.monotonic() < deadline:
            self._more()
        body, self.buf = self.buf[:size], self.buf[size:]
        if headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        return Request(method, path, body)
