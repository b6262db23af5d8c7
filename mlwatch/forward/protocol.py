"""The Fluentd forward protocol v1: messages, entry times, tags and the handshake.

Both ends mlwatch speaks — the client's exporter (:mod:`mlwatch.client.fluent`) and the
sidecar's input (:mod:`mlwatch.inputs.forward`) — build and read the protocol here, so
framing, EventTime and the shared-key digests exist once. Pure: no sockets. The carrier
modes, the mode detection and the handshake are specified in docs/forward-protocol.md.

>>> derived_id("mlwatch.iris", 1_700_000_000_123_456_789, {"latency_ms": 1.5})
'018bcfe5-687b-7358-b056-c969989fc24f'
>>> route("mlwatch.feedback.iris"), route("mlwatch.iris"), route("other.app")
('feedback', 'events', 'events')
>>> entry_time_ns(decode(encode([event_time(1_700_000_000_000_000_001)]))[0][0])
1700000000000000001
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from typing import Any

try:
    import msgpack
except ImportError as exc:  # pragma: no cover - the extra is missing
    raise ImportError(
        "mlwatch's forward protocol needs msgpack: pip install 'mlwatch[fluentd]'"
    ) from exc

from mlwatch.errors import ForwardError, HandshakeRefused
from mlwatch.ids import uuid7

PREFIX = "mlwatch."
FEEDBACK_TAG = "mlwatch.feedback"
MODELS_TAG = "mlwatch.models"
DROPS_TAG = "mlwatch.drops"
#: The last part of tags that carry something other than events.
RESERVED = frozenset({"feedback", "models", "drops"})
#: The latest time RFC 3339 can write (9999-12-31T23:59:59.999999999Z), in nanoseconds.
MAX_TIME_NS = 253_402_300_799_999_999_999
MAX_TIME_S = MAX_TIME_NS / 1e9  # checked before a float is scaled (1e305 s overflows)


class EventTime:
    """A decoded EventTime (ext type 0). Not an int, so that one inside a record is refused
    as non-JSON rather than silently becoming a number."""

    __slots__ = ("ns",)

    def __init__(self, ns: int) -> None:
        self.ns = ns


def event_time(ts_ns: int) -> Any:
    """EventTime to send (ext 0: big-endian uint32 seconds, uint32 nanoseconds); plain
    seconds beyond 2106, where uint32 ends."""
    seconds, nanos = divmod(ts_ns, 1_000_000_000)
    if not 0 <= seconds < 2**32:
        return seconds
    return msgpack.ExtType(0, struct.pack(">II", seconds, nanos))


def _ext_hook(code: int, data: bytes) -> Any:
    if code == 0 and len(data) == 8:
        seconds, nanos = struct.unpack(">II", data)
        if nanos < 1_000_000_000:
            return EventTime(seconds * 1_000_000_000 + nanos)
    return msgpack.ExtType(code, data)


def unpacker(max_buffer_size: int, *, max_array_len: int = -1) -> msgpack.Unpacker:
    """A streaming reader of peer messages: strings decoded with ``surrogateescape`` (so
    :func:`raw` gets the exact bytes back), EventTimes as :class:`EventTime`."""
    return msgpack.Unpacker(
        raw=False,
        unicode_errors="surrogateescape",
        ext_hook=_ext_hook,
        max_buffer_size=max_buffer_size,
        max_array_len=max_array_len,
    )


def decode_one(frame: bytes, *, max_array_len: int = -1) -> Any:
    """The one msgpack object ``frame`` holds (from :class:`~mlwatch.forward.framing.Framer`),
    decoded as :func:`unpacker` decodes. Declared lengths are bounded by the frame's size,
    so a whole frame can declare no element it does not carry."""
    return msgpack.unpackb(
        frame,
        raw=False,
        unicode_errors="surrogateescape",
        ext_hook=_ext_hook,
        max_array_len=max_array_len,
    )


def encode(value: Any) -> bytes:
    """One msgpack object (strings as str, bytes as bin)."""
    return bytes(msgpack.packb(value, use_bin_type=True))


def decode(data: bytes) -> list[Any]:
    """Every msgpack object in ``data`` (tests and small replies)."""
    reader = unpacker(len(data) + 1)
    reader.feed(data)
    return list(reader)


def raw(value: Any) -> bytes:
    """The bytes a str|bin field carried (strings were decoded with surrogateescape)."""
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8", "surrogateescape")


def entry_time_ns(value: Any) -> int | None:
    """An entry's time in nanoseconds since the epoch, or None when it is not a time: an
    EventTime, integer seconds, or — leniently — float seconds or Fluent Bit 2's
    ``[time, metadata]`` pair."""
    if type(value) is list and len(value) == 2 and type(value[1]) is dict:
        value = value[0]
    if isinstance(value, EventTime):
        ns = value.ns
    elif type(value) is int:
        ns = value * 1_000_000_000
    elif type(value) is float and 0 <= value <= MAX_TIME_S:  # also refuses nan and inf
        ns = round(value * 1_000_000) * 1000
    else:
        return None
    return ns if 0 <= ns <= MAX_TIME_NS else None


# -- tags ------------------------------------------------------------------------------


def route(tag: str) -> str:
    """The kind of records a tag carries: ``events``, ``feedback``, ``models`` or ``drops``."""
    if tag == MODELS_TAG:
        return "models"
    if tag == DROPS_TAG:
        return "drops"
    if tag == FEEDBACK_TAG or tag.startswith(FEEDBACK_TAG + "."):
        return "feedback"
    return "events"


def model_from_tag(tag: str, kind: str) -> str | None:
    """``mlwatch.<model>`` (events) or ``mlwatch.feedback.<model>`` (feedback)."""
    prefix = FEEDBACK_TAG + "." if kind == "feedback" else PREFIX
    if kind in ("events", "feedback") and tag.startswith(prefix) and len(tag) > len(prefix):
        return tag[len(prefix) :]
    return None


def derived_id(tag: str, ts_ns: int, record: dict[str, Any]) -> str:
    """A UUIDv7-shaped id that is the same each time this entry is sent: its time field is
    the entry's time, its random bits SHA-256 of (tag, time, the record's msgpack), so a
    chunk sent again after a lost ack is stored once."""
    digest = hashlib.sha256(encode([tag, ts_ns, record])).digest()
    return uuid7(ts_ns // 1_000_000, digest[:10])


# -- messages --------------------------------------------------------------------------


def packed_forward(tag: str, entries: bytes, n: int, chunk: str) -> bytes:
    """A PackedForward message asking for an ack: ``[tag, <entries>, {chunk, size}]``."""
    return encode([tag, entries, {"chunk": chunk, "size": n}])


def ack(chunk: str | bytes) -> bytes:
    return encode({"ack": chunk})


def is_message_mode(msg: list[Any]) -> bool:
    """Message mode ``[tag, time, record, option?]``, as Fluentd's ``in_forward`` tells it
    apart: anything but an array or str/bin in second place; an array in a message of four
    (only Message mode has four); Fluent Bit's ``[time, map]`` pair followed by a record
    (not by a lone map with a ``chunk`` key: that is a Forward message's option)."""
    second = msg[1]
    if isinstance(second, (bytes, str)):
        return False
    if type(second) is not list or len(msg) == 4:
        return True
    pair = (
        len(second) == 2
        and type(second[1]) is dict
        and (isinstance(second[0], EventTime) or type(second[0]) in (int, float))
    )
    return pair and len(msg) == 3 and not (type(msg[2]) is dict and "chunk" in msg[2])


# -- handshake ---------------------------------------------------------------------------


def digest(salt: bytes, hostname: bytes, nonce: bytes, key: bytes) -> str:
    """``sha512_hex(salt + hostname + nonce + key)``: the PING's and the PONG's proof."""
    return hashlib.sha512(salt + hostname + nonce + key).hexdigest()


def helo(nonce: bytes) -> bytes:
    """The server's opening (user/password authorisation is not asked for)."""
    return encode(["HELO", {"nonce": nonce, "auth": b"", "keepalive": True}])


def ping(client_hostname: str, salt: bytes, nonce: bytes, key: bytes) -> bytes:
    return encode(
        [
            "PING",
            client_hostname,
            salt.decode(),
            digest(salt, client_hostname.encode(), nonce, key),
            "",
            "",
        ]
    )


def check_ping(msg: Any, nonce: bytes, key: bytes) -> tuple[bytes, bool]:
    """``(salt, whether the client knows the key)`` of a PING; :class:`ForwardError`
    (``auth``) for anything that is not one."""
    if not (
        type(msg) is list
        and 4 <= len(msg) <= 6
        and msg[0] == "PING"
        and isinstance(msg[1], str)
        and isinstance(msg[2], (str, bytes))
        and isinstance(msg[3], str)
    ):
        raise ForwardError(
            'expected ["PING", client_hostname, shared_key_salt, '
            "shared_key_hexdigest, username, password] after HELO, got "
            f"{show(msg)}",
            reason="auth",
        )
    salt = raw(msg[2])
    expected = digest(salt, raw(msg[1]), nonce, key).encode()
    return salt, hmac.compare_digest(expected, raw(msg[3]))


def pong(accepted: bool, server_hostname: str, salt: bytes, nonce: bytes, key: bytes) -> bytes:
    """The server's answer; it proves the server knows the key too."""
    if not accepted:
        return encode(["PONG", False, "shared_key mismatch", server_hostname, ""])
    return encode(
        ["PONG", True, "", server_hostname, digest(salt, server_hostname.encode(), nonce, key)]
    )


def read_helo(msg: Any) -> tuple[bytes, bool]:
    """``(nonce, keepalive)`` of the server's HELO."""
    if not (type(msg) is list and len(msg) == 2 and msg[0] == "HELO" and type(msg[1]) is dict):
        raise ForwardError(f"expected HELO, got {show(msg, 80)}")
    return raw(msg[1].get("nonce") or b""), msg[1].get("keepalive", True) is not False


def check_pong(msg: Any, salt: bytes, nonce: bytes, key: bytes) -> None:
    """Accept the server's PONG only when it carries the key's digest."""
    if not (type(msg) is list and len(msg) == 5 and msg[0] == "PONG"):
        raise ForwardError(f"expected PONG, got {show(msg, 80)}")
    if msg[1] is not True:
        raise HandshakeRefused(f"authentication failed: {show(msg[2], 200)}")
    expected = digest(salt, raw(msg[3]), nonce, key).encode()
    if not hmac.compare_digest(expected, raw(msg[4])):
        raise HandshakeRefused("the server's PONG digest does not match the shared key")


# -- describing what arrived ----------------------------------------------------------------


class _Cut:
    """What stands for the part of a value :func:`show` leaves out."""

    def __repr__(self) -> str:
        return "..."


_CUT = _Cut()


def show(value: Any, limit: int = 60) -> str:
    """A peer's value, quoted safely (ASCII, cut) for a log line or an error.

    The work is bounded by ``limit``, not by the value: a peer's value may be 16 MiB of
    one string or arrays nested 1,000 deep (where ``ascii`` alone raises RecursionError).

    >>> show("mlwatch.iris"), show([[[[1]]]] * 100, 20), show(b"x" * 10**6, 12)
    ("'mlwatch.iris'", '[[[[1]]], [[[1]]]...', "b'xxxxxxx...")
    """
    text = ascii(_clip(value, [limit], limit))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _clip(value: Any, budget: list[int], limit: int) -> Any:
    """A copy of ``value`` no larger than its preview needs: strings and bytes cut to
    ``limit``, and at most ``budget[0]`` values in all (each costs at least a character
    of the preview, so the recursion is at most ``limit`` deep)."""
    budget[0] -= 1
    if budget[0] < 0:
        return _CUT
    if isinstance(value, (str, bytes)):
        return value[:limit]
    if isinstance(value, msgpack.ExtType):
        return msgpack.ExtType(value.code, value.data[:limit])
    if isinstance(value, (list, tuple)):
        items = []
        for item in value:
            if budget[0] <= 0:
                items.append(_CUT)
                break
            items.append(_clip(item, budget, limit))
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, dict):
        pairs: dict[Any, Any] = {}
        for key, item in value.items():
            if budget[0] <= 0:
                pairs[_CUT] = _CUT
                break
            pairs[_clip(key, budget, limit)] = _clip(item, budget, limit)
        return pairs
    return value


def error_text(exc: BaseException) -> str:
    """``Type: message`` of an exception a peer's bytes caused."""
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def what(value: Any) -> str:
    """The msgpack type name of a value."""
    return {dict: "map", list: "array", str: "str", bytes: "bin", type(None): "nil"}.get(
        type(value), type(value).__name__
    )


def article(value: Any) -> str:
    """``a map``, ``an array of 3``: a value's type in a sentence."""
    name = what(value)
    if type(value) is list:
        name = f"array of {len(value)}"
    return ("an " if name[0].lower() in "aeiou" else "a ") + name
