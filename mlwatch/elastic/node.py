"""The connection to one Elasticsearch node, with bounds on each answer: its size and
its time.

The client's default node (urllib3) reads an answer whole into memory, and its timeout
applies to each read of the socket, not to the request. So a node (or a proxy in front
of it) that streams a body without end grows the sidecar's memory until it is killed,
and one that trickles its answer a byte at a time keeps a bulk request, and so the
sink, waiting for ever. :class:`BoundedNode` is the same node with two limits:

- an answer larger than ``max_response_bytes`` (after decompression) is abandoned, its
  connection closed (``ConnectionError``: the client retries, then the sink);
- a request with no complete answer within the request timeout
  (``elasticsearch_timeout_s``) is abandoned too: a watchdog shuts its socket down at
  the deadline, whatever the request is waiting for (``ConnectionTimeout``).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from dataclasses import dataclass
from typing import Any, cast

from elastic_transport import NodeConfig, Urllib3HttpNode
from urllib3.exceptions import ProtocolError, ReadTimeoutError

#: The most bytes of one answer: bulk answers are ~50 bytes a document (the sink asks
#: only for each item's status, id and error), and ~2 KiB a refused one.
MAX_RESPONSE_BYTES = 64 << 20
READ_BYTES = 1 << 16

_current = threading.local()  # the watch of the request this thread is sending


class _Watch:
    """One request's deadline: at expiry, the socket it uses is shut down."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self.expired = False
        self._done = False

    def attach(self, sock: socket.socket | None) -> None:
        with self._lock:
            self._sock = sock
            if self.expired:
                _shut(sock)

    def expire(self) -> None:
        with self._lock:
            if not self._done:
                self.expired = True
                _shut(self._sock)

    def done(self) -> None:
        """The answer is read: never shut the socket (it goes back to the pool)."""
        with self._lock:
            self._done = True


def _shut(sock: socket.socket | None) -> None:
    """Shut ``sock`` down, waking whoever waits on it. The plain socket's method, also
    for TLS: ``SSLSocket.shutdown`` would drop the TLS state under the reading thread."""
    if sock is not None:
        with contextlib.suppress(OSError):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _Watched:
    """Mixed into the pool's connection class: tells the current watch which socket the
    request uses, once it is connected."""

    def connect(self) -> None:
        cast(Any, super()).connect()
        self._watch()

    def request(self, *args: Any, **kwargs: Any) -> None:
        self._watch()  # a kept-alive connection is connected already
        cast(Any, super()).request(*args, **kwargs)

    def _watch(self) -> None:
        watch = getattr(_current, "watch", None)
        if watch is not None:
            watch.attach(getattr(self, "sock", None))


@dataclass
class _Answer:
    """What ``Urllib3HttpNode.perform_request`` reads of a response."""

    status: int
    headers: Any
    data: bytes


class _BoundedPool:
    """The node's connection pool, answering ``urlopen`` within the node's bounds."""

    def __init__(self, pool: Any, max_bytes: int, timeout: float | None) -> None:
        self._pool = pool
        self._max_bytes = max_bytes
        self._timeout = timeout
        base = pool.ConnectionCls
        pool.ConnectionCls = type(f"Watched{base.__name__}", (_Watched, base), {})

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)

    def urlopen(self, method: str, url: str, **kwargs: Any) -> _Answer:
        timeout = kwargs.get("timeout", self._timeout)
        timeout = timeout if isinstance(timeout, (int, float)) else self._timeout
        watch = _Watch()
        timer = None if timeout is None else threading.Timer(timeout, watch.expire)
        _current.watch = watch
        if timer is not None:
            timer.daemon = True
            timer.start()
        try:
            return self._open(method, url, watch, **kwargs)
        except Exception as exc:
            if watch.expired:
                raise ReadTimeoutError(
                    self._pool, url, f"no complete answer within {timeout:g}s"
                ) from exc
            raise
        finally:
            _current.watch = None
            if timer is not None:
                timer.cancel()

    def _open(self, method: str, url: str, watch: _Watch, **kwargs: Any) -> _Answer:
        resp = self._pool.urlopen(method, url, preload_content=False, **kwargs)
        try:
            data = self._read(resp)
        except BaseException:
            resp.close()  # the rest of the answer is not read: the connection cannot be reused
            raise
        finally:
            watch.done()
            resp.release_conn()
        return _Answer(resp.status, resp.headers, data)

    def _read(self, resp: Any) -> bytes:
        parts: list[bytes] = []
        size = 0
        for part in resp.stream(READ_BYTES, decode_content=True):
            size += len(part)
            if size > self._max_bytes:
                parts.clear()  # the error's traceback keeps this frame (and the client, errors)
                raise ProtocolError(f"the answer is larger than {self._max_bytes} bytes; abandoned")
            parts.append(part)
        return b"".join(parts)


class BoundedNode(Urllib3HttpNode):
    """``Urllib3HttpNode`` whose answers are bounded in size and in time."""

    max_response_bytes = MAX_RESPONSE_BYTES

    def __init__(self, config: NodeConfig) -> None:
        super().__init__(config)
        self.pool = cast(
            Any, _BoundedPool(self.pool, self.max_response_bytes, config.request_timeout)
        )


def bounded_node(max_response_bytes: int) -> type[BoundedNode]:
    """A :class:`BoundedNode` class with its own answer size limit (the client builds
    its nodes from a class)."""
    node = type("BoundedNode", (BoundedNode,), {"max_response_bytes": max_response_bytes})
    return cast(type[BoundedNode], node)
