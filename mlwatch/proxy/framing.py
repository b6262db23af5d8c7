"""What the proxy keeps to its own hop (RFC 9110 §7.6.1: the hop-by-hop headers, and
those the ``Connection`` header names), and the copy of a body it keeps for capture."""

from __future__ import annotations

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
SKIP_REQUEST = HOP_BY_HOP | {b"host", b"expect"}


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
