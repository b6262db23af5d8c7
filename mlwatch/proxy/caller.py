"""The proxy's listener (:class:`ProxyServer`) and each caller's keep-alive HTTP/1.1
connection to it: an asyncio protocol that reads requests with httptools and writes the
answers :mod:`.forward` gives it.

It is this small because a proxy passes bodies as bytes: nothing is decoded and no
framework runs between the socket and the model server. It keeps the bounds of the
sidecar's own listener (:mod:`mlwatch.sidecar.protocol`): a head longer than
``max_header_bytes`` gets 431, one not complete within ``request_timeout_s`` 408 (an
idle connection is closed without a word), a connection beyond ``max_connections`` 503,
and a body that stalls (no byte of it within ``request_timeout_s`` while the proxy is
reading) 408 too, so that a caller cannot hold the model server's connections.
Requests on one connection are answered in order (pipelined ones wait, with reading
paused); a request starts only once the bytes read with it parsed, so that one the
parser rejects is never begun at the model server. A body of known length up to
:data:`WHOLE_MAX` is read whole before the call is forwarded (one write to the model
server); a longer or chunked one is streamed.
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
        self._reading: Request | None = None  # the one whose body is being read
        self._body: list[bytes] | BodyStream = []
        self._pending: collections.deque[Request] = collections.deque()
        self._current: Request | None = None  # the one being answered
        self._busy = self._answering = False  # answering it; its head given
        self._continue = False  # the request being read waits for 100 Continue
        self._bad = False  # the parser failed after the request being answered
        self._in_head, self._head_bytes, self._progress = True, 0, False
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
                self._feed(piece)
            if data and not self.transport.is_closing():
                self._feed(data)
        except httptools.HttpParserError:
            self._broken()
            return
        self._next()
        self._maybe_continue()

    def _feed(self, data: bytes) -> None:
        """Parse ``data``. A request with ``Upgrade`` is answered as a plain call (Upgrade
        is hop-by-hop and not forwarded): parsing goes on after its head."""
        while data:
            try:
                self.parser.feed_data(data)
                return
            except httptools.HttpParserUpgrade as exc:
                data = data[exc.args[0] :] if exc.args else b""

    def _broken(self) -> None:
        """Bytes the parser rejects: requests read with them are never begun; the 400 is
        the answer after the one in progress (if its body was read whole)."""
        self._pending.clear()
        self.transport.pause_reading()
        if self._busy and self._reading is not self._current:
            self._bad = True
        else:
            self._cut(_BAD_REQUEST, None)

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
        parser, headers = self.parser, self._headers
        length = _length(headers)
        chunked = length is None and any(k == b"transfer-encoding" for k, _ in headers)
        if parser.should_upgrade() and (chunked or length):
            # llhttp leaves the body of a request with Upgrade unread: it would be taken
            # for the next request. A failure here is the parser's error: a 400.
            raise ValueError("a request with Upgrade and a body")
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
            length,
        )
        self._reading, self._progress = request, False
        if chunked or (length or 0) > WHOLE_MAX:
            self._body = BodyStream(self.transport, self.server.forwarder.limit, HIGH_WATER)
            request.body, request.streamed = self._body, self._body.tee
            self._pending.append(request)
        else:
            self._body = []
        expect = any(k == b"expect" and v.lower() == b"100-continue" for k, v in headers)
        self._continue = http11 and expect and bool(chunked or length)
        self._arm()  # the body's deadline

    def on_body(self, body: bytes) -> None:
        self._progress = True
        if isinstance(self._body, BodyStream):
            self._body.feed(body)
        else:
            self._body.append(body)

    def on_message_complete(self) -> None:
        self._in_head, self._head_bytes = True, 0  # what follows is the next request's head
        request, self._reading, self._continue = self._reading, None, False
        if isinstance(self._body, BodyStream):
            self._body.end()
        elif request is not None:
            request.body = b"".join(self._body)
            self._pending.append(request)
        self._body = []
        self._disarm()

    # -- answering ------------------------------------------------------------
    def _next(self) -> None:
        """Start the next request read, unless one is being answered (then reading
        pauses while requests wait)."""
        if self._busy or not self._pending or self.transport.is_closing():
            if self._pending:
                self.transport.pause_reading()
            return
        self._busy, self._answering = True, False
        self._current = self._pending.popleft()
        if self._pending:
            self.transport.pause_reading()
        self.server.start(self, self._current)

    def _maybe_continue(self) -> None:
        """``100 Continue`` for the request being read, once it is the next to answer
        (never inside another answer)."""
        reading = self._reading
        if not self._continue or reading is None or self.transport.is_closing():
            return
        if self._current is reading or not (self._busy or self._pending):
            self._continue = False
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def start(self, status: int, headers: list[tuple[bytes, bytes]], request: Request) -> None:
        """Write an answer's head; its body (if any) follows with :meth:`write`."""
        self._answering = True
        has_length = any(k == b"content-length" for k, _ in headers)
        bodiless = request.method == "HEAD" or status in (204, 304) or status < 200
        self.chunked = not (has_length or bodiless) and request.http11
        self.keep_alive = request.keep_alive and not self.server.stopping and not self._bad
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
        self._busy, current, self._current = False, self._current, None
        if self._bad:  # the bytes after this request did not parse
            self.transport.write(_BAD_REQUEST)
            self.keep_alive = False
        if self._reading is not None and self._reading is current:
            self.keep_alive = False  # answered before its body was read whole
        if not self.keep_alive:
            self.transport.close()
            return
        self.transport.resume_reading()
        if self._pending:
            self._next()
        elif self._reading is None:
            self._arm()  # the next head's deadline
        self._maybe_continue()

    def abort(self) -> None:
        """End the connection mid-answer, so a cut-off body is never taken for whole."""
        self._busy = False
        self.transport.close()

    def shutdown(self) -> None:
        """The proxy stops: close now when idle, else after the answer in progress."""
        if self._busy or self._reading is not None:
            self.keep_alive = False
        else:
            self.transport.close()

    # -- deadlines -------------------------------------------------------------
    def _arm(self) -> None:
        self._disarm()
        self._timer = self.server.loop.call_later(self.server.request_timeout_s, self._expired)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        if self._reading is not None:
            self._body_timeout()
        elif self._in_head and not self._busy:
            self._head_timeout()

    def _head_timeout(self) -> None:
        if self._head_bytes == 0:  # idle: close quietly, as keep-alive timeouts do
            self.transport.close()
            return
        self._refuse(408, f"no complete request head within {self.server.request_timeout_s:g}s")

    def _body_timeout(self) -> None:
        """No byte of the body for ``request_timeout_s``: 408, unless the proxy itself
        was not reading (the model server reads slowly, or the request waits its turn)."""
        waits = self._busy and self._current is not self._reading
        if self._progress or waits or not self.transport.is_reading():
            self._progress = False
            self._arm()
            return
        detail = f"no byte of the request body within {self.server.request_timeout_s:g}s"
        self._cut(refusal(408, detail), 408)

    def _cut(self, answer: bytes, counted: int | None) -> None:
        """Answer the request being read with ``answer`` and close (only close when its
        answer has begun: the caller then sees a cut-off answer)."""
        self._disarm()
        if not (self._busy and self._answering):
            self.transport.write(answer)
        self.transport.close()
        if counted is not None:
            self.server.refused(counted)

    def _refuse(self, status: int, detail: str, extra: str = "") -> None:
        self._disarm()
        if not self.transport.is_closing():
            self.transport.write(refusal(status, detail, extra))
            self.transport.close()
        self.server.refused(status)


def _length(headers: list[tuple[bytes, bytes]]) -> int | None:
    """The Content-Length as a number (the parser has checked there is at most one, of
    digits, perhaps with spaces around them)."""
    value = next((v for k, v in headers if k == b"content-length"), None)
    return None if value is None else int(value.strip(b" \t"))


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
