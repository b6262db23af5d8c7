"""uvicorn's HTTP protocol (httptools) with the bounds it lacks: the size of a request's
head, the time to send it, and the number of connections.

httptools buffers a header of any size before the app (and its bearer check) runs, and
uvicorn times out only idle keep-alive connections, so unauthenticated peers could hold
memory and connections at will. Here, before the parser sees the bytes, a head longer
than ``max_header_bytes`` gets 431; a head not complete within ``request_timeout_s``
(from the connection, or from the previous response) gets 408 (an idle connection is
closed without a word, as keep-alive timeouts do); a connection beyond
``max_connections`` gets 503 at once. Each is closed and reported through
``on_refused(status)``. The body's own deadline is the app's (:mod:`.app`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_REASONS = {
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}


def refusal(status: int, detail: str, extra: str = "") -> bytes:
    """A whole HTTP/1.1 answer with the sidecar's JSON error body, closing the connection."""
    body = json.dumps({"detail": detail}).encode()
    return (
        f"HTTP/1.1 {status} {_REASONS[status]}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n{extra}\r\n"
    ).encode() + body


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """See the module docstring; limits come from :func:`guarded_protocol`."""

    max_header_bytes = 64 * 1024
    request_timeout_s = 30.0
    max_connections = 1000
    on_refused: Callable[[int], None] = staticmethod(lambda status: None)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_bytes = 0
        self._in_head = True  # bytes now are a request head (or the wait for one)
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            self._refuse(
                503,
                f"too many connections (max_connections {self.max_connections}); retry later",
                "retry-after: 1\r\n",
            )
            return
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        # While a head is being read, the parser gets at most what is left of the head's
        # allowance at a time, so the bytes after the head's end (a body, sent in the
        # same read) never count against it; the rest goes to the parser in one piece.
        while self._in_head and data and not self.transport.is_closing():
            room = self.max_header_bytes - self._head_bytes
            if room <= 0:
                self._refuse(431, f"request head exceeds {self.max_header_bytes} bytes")
                return
            piece, data = (data, b"") if len(data) <= room else (data[:room], data[room:])
            self._head_bytes += len(piece)
            super().data_received(piece)
        if data and not self.transport.is_closing():
            super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True

    def on_headers_complete(self) -> None:
        self._in_head, self._head_bytes = False, 0
        self._disarm()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head, self._head_bytes = True, 0  # what follows is the next request's head
        if self._idle():  # answered before its body was read (a 401, a 413): the wait starts
            self._arm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._in_head and self._idle():  # waiting for the next head, or reading one
            self._arm()

    def _idle(self) -> bool:
        """No request in progress on this connection: answered, or none yet (a pipelined
        request that is being answered, or whose body is being read, is not idle)."""
        cycle = self.cycle
        return not self.transport.is_closing() and (cycle is None or cycle.response_complete)

    def _arm(self) -> None:
        self._disarm()
        self._head_timer = self.loop.call_later(self.request_timeout_s, self._head_timeout)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timeout(self) -> None:
        self._head_timer = None
        if not self._in_head or self.transport.is_closing():
            return
        if self._head_bytes == 0:  # idle: close quietly, as keep-alive timeouts do
            self.transport.close()
            return
        self._refuse(408, f"no complete request head within {self.request_timeout_s:g}s")

    def _refuse(self, status: int, detail: str, extra: str = "") -> None:
        self._disarm()
        if not self.transport.is_closing():
            self.transport.write(refusal(status, detail, extra))
            self.transport.close()
        self.on_refused(status)


def guarded_protocol(
    *,
    max_header_bytes: int,
    request_timeout_s: float,
    max_connections: int,
    on_refused: Callable[[int], None],
) -> type[GuardedHttpToolsProtocol]:
    """The protocol class for ``uvicorn.run(http=...)`` with these limits."""
    return type(
        "GuardedHttpToolsProtocol",
        (GuardedHttpToolsProtocol,),
        {
            "max_header_bytes": max_header_bytes,
            "request_timeout_s": request_timeout_s,
            "max_connections": max_connections,
            "on_refused": staticmethod(on_refused),
        },
    )
