"""One keep-alive HTTP/1.1 connection to the model server: an asyncio protocol that
writes a request in one piece and reads the answer with httptools, the C parser
uvicorn uses for requests.

It is this small because a proxy needs little of a client: one origin, no redirects,
cookies or decoding; bodies are passed through as bytes. Framing is the parser's
(Content-Length, chunked, or until the connection closes). An answer to HEAD has no
body whatever its headers say, so its connection is not reused; 1xx answers are skipped.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Any

import httptools

from mlwatch.errors import UpstreamError

HIGH_WATER = 16  # body chunks read ahead of the caller before reading pauses


class Connection(asyncio.Protocol):
    """See the module doc; :mod:`.upstream` drives it."""

    def __init__(self) -> None:
        self.transport: Any = None
        self.closed = False
        self.reusable = False  # true once an answer was read whole and keep-alive allows
        self._loop = asyncio.get_running_loop()
        self._writable: asyncio.Future[None] | None = None

    def start(self, head_only: bool) -> asyncio.Future[tuple[int, list[tuple[bytes, bytes]]]]:
        """Expect an answer: its head is the returned future's result."""
        self.parser = httptools.HttpResponseParser(self)
        self.head: asyncio.Future[Any] = self._loop.create_future()
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: collections.deque[bytes] = collections.deque()
        self.waiter: asyncio.Future[None] | None = None
        self.done = self.informational = self.got_bytes = False
        self.framed = False  # Content-Length or chunked: a close before the end is an error
        self.head_only, self.reusable = head_only, False
        self.error: UpstreamError | None = None
        return self.head

    # -- asyncio.Protocol -------------------------------------------------
    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if not hasattr(self, "head") or (self.done and not self.chunks):
            self.reusable = False  # bytes nobody asked for: the connection is not sane
            self.transport.close()
            return
        self.got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamError(f"the model server broke HTTP: {exc}", reason="protocol"))
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed, self.reusable = True, False
        if not hasattr(self, "head") or self.done:
            return
        if self.head.done() and not self.framed and not self.head_only:
            self.done = True  # a body that ends with the connection
            self._wake()
        else:
            self._fail(UpstreamError("the model server closed the connection", reason="protocol"))

    def pause_writing(self) -> None:
        self._writable = self._loop.create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        self._writable = None

    async def drain(self) -> None:
        """Wait while the transport's write buffer is over its high-water mark."""
        if self._writable is not None:
            await self._writable

    # -- httptools callbacks ------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if status < 200:  # 100 Continue and friends: the real answer follows
            self.informational, self.headers = True, []
            return
        self.framed = any(
            k.lower() in (b"content-length", b"transfer-encoding") for k, _ in self.headers
        )
        if not self.head.done():
            self.head.set_result((status, self.headers))
        if self.head_only:
            self.done = True
            self._wake()

    def on_body(self, body: bytes) -> None:
        if self.head_only:
            return
        self.chunks.append(body)
        if len(self.chunks) >= HIGH_WATER:
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self.informational:
            self.informational = False
            return
        self.done = True
        self.reusable = self.parser.should_keep_alive() and not self.head_only
        self._wake()

    # -- reading the body ---------------------------------------------------
    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def _fail(self, error: UpstreamError) -> None:
        self.error, self.reusable = error, False
        if not self.head.done():
            self.head.set_exception(error)
        self._wake()

    def body_waiter(self) -> asyncio.Future[None]:
        """A future done when the body has more to read, or ended, or failed."""
        self.waiter = self._loop.create_future()
        return self.waiter

    def next_chunk(self) -> bytes | None:
        """A body chunk read ahead, or None when there is none yet."""
        if self.chunks:
            chunk = self.chunks.popleft()
            if len(self.chunks) == HIGH_WATER // 2 and not self.closed:
                self.transport.resume_reading()
            return chunk
        return None
