"""Reading one forward-protocol message: its mode, option, chunk and entries, within limits.

A message of the wrong shape raises :class:`~mlwatch.errors.ForwardError` (reason
``malformed``, ``gzip`` or ``too_large``): nothing of it can be trusted, so the input
closes that connection. An entry that is not ``[time, record]`` is not checked here: the
records layer drops it alone and the chunk is still acked.

>>> from mlwatch.forward.protocol import encode
>>> m = read_message(["mlwatch.iris", encode([1, {"a": 1}]), {"chunk": "c1"}],
...                  max_bytes=1024, max_entries=10)
>>> m.tag, m.entries, m.chunk
('mlwatch.iris', [[1, {'a': 1}]], 'c1')
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

import msgpack

from mlwatch.errors import ForwardError
from mlwatch.forward.protocol import error_text, is_message_mode, raw, show, unpacker, what

#: Most entries in one message: 16 MiB of tiny entries would be millions of Python objects.
MAX_ENTRIES = 200_000


@dataclass(frozen=True)
class Message:
    """A message's tag, its entries (not yet checked) and the chunk to ack, if any."""

    tag: str
    entries: list[Any]
    chunk: str | bytes | None


def gunzip(data: bytes, limit: int) -> bytes:
    """Inflate one or more concatenated gzip members, refusing more than ``limit`` bytes."""
    out: list[bytes] = []
    total = 0
    while data:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            part = inflater.decompress(data, limit - total + 1)
        except zlib.error as exc:
            raise ForwardError(f"entries are not valid gzip: {exc}", reason="gzip") from None
        total += len(part)
        if total > limit or inflater.unconsumed_tail:
            raise ForwardError(
                f"entries exceed {limit} bytes after gzip decompression", reason="too_large"
            )
        if not inflater.eof:
            raise ForwardError("entries are not valid gzip: truncated stream", reason="gzip")
        out.append(part)
        data = inflater.unused_data
    return b"".join(out)


def count_entries(tag: str, packed: bytes, max_entries: int) -> int:
    """How many whole msgpack entries ``packed`` holds, found by skipping them (nothing is
    built, so a header that declares more than the bytes carry costs nothing); refuses
    bytes that are not msgpack, end inside an entry, or hold more than ``max_entries``."""
    skipper = msgpack.Unpacker(max_buffer_size=len(packed) + 1)
    skipper.feed(packed)
    count = end = 0
    try:
        while True:
            skipper.skip()
            end = skipper.tell()  # after OutOfData tell() may count part of an entry
            count += 1
            if count > max_entries:
                raise ForwardError(
                    f"tag {show(tag)}: more than {max_entries} entries in one message",
                    reason="too_large",
                )
    except msgpack.OutOfData:
        pass
    except ForwardError:
        raise
    except Exception as exc:
        raise ForwardError(
            f"tag {show(tag)}: the packed entries are not msgpack ({error_text(exc)})"
        ) from None
    if end != len(packed):
        raise ForwardError(f"tag {show(tag)}: the packed entries end in the middle of an entry")
    return count


def unpack_entries(tag: str, packed: bytes, max_entries: int) -> list[Any]:
    """The entries of a PackedForward message: concatenated msgpack, nothing cut short,
    counted before any is decoded."""
    count_entries(tag, packed, max_entries)
    reader = unpacker(len(packed) + 1, max_array_len=MAX_ENTRIES)
    reader.feed(packed)
    try:
        return list(reader)
    except Exception as exc:  # e.g. a map key that is not a string
        raise ForwardError(
            f"tag {show(tag)}: the packed entries are not msgpack ({error_text(exc)})"
        ) from None


def _option(msg: list[Any], tag: str, message_mode: bool) -> dict[str, Any] | None:
    """The option map of a message, checked for its mode's length."""
    if not message_mode:  # Forward, PackedForward
        if len(msg) > 3:
            raise ForwardError(
                f"tag {show(tag)}: expected [tag, entries, option?], got an array of {len(msg)}"
            )
        option = msg[2] if len(msg) == 3 else None
    else:
        if len(msg) < 3:
            raise ForwardError(
                f"tag {show(tag)}: expected [tag, time, record, option?], got "
                f"an array of {len(msg)}"
            )
        option = msg[3] if len(msg) == 4 else None
    if option is not None and type(option) is not dict:
        raise ForwardError(f"tag {show(tag)}: option must be a map, got {what(option)}")
    return option


def read_message(msg: Any, *, max_bytes: int, max_entries: int) -> Message | None:
    """The message ``msg`` (one decoded msgpack object) carries; None for a heartbeat."""
    if msg is None:  # heartbeat
        return None
    if type(msg) is not list or not 2 <= len(msg) <= 4 or not isinstance(msg[0], str):
        raise ForwardError(
            "expected [tag, time, record, option?] or [tag, entries, "
            f"option?] with a str tag, got {show(msg)}"
        )
    if not msg[0].isprintable():  # also catches invalid UTF-8 (surrogateescape'd)
        raise ForwardError(f"tag {show(msg[0])}: expected printable UTF-8")
    tag, second = msg[0], msg[1]
    message_mode = is_message_mode(msg)
    option = _option(msg, tag, message_mode)
    chunk = option.get("chunk") if option else None
    if chunk is not None and not (
        isinstance(chunk, bytes) or (isinstance(chunk, str) and chunk.isprintable())
    ):
        raise ForwardError(
            f"tag {show(tag)}: option chunk must be a base64 string, got {show(chunk)}"
        )
    if message_mode:
        entries = [[second, msg[2]]]
    elif type(second) is list:  # Forward
        entries = second
    else:  # PackedForward, CompressedPackedForward
        packed = raw(second)
        if option and option.get("compressed") == "gzip":
            packed = gunzip(packed, max_bytes)
        entries = unpack_entries(tag, packed, max_entries)
    if len(entries) > max_entries:
        raise ForwardError(
            f"tag {show(tag)}: {len(entries)} entries in one message; the limit is {max_entries}",
            reason="too_large",
        )
    return Message(tag, entries, chunk)
