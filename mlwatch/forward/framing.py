"""Cutting a peer's byte stream into whole msgpack objects before any is decoded.

A streaming decoder builds a message's objects as its bytes arrive, and sets aside room
for the elements an array header declares (up to 10,000 at a time): 5 bytes of header
cost ~80 KB before a single element came, and 1,000 nested headers (msgpack's stack
allows 1,024) ~80 MB, held for as long as the peer keeps the message unfinished.
So the input first finds where a message ends by skipping it (msgpack's ``skip``
builds nothing), holding only the bytes, and decodes a message once all of it is
there: then every declared element is backed by at least one received byte.

>>> from mlwatch.forward.protocol import decode_one, encode
>>> framer = Framer(1024)
>>> data = encode(["mlwatch.iris", 1, {"a": 1}]) + encode(None)
>>> framer.feed(data[:5]); framer.next(), framer.pending
(None, 5)
>>> framer.feed(data[5:]); decode_one(framer.next()), decode_one(framer.next())
(['mlwatch.iris', 1, {'a': 1}], None)
>>> framer.next(), framer.pending
(None, 0)
"""

from __future__ import annotations

import msgpack

#: The skipper's first buffer; it grows (to ``max_bytes``) only as bytes come.
READ_SIZE = 64 * 1024


class Framer:
    """Whole msgpack objects out of a byte stream, as bytes. It holds the bytes of the
    object being received twice (its own copy, and the skipper's), at most ``max_bytes``
    each: ``feed`` raises ``msgpack.BufferFull`` past that."""

    def __init__(self, max_bytes: int) -> None:
        self._skipper = msgpack.Unpacker(
            max_buffer_size=max_bytes, read_size=min(READ_SIZE, max_bytes)
        )
        self._data = bytearray()  # bytes not yet returned start at _data[_start]
        self._start = 0
        self._returned = 0  # stream offset of the end of the last object returned

    @property
    def pending(self) -> int:
        """Bytes received and not yet returned as part of a whole object."""
        return len(self._data) - self._start

    def feed(self, data: bytes) -> None:
        self._skipper.feed(data)
        if self._start:  # drop what was returned: once per feed, not once per object
            del self._data[: self._start]
            self._start = 0
        self._data += data

    def next(self) -> bytes | None:
        """The next whole object's bytes, or None until more bytes arrive. Raises what
        msgpack raises for bytes that are not msgpack, or that nest deeper than its
        stack (``StackError``)."""
        try:
            self._skipper.skip()
        except msgpack.OutOfData:  # tell() may count a part of the object: not used then
            return None
        size = self._skipper.tell() - self._returned
        frame = bytes(self._data[self._start : self._start + size])
        self._start += size
        self._returned += size
        return frame
