"""The proxy's listener (:class:`ProxyServer`) and each caller's keep-alive HTTP/1.1
connection to it: an asyncio protocol that reads requests with httptools and writes the
answers :mod:`.forward` gives it.

It is this small because a proxy passes bodies as bytes: nothing is decoded and no
framework runs between the socket and the model server. It keeps the bounds of the
sidecar's own listener (:mod:`mlwatch.sidecar.protocol`): a head longer than
``max_header_bytes`` gets 431, one not complete within ``request_timeout_s`` 408 (an
idle connection is closed without a word), a connection beyond ``max_connections`` 503.
Requests on one connection are answered in order (pipelined ones wait, with reading
paused). A body of known length up to :data:`WHOLE_MAX` is read whole before the call is
forwarded (one write to the model server); a longer or chunked one is streamed.
"""

from __future__ import annotations

import asyncio
import collections
import socket
import urllib.parse
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

import httptools

from mlwatch.proxy.forward import Forwarder
from mlwatch.proxy.framing import BodyStream, Request
from mlwatch.sidecar.protocol import refusal

WHOLE_MAX = 64 * 1024  # as much as a connection holds before reading pauses
HIGH_WATER = 256 * 1024  # bytes of a streamed body read ahead before reading pauses
_BAD_REQUEST = (
    b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 29\r\nconnection: close\r\n\r\nInvalid HTTP request received"
)


class CallerProtocol(asyncio.Protocol):
    """See the module doc; :class:`ProxyServer` makes one per connection."""

    def __init__(self, server: ProxyServer) -> None:
        self.server = server
        self.transport: Any = None
        self.parser = httptools.HttpRequestParser(self)
        self.gone = False
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._request: Request | None = None  # the one being read
        self._body: list[bytes] | BodyStream = []
        self._pending: collections.deque[Request] = collections.deque()
        self._busy = False  # a request is being answered
        self._in_head, self._head_bytes = True, 0
        self._timer: asyncio.TimerHandle | None = None
        self._writable: asyncio.Future[None] | None = None
        self.keep_alive = self.chunked = False
        self._head = b""  # an answer's head not yet written

    # -- asyncio.Protocol -------------------------------------------------
    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        server = self.server
        server.connections.add(self)
        if len(server.connections) > server.max_connections:
            self._refuse(
                503,
                f"too many connections (max_connections {server.max_connections}); retry later",
                "retry-after: 1\r\n",
            )
            return
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self.gone = True
        self.server.connections.discard(self)
        self._disarm()
        if isinstance(self._body, BodyStream) and not self._body.ended:
            self._body.end(gone=True)
        self.resume_writing()

    def data_received(self, data: bytes) -> None:
        # While a head is read, the parser gets at most what is left of its allowance at
        # a time, so that a body sent in the same read never counts against it.
        limit = self.server.max_header_bytes
        try:
            while self._in_head and data and not self.transport.is_closing():
                room = limit - self._head_bytes
                if room <= 0:
                    self._refuse(431, f"request head exceeds {limit} bytes")
                    return
                piece, data = (data, b"") if len(data) <= room else (data[:room], data[room:])
                self._head_bytes += len(piece)
                self.parser.feed_data(piece)
            if data and not self.transport.is_closing():
                self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            pass  # answered as a plain call: Upgrade is hop-by-hop and is not forwarded
        except httptools.HttpParserError:
            self.transport.write(_BAD_REQUEST)
            self.transport.close()

    def pause_writing(self) -> None:
        self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        self._writable = None

    # -- httptools callbacks ------------------------------------------------
    def on_message_begin(self) -> None:
        self._url, self._headers, self._in_head = b"", [], True

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self._in_head, self._head_bytes = False, 0
        self._disarm()
        parser, headers = self.parser, self._headers
        url = httptools.parse_url(self._url)
        path = url.path.decode("latin-1")
        http11 = parser.get_http_version() != "1.0"
        request = Request(
            parser.get_method().decode("ascii"),
            url.path + (b"?" + url.query if url.query else b""),
            urllib.parse.unquote(path) if "%" in path else path,
            headers,
            http11,
            http11 and parser.should_keep_alive(),
        )
        length = next((v for k, v in headers if k == b"content-length"), None)
        streamed = length is None and any(k == b"transfer-encoding" for k, _ in headers)
        if streamed or (length is not None and length.isdigit() and int(length) > WHOLE_MAX):
            self._body = BodyStream(self.transport, self.server.forwarder.limit, HIGH_WATER)
            request.body, request.streamed = self._body, self._body.tee
            self._dispatch(request)
        else:
            self._body, self._request = [], request
        if http11 and any(k == b"expect" and v.lower() == b"100-continue" for k, v in headers):
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        if isinstance(self._body, BodyStream):
            self._body.feed(body)
        else:
            self._body.append(body)

    def on_message_complete(self) -> None:
        self._in_head, self._head_bytes = True, 0  # what follows is the next request's head
        if isinstance(self._body, BodyStream):
            self._body.end()
        elif self._request is not None:
            self._request.body = b"".join(self._body)
            self._dispatch(self._request)
        self._request, self._body = None, []

    # -- answering ------------------------------------------------------------
    def _dispatch(self, request: Request) -> None:
        if self._busy:
            self._pending.append(request)
            self.transport.pause_reading()
            return
        self._busy = True
        self.server.start(self, request)

    def start(self, status: int, headers: list[tuple[bytes, bytes]], request: Request) -> None:
        """Write an answer's head; its body (if any) follows with :meth:`write`."""
        has_length = any(k == b"content-length" for k, _ in headers)
        bodiless = request.method == "HEAD" or status in (204, 304) or status < 200
        self.chunked = not (has_length or bodiless) and request.http11
        self.keep_alive = request.keep_alive and not self.server.stopping
        if not (has_length or bodiless or request.http11):
            self.keep_alive = False  # the body ends with the connection
        try:
            reason = HTTPStatus(status).phrase.encode()
        except ValueError:
            reason = b""
        head = [b"HTTP/1.1 %d %s\r\n" % (status, reason)]
        head += [b"%s: %s\r\n" % pair for pair in headers]
        if self.chunked:
            head.append(b"transfer-encoding: chunked\r\n")
        if not self.keep_alive:
            head.append(b"connection: close\r\n")
        self._head = b"".join(head) + b"\r\n"  # written with the first piece of the body

    def flush(self) -> None:
        """Write the head now: the body is not here yet."""
        if self._head and not self.gone:
            self.transport.write(self._head)
        self._head = b""

    async def write(self, chunk: bytes) -> None:
        """A piece of the answer's body (dropped once the caller is gone)."""
        if self.gone or not chunk:
            return
        data = b"%x\r\n%s\r\n" % (len(chunk), chunk) if self.chunked else chunk
        self.transport.write(self._head + data if self._head else data)
        self._head = b""
        if self._writable is not None:
            await self._writable

    def end(self) -> None:
        """The answer is whole: on to the next request, or close."""
        if self.gone:
            return
        if self._head or self.chunked:
            self.transport.write(self._head + (b"0\r\n\r\n" if self.chunked else b""))
            self._head = b""
        self._busy = False
        if isinstance(self._body, BodyStream):  # answered before its body was read whole
            self.keep_alive = False
        if not self.keep_alive:
            self.transport.close()
        elif self._pending:
            self.transport.resume_reading()
            self._dispatch(self._pending.popleft())
        else:
            self.transport.resume_reading()
            self._arm()

    def abort(self) -> None:
        """End the connection mid-answer, so a cut-off body is never taken for whole."""
        self._busy = False
        self.transport.close()

    def shutdown(self) -> None:
        """The proxy stops: close now when idle, else after the answer in progress."""
        if self._busy or self._request is not None or isinstance(self._body, BodyStream):
            self.keep_alive = False
        else:
            self.transport.close()

    # -- the head's deadline ------------------------------------------------
    def _arm(self) -> None:
        self._disarm()
        self._timer = self.server.loop.call_later(self.server.request_timeout_s, self._head_timeout)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _head_timeout(self) -> None:
        self._timer = None
        if not self._in_head or self._busy or self.transport.is_closing():
            return
        if self._head_bytes == 0:  # idle: close quietly, as keep-alive timeouts do
            self.transport.close()
            return
        self._refuse(408, f"no complete request head within {self.server.request_timeout_s:g}s")

    def _refuse(self, status: int, detail: str, extra: str = "") -> None:
        self._disarm()
        if not self.transport.is_closing():
            self.transport.write(refusal(status, detail, extra))
            self.transport.close()
        self.server.refused(status)


class ProxyServer:
    """The proxy's listener: a :class:`CallerProtocol` per connection, each call
    forwarded by a task of its own (:mod:`.forward`)."""

    def __init__(
        self, settings: dict[str, Any], forwarder: Forwarder, refused: Callable[[int], None]
    ) -> None:
        self.forwarder, self.refused = forwarder, refused
        self.max_header_bytes: int = settings["max_header_bytes"]
        self.request_timeout_s: float = settings["request_timeout_s"]
        self.max_connections: int = settings["max_connections"]
        self.connections: set[CallerProtocol] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.stopping = False
        self.loop = asyncio.get_running_loop()
        self._server: asyncio.Server | None = None

    async def serve(self, listen: socket.socket) -> None:
        self._server = await self.loop.create_server(
            lambda: CallerProtocol(self), sock=listen, backlog=2048
        )

    def start(self, caller: CallerProtocol, request: Request) -> None:
        """Forward ``request`` in a task of its own (kept until done)."""
        task = self.loop.create_task(self.forwarder.forward(request, caller))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def stop(self, timeout_s: float) -> None:
        """Stop accepting, let calls in progress finish (up to ``timeout_s``), close."""
        self.stopping = True
        if self._server is not None:
            self._server.close()
        for caller in list(self.connections):
            caller.shutdown()
        deadline = self.loop.time() + timeout_s
        while (self.connections or self.tasks) and self.loop.time() < deadline:
            await asyncio.sleep(0.02)
        for caller in list(self.connections):
            caller.transport.abort()
        for task in list(self.tasks):
            task.cancel()
