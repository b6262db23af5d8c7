"""A request as the proxy forwards it (its body whole or streamed), where its answer goes,
what the proxy keeps to its own hop (RFC 9110 §7.6.1: the hop-by-hop headers, and those
the ``Connection`` header names), and the copy of a body it keeps for capture."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

from mlwatch.errors import CaptureError

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
# The model server's host is named instead; Expect was answered here (the body is read).
# Content-Length is set anew from the body as read (:meth:`.forward.Forwarder._send`).
SKIP_REQUEST = HOP_BY_HOP | {b"host", b"expect", b"content-length"}


@dataclass(slots=True)
class Request:
    """A caller's request: its head as it came (header names in lower case) and its body,
    whole or as a stream (:class:`~.caller.BodyStream`)."""

    method: str
    target: bytes  # the path and query as sent
    path: str  # the path, percent-decoded: what routing reads
    headers: list[tuple[bytes, bytes]]
    http11: bool
    keep_alive: bool
    length: int | None = None  # the Content-Length, as the parser checked it
    body: bytes | AsyncIterable[bytes] = b""
    streamed: Tee | None = None  # a streamed body's copy for capture


class CallerGone(CaptureError):
    """The caller went away before its body was read: nothing to forward or record.
    Never leaves this module."""


def end_to_end(
    headers: list[tuple[bytes, bytes]], skip: frozenset[bytes]
) -> list[tuple[bytes, bytes]]:
    """``headers`` without ``skip`` and without those the ``Connection`` header names.

    >>> end_to_end([(b"connection", b"x-a"), (b"x-a", b"1"), (b"x-b", b"2")], HOP_BY_HOP)
    [(b'x-b', b'2')]
    """
    named = {
        token.strip().lower()
        for key, value in headers
        if key.lower() == b"connection"
        for token in value.split(b",")
    }
    drop = skip | named if named else skip
    return [(k, v) for k, v in headers if k.lower() not in drop]


class Tee:
    """Keeps a copy of a body's chunks while they fit ``limit``; beyond it, nothing."""

    __slots__ = ("chunks", "limit", "size")

    def __init__(self, limit: int) -> None:
        self.chunks: list[bytes] | None = []
        self.size, self.limit = 0, limit

    def add(self, chunk: bytes) -> None:
        if self.chunks is not None:
            self.size += len(chunk)
            if self.size > self.limit:
                self.chunks = None
            else:
                self.chunks.append(chunk)

    def body(self) -> bytes | None:
        return None if self.chunks is None else b"".join(self.chunks)


class BodyStream:
    """A request body forwarded while it arrives, with reading paused while more than
    ``high_water`` bytes of it wait."""

    def __init__(self, transport: Any, limit: int, high_water: int) -> None:
        self.transport, self.tee, self.high_water = transport, Tee(limit), high_water
        self.chunks: collections.deque[bytes] = collections.deque()
        self.size, self.ended, self.gone = 0, False, False
        self.waiter: asyncio.Future[None] | None = None

    def feed(self, chunk: bytes) -> None:
        self.chunks.append(chunk)
        self.size += len(chunk)
        if self.size > self.high_water:
            self.transport.pause_reading()  # the caller waits while the model server reads
        self._wake()

    def end(self, gone: bool = False) -> None:
        self.ended, self.gone = True, gone
        self._wake()

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            if self.chunks:
                chunk = self.chunks.popleft()
                self.size -= len(chunk)
                if self.size <= self.high_water // 2 and not self.ended:
                    self.transport.resume_reading()
                self.tee.add(chunk)
                yield chunk
            elif self.gone:
                raise CallerGone("the caller went away while sending its body")
            elif self.ended:
                return
            else:
                self.waiter = asyncio.get_running_loop().create_future()
                await self.waiter


class Reply(Protocol):
    """Where a forwarded call's answer goes: the caller's connection (:mod:`.caller`)."""

    gone: bool

    def start(self, status: int, headers: list[tuple[bytes, bytes]], request: Request) -> None:
        """Write the answer's head."""

    def flush(self) -> None:
        """Write the head now (else it goes with the body's first piece)."""

    async def write(self, chunk: bytes) -> None:
        """Write a piece of its body."""

    def end(self) -> None:
        """The answer is whole."""

    def abort(self) -> None:
        """Close the connection mid-answer."""
