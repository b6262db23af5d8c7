"""The channel from the proxy's worker process to the sidecar: forwarded calls and the
worker's counts, in batches over a local socket pair.

The worker forwards; the sidecar records. Keeping them in two processes means recording
(parsing bodies, the spool's durable writes, the store) never holds the interpreter lock
the forwarding loop needs. The worker only appends a call to a list; the list goes to the
sidecar every :data:`FLUSH_S`, or at once when it holds :data:`BATCH_CALLS` calls, as one
length-prefixed pickle (both ends are this program, on one machine). When the sidecar
reads slower than calls come, at most :data:`MAX_UNSENT_BYTES` wait in the worker; beyond
that calls are dropped and counted (``queue_full``), and forwarding goes on.
"""

from __future__ import annotations

import asyncio
import pickle
import socket
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from mlwatch.proxy.exchange import Exchange

FLUSH_S = 0.02
BATCH_CALLS = 256
MAX_UNSENT_BYTES = 16 * 1024 * 1024
_LENGTH = struct.Struct("!I")


@dataclass
class Counts:
    """What the worker counts between two batches: answers by status class, calls the
    model server did not answer by reason, calls not sent for capture, connections the
    listener refused by status. The sidecar adds them to its metrics."""

    codes: dict[str, int] = field(default_factory=dict)
    upstream: dict[str, int] = field(default_factory=dict)
    refused: dict[int, int] = field(default_factory=dict)
    dropped: int = 0

    def answered(self, status: int) -> None:
        code = f"{min(max(status // 100, 1), 5)}xx"
        self.codes[code] = self.codes.get(code, 0) + 1

    def upstream_failed(self, reason: str) -> None:
        self.upstream[reason] = self.upstream.get(reason, 0) + 1

    def refusal(self, status: int) -> None:
        self.refused[status] = self.refused.get(status, 0) + 1

    def __bool__(self) -> bool:
        return bool(self.codes or self.upstream or self.refused or self.dropped)

    def take(self) -> Counts:
        """What was counted so far; counting starts again from zero."""
        taken = Counts(self.codes, self.upstream, self.refused, self.dropped)
        self.codes, self.upstream, self.refused, self.dropped = {}, {}, {}, 0
        return taken


class Shipper(asyncio.Protocol):
    """The worker's end: batches calls and counts onto the socket, never blocking."""

    def __init__(self, on_lost: Callable[[], None]) -> None:
        self.counts = Counts()
        self._calls: list[Exchange] = []
        self._timer: asyncio.TimerHandle | None = None
        self._transport: Any = None
        self._on_lost = on_lost

    def connection_made(self, transport: Any) -> None:
        self._transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._on_lost()  # the sidecar is gone: nobody records what is forwarded

    def eof_received(self) -> bool:
        return False  # close: connection_lost follows

    def submit(self, ex: Exchange) -> None:
        """Queue a forwarded call for the sidecar (never raises, never waits)."""
        transport = self._transport
        if transport is None or transport.get_write_buffer_size() > MAX_UNSENT_BYTES:
            self.counts.dropped += 1
            self._soon()  # the count goes out even when no call follows
            return
        self._calls.append(ex)
        if len(self._calls) >= BATCH_CALLS:
            self.flush()
        else:
            self._soon()

    def refused(self, status: int) -> None:
        """Count a connection the listener refused (sent with the next batch)."""
        self.counts.refusal(status)
        self._soon()

    def _soon(self) -> None:
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(FLUSH_S, self.flush)

    def send(self, message: tuple[Any, ...]) -> None:
        if self._transport is not None:
            payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
            self._transport.write(_LENGTH.pack(len(payload)) + payload)

    def flush(self) -> None:
        """Send what is queued and what was counted since the last batch."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._calls or self.counts:
            calls, self._calls = self._calls, []
            self.send(("batch", calls, self.counts.take()))

    async def drain(self, timeout_s: float) -> None:
        """Wait until what was sent has left (the sidecar reads it), then close."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while self._transport is not None and self._transport.get_write_buffer_size():
            if asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.01)
        if self._transport is not None:
            self._transport.close()


def messages(stream: BinaryIO) -> Iterator[tuple[Any, ...]]:
    """The sidecar's end: the worker's messages until it closes its end."""
    while True:
        head = stream.read(_LENGTH.size)
        if len(head) < _LENGTH.size:
            return
        (length,) = _LENGTH.unpack(head)
        payload = stream.read(length)
        if len(payload) < length:
            return  # the worker died in the middle of a message
        yield pickle.loads(payload)


def pair() -> tuple[socket.socket, socket.socket]:
    """The sidecar's end and the worker's end (inheritable) of a new channel."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    theirs.set_inheritable(True)
    return ours, theirs
