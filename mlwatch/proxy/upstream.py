"""Keep-alive connections to the one model server behind the proxy, and a call over one.

A call writes the request in one piece when its body is whole (most inference calls),
or streams it, and returns the answer's status and headers; its body is then read
chunk by chunk (:meth:`Call.chunks`), with reading paused while the caller is slower
than the model server. Each wait (a free connection, connecting, the answer's head,
its next chunk) is bounded by ``timeout_s``. An idle connection is kept for
``KEEPALIVE_S``, under the 5 s that uvicorn and most model servers keep one; a reused
connection found closed before any byte of the answer is replaced once, for a whole body.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

from mlwatch.errors import UpstreamError
from mlwatch.proxy.connection import Connection

KEEPALIVE_S = 4.0


async def _wait(future: asyncio.Future[Any], timeout_s: float, what: str) -> Any:
    """``future``'s result, or UpstreamError('timeout') after ``timeout_s``: a timer
    handle, cheaper than a task per wait."""
    if future.done():
        return future.result()

    def expire() -> None:
        if not future.done():
            future.set_exception(
                UpstreamError(f"no {what} within {timeout_s:g}s", reason="timeout")
            )

    handle = asyncio.get_running_loop().call_later(timeout_s, expire)
    try:
        return await future
    finally:
        handle.cancel()


class Call:
    """One answer being read: its head, then its body."""

    def __init__(self, upstream: Upstream, conn: Connection, status: int, headers: Any) -> None:
        self.upstream, self.conn = upstream, conn
        self.status, self.headers = status, headers

    async def chunks(self) -> AsyncIterator[bytes]:
        conn, timeout_s = self.conn, self.upstream.timeout_s
        while True:
            chunk = conn.next_chunk()
            if chunk is not None:
                yield chunk
            elif conn.error is not None:
                raise conn.error
            elif conn.done:
                return
            else:
                await _wait(conn.body_waiter(), timeout_s, "bytes of the answer")

    def body_ready(self) -> bool:
        """Whether some of the body, or its end, is here already."""
        conn = self.conn
        return bool(conn.chunks) or conn.done or conn.error is not None

    def close(self) -> None:
        """Give the connection back when the answer was read whole, else close it."""
        self.upstream.release(self.conn)


class Upstream:
    """The model server at ``url`` (http or https), at most ``max_connections`` at once."""

    def __init__(self, url: str, *, max_connections: int, timeout_s: float) -> None:
        parts = urlsplit(url)
        self.tls = ssl.create_default_context() if parts.scheme == "https" else None
        self.host = parts.hostname or "localhost"
        self.port = parts.port or (443 if self.tls else 80)
        self.prefix = parts.path.rstrip("/").encode()
        self.host_header = (parts.netloc.rpartition("@")[2]).encode()
        self.timeout_s = timeout_s
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: list[tuple[Connection, float]] = []

    async def send(
        self, method: str, target: bytes, head: bytes, body: Any, chunked: bool = False
    ) -> Call:
        """Send a request (``head``: its header lines, CRLF-terminated; ``body``: bytes, or
        an async iterator of them, sent chunked when ``chunked``) and read the answer's
        head; raises UpstreamError."""
        if self._slots.locked():  # all in use: wait_for cancels the acquire at the deadline
            try:
                await asyncio.wait_for(self._slots.acquire(), self.timeout_s)
            except asyncio.TimeoutError:
                raise UpstreamError(
                    f"no free connection within {self.timeout_s:g}s", reason="timeout"
                ) from None
        else:
            await self._slots.acquire()
        try:
            request = b"%s %s HTTP/1.1\r\n%s\r\n" % (method.encode(), self.prefix + target, head)
            for attempt in (0, 1):
                conn, reused = await self._connection()
                head_future = conn.start(method == "HEAD")
                try:
                    await self._write(conn, request, body, chunked)
                    status, headers = await _wait(head_future, self.timeout_s, "answer")
                except BaseException as exc:  # a caller gone mid-body, a cancel, a failure
                    head_future.cancel()  # nobody waits for this answer any more
                    conn.transport.close()
                    retry = reused and not conn.got_bytes and isinstance(body, bytes)
                    if attempt == 0 and retry and isinstance(exc, UpstreamError):
                        continue
                    raise
                return Call(self, conn, status, headers)
            raise AssertionError("unreachable")
        except BaseException:
            self._slots.release()
            raise

    async def _write(self, conn: Connection, request: bytes, body: Any, chunked: bool) -> None:
        if isinstance(body, bytes):  # one write, one segment for a small call
            conn.transport.write(request + body if len(body) < 65536 else request)
            if len(body) >= 65536:
                conn.transport.write(body)
            return
        conn.transport.write(request)
        async for chunk in body:
            if chunk:
                conn.transport.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
                await conn.drain()
            if conn.closed:
                raise UpstreamError("the model server closed the connection", reason="protocol")
        if chunked:
            conn.transport.write(b"0\r\n\r\n")

    async def _connection(self) -> tuple[Connection, bool]:
        now = time.monotonic()
        while self._idle:
            conn, since = self._idle.pop()
            if not conn.closed and now - since < KEEPALIVE_S:
                return conn, True
            conn.transport.close()
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(
                    Connection,
                    self.host,
                    self.port,
                    ssl=self.tls,
                    server_hostname=self.host if self.tls else None,
                ),
                self.timeout_s,
            )
        except (OSError, asyncio.TimeoutError) as exc:
            reason = "timeout" if isinstance(exc, asyncio.TimeoutError) else "connect"
            raise UpstreamError(
                f"cannot connect to {self.host}:{self.port}: {exc!r}", reason=reason
            ) from None
        return conn, False

    def release(self, conn: Connection) -> None:
        if conn.reusable and not conn.closed and len(self._idle) < 1000:
            self._idle.append((conn, time.monotonic()))
        elif conn.transport is not None:
            conn.transport.close()
        self._slots.release()

    async def aclose(self) -> None:
        while self._idle:
            self._idle.pop()[0].transport.close()
        await asyncio.sleep(0)  # let the transports finish closing
