"""Reading the sidecar's answer within a deadline and a size bound.

``http.client`` times out each socket operation, not a request: a peer that trickles
its answer a byte at a time keeps a worker in one request for ever, and
``HTTPResponse.read()`` takes a body of any size into memory. Here a response reads
through :class:`DeadlineReader`, which gives up once the request's deadline has passed
(re-read on every wait, so that shutdown can bring it forward), and :func:`read_answer`
keeps at most :data:`MAX_ANSWER_BYTES` of the body.
"""

from __future__ import annotations

import http.client
import io
import socket
import time
from collections.abc import Callable
from typing import Any

from mlwatch.client.exporter import WAIT_SLICE_S

#: The most of an answer's body that is read. The sidecar's answers (``{"accepted": n}``,
#: a 4xx naming up to ten problems) are a few KB; more is not an mlwatch sidecar.
MAX_ANSWER_BYTES = 64 * 1024


class DeadlineReader(io.RawIOBase):
    """The socket's bytes, until ``deadline()`` (``time.monotonic()`` seconds) passes."""

    def __init__(
        self, sock: socket.socket, deadline: Callable[[], float], holder: io.RawIOBase
    ) -> None:
        super().__init__()
        self._sock = sock
        self._deadline = deadline
        # The socket's own file object, kept open while this reader is: it holds the
        # socket's reference count, so that http.client closing the connection (an
        # answer with Connection: close) does not close the socket under the body.
        self._holder = holder

    def close(self) -> None:
        self._holder.close()
        super().close()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while True:
            left = self._deadline() - time.monotonic()
            if left <= 0:
                raise TimeoutError("no complete answer before the request's deadline")
            self._sock.settimeout(min(left, WAIT_SLICE_S))
            try:
                return self._sock.recv_into(buffer)
            except TimeoutError:
                continue  # nothing yet: look at the deadline again


class DeadlineResponse(http.client.HTTPResponse):
    """An ``HTTPResponse`` that reads through a :class:`DeadlineReader`."""

    def __init__(
        self, sock: socket.socket, *args: Any, deadline: Callable[[], float], **kwargs: Any
    ) -> None:
        super().__init__(sock, *args, **kwargs)
        holder = self.fp.detach()  # nothing was read through it: no bytes are left behind
        self.fp = io.BufferedReader(DeadlineReader(sock, deadline, holder))


def read_answer(resp: http.client.HTTPResponse) -> tuple[bytes, bool]:
    """At most :data:`MAX_ANSWER_BYTES` of the body, and whether that was all of it
    (when not, the connection must be closed: the rest is never read)."""
    if resp.length is not None and resp.length > MAX_ANSWER_BYTES:  # said too long: no wait
        return resp.read(MAX_ANSWER_BYTES), False
    data = resp.read(MAX_ANSWER_BYTES + 1)
    whole = len(data) <= MAX_ANSWER_BYTES and resp.isclosed()
    return data[:MAX_ANSWER_BYTES], whole
