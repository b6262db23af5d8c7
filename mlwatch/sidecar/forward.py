"""The Fluentd forward protocol (v1) as a way into the sidecar.

Fluentd's ``out_forward``, Fluent Bit's ``forward`` output, the fluent-logger
libraries and :class:`mlwatch.client.fluent.FluentExporter` can all send to the
sidecar's TCP port ``forward_port``. What arrives goes through the same
:meth:`~mlwatch.sidecar.service.Sidecar.accept` as an HTTP body: validation,
redaction, one durable spool append.

**Carrier modes** (the server tells them apart by the second element): Message
``[tag, time, record, option?]``, Forward ``[tag, [[time, record], ...], option?]``,
PackedForward ``[tag, <bin or str of concatenated msgpack entries>, option?]`` (Fluentd
sends the entries as ``str32`` holding raw msgpack, so strings are decoded with
``surrogateescape`` and turned back into the exact bytes), and CompressedPackedForward
(``option.compressed == "gzip"``, possibly several concatenated gzip members). A
msgpack ``nil`` is a client heartbeat and is ignored. ``time`` is an EventTime (ext
type 0, seconds and nanoseconds), an integer of seconds, or — leniently — a float of
seconds or Fluent Bit's ``[time, metadata]`` pair.

**Mode detection** (as Fluentd's ``in_forward``, plus Fluent Bit's pair): a str or bin
second element is PackedForward; an array is Forward, whatever its entries look like —
except in a message of four elements (only Message mode has four) and for Fluent Bit's
``[time, map]`` pair followed by a record, ``[tag, [time, map], record]``, unless
``record`` is a map with a ``chunk`` key: that reads as an option, so
``[tag, [time, record], {"chunk": ...}]``, a Forward message whose one entry is not
wrapped, is Forward and acked; anything else is Message, its time checked with the
record (nil, a boolean, a map or an array other than that pair there is an invalid
entry, not a malformed message).

**Two kinds of errors, two policies.** The *message* is malformed — not msgpack, not an
array of 2 to 4 with a printable str tag, the wrong length for its mode, a non-map
option, a non-string chunk, packed entries that are not msgpack or end inside an entry,
bad gzip: it is logged (rate-limited) with the peer and what was expected, counted in
``mlwatch_forward_errors_total{reason="malformed"}`` (``gzip``, ``too_large``), and the
connection is closed without an ack (nothing of it can be trusted); the server keeps
serving the others. An *entry* of a well-formed message is invalid — not a
``[time, record]`` array (e.g. a Forward entry that is a map or a scalar), a bad time, a
record that is not a JSON object or fails validation: it is dropped alone, counted and
logged as described under *Acknowledgement*, and the chunk is acked, so that the sender
does not send it again forever.

**Acknowledgement.** ``option.chunk`` is answered ``{"ack": chunk}`` only after
``accept`` returned, i.e. once the records are durable under the fsync policy.
``option.size`` is informational and not checked. When the spool is full or closing
(``IngestError`` 503) there is no ack and the connection is closed: the sender keeps the
chunk and sends it again later. The protocol has no negative ack, so records the wire
format refuses (4xx) are dropped one by one — their neighbours in the chunk are
stored — the chunk is acked, and each refused record is counted in
``mlwatch_forward_records_rejected_total{reason}`` and logged (rate-limited) with the
tag, its entry index and the validation message.

**Routing by tag.** ``mlwatch.feedback`` and ``mlwatch.feedback.*`` carry ground truth,
``mlwatch.models`` model registrations, ``mlwatch.drops`` the drop reports of
:class:`~mlwatch.client.fluent.FluentExporter` (``{model, version, reason, count,
report_id}``, applied once per ``report_id`` as the HTTP header is); every other tag
carries prediction events. Records are wire-format objects (:mod:`mlwatch.wire`).

**Records from generic pipelines** may lack ``event_id`` and ``ts``: ``ts`` becomes the
entry's time (RFC 3339 UTC, microseconds) and ``event_id`` a UUIDv7-shaped id derived
from the content — its 48-bit millisecond field is the entry's time, its random bits
come from SHA-256 of (tag, time in ns, the record's msgpack) — so a chunk sent again
after a lost ack is stored once (the store keys events by id). The flip side: two
records with the same tag, time and content are taken for one. Feedback records get
``feedback_id`` and ``ts`` the same way. A missing ``model`` is taken from the tag:
everything after ``mlwatch.`` for events (tag ``mlwatch.iris`` → model ``iris``), after
``mlwatch.feedback.`` for feedback.

**Handshake.** With ``forward_shared_key`` set, the server opens with
``["HELO", {nonce, auth: "", keepalive: true}]``, expects ``["PING", client_hostname,
shared_key_salt, sha512_hex(salt + client_hostname + nonce + key), username, password]``
and answers ``["PONG", true, "", server_hostname, sha512_hex(salt + server_hostname +
nonce + key)]``; a wrong key gets ``["PONG", false, reason, server_hostname, ""]`` and
the connection is closed. ``server_hostname`` is ``mlwatch-sidecar@<host name>``, never
the bare host name, which Fluentd's ``out_forward`` would refuse as its own. ``auth`` is
empty: user/password authorisation is not required (nor checked). The key is never
logged.

**Not implemented:** the UDP heartbeat (the spec makes it optional; senders fall back to
TCP checks), TLS (run the sidecar on localhost or behind a TLS terminator), and
``in_forward``'s JSON form of a single event.

**Limits** (explicit; each closes the connection and, but for the idle timeout between
messages, is counted in ``mlwatch_forward_errors_total{reason}``, the reason in brackets):

- ``too_large``: a message larger than ``max_body_bytes`` (16 MiB by default; keep
  ``out_forward``'s ``chunk_limit_size`` below it); with a shared key, anything larger
  than :data:`PREAUTH_MAX_BYTES` (64 KiB) before the PONG; entries larger than
  ``max_body_bytes`` after gzip decompression (a gzip bomb); more than :data:`MAX_ENTRIES`
  entries in one message;
- ``timeout``: no complete PING :data:`HANDSHAKE_TIMEOUT_S` (10 s) after the HELO, a
  message still incomplete :data:`MESSAGE_TIMEOUT_S` (60 s) after its first byte, or
  :data:`IDLE_TIMEOUT_S` without a byte in the middle of a message. These deadlines are
  absolute: a peer sending a byte at a time cannot stretch them. Between messages a
  connection may stay :data:`IDLE_TIMEOUT_S` (300 s) without a byte (heartbeats are
  messages); after that it is closed, not counted;
- ``buffer_limit``: the bytes received but not yet handled (incomplete messages, and a
  complete one until its ack) across all connections may not exceed ``max_buffered_bytes``
  — :data:`MAX_BUFFERED_BYTES` (128 MiB) or twice ``max_body_bytes``, whichever is larger;
  the connection whose bytes would cross it is closed (the sender retries). The gauge
  ``mlwatch_forward_buffered_bytes`` shows the total;
- ``connection_limit``: more than :data:`MAX_CONNECTIONS` connections at once.

Each connection has its own thread, because ``accept`` blocks for the group-commit fsync
(~20 ms). Also exported: ``mlwatch_forward_records_total{kind}`` (records accepted) and
the gauge ``mlwatch_forward_connections``.

>>> derived_id("mlwatch.iris", 1_700_000_000_123_456_789, {"latency_ms": 1.5})
'018bcfe5-687b-7358-b056-c969989fc24f'
>>> route("mlwatch.feedback.iris"), route("mlwatch.iris"), route("other.app")
('feedback', 'events', 'events')
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import math
import os
import socket
import struct
import threading
import time
import zlib
from collections.abc import Callable
from typing import Any, Protocol

import msgpack
import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge

from mlwatch import wire
from mlwatch.errors import IngestError, ValidationError
from mlwatch.inputs.body import MAX_REPORTED_ERRORS
from mlwatch.ratelimit import RateLimitedLog
from mlwatch.settings import Config
from mlwatch.store.payloads import EVENTS, FEEDBACK, MODELS

log = logging.getLogger("mlwatch.sidecar.forward")

PREFIX = "mlwatch."
FEEDBACK_TAG = "mlwatch.feedback"
MODELS_TAG = "mlwatch.models"
DROPS_TAG = "mlwatch.drops"

#: Most connections served at once; more are closed at once (counted).
MAX_CONNECTIONS = 256
#: A connection with no byte for this long is closed (senders reconnect on their next write).
IDLE_TIMEOUT_S = 300.0
#: Time a client has to answer HELO with a complete PING (an absolute deadline).
HANDSHAKE_TIMEOUT_S = 10.0
#: Time a message may take to arrive, from its first byte to its last (absolute).
MESSAGE_TIMEOUT_S = 60.0
#: With a shared key, the most bytes buffered before the PONG (a PING is < 1 KiB).
PREAUTH_MAX_BYTES = 64 * 1024
#: Bytes received but not yet handled across all connections (at least twice
#: ``max_body_bytes``): 256 connections x 16 MiB would otherwise be 4 GiB.
MAX_BUFFERED_BYTES = 128 * 1024 * 1024
#: Most entries in one message: 16 MiB of tiny entries would be millions of Python objects.
MAX_ENTRIES = 200_000
#: The latest time RFC 3339 can write (9999-12-31T23:59:59.999999999Z), in nanoseconds.
MAX_TIME_NS = 253_402_300_799_999_999_999
RECV_BYTES = 64 * 1024
STOP_JOIN_S = 5.0

KINDS = {"events": EVENTS, "feedback": FEEDBACK, "models": MODELS}
VALIDATORS: dict[str, Callable[..., dict[str, Any]]] = {
    "events": wire.validate_event, "feedback": wire.validate_feedback,
    "models": wire.validate_registration}
ERROR_REASONS = ("malformed", "too_large", "gzip", "auth", "timeout", "buffer_limit",
                 "connection_limit", "unavailable", "error")
_MISSING = object()
_VERSION_CLEAR = ~(0xF << 76)
_VARIANT_CLEAR = ~(0x3 << 62)
_VERSION_BITS = 0x7 << 76
_VARIANT_BITS = 0x2 << 62


class Accept(Protocol):
    """:meth:`mlwatch.sidecar.service.Sidecar.accept`: validate and durably append, or raise
    ``IngestError``; ``report_id``/``drops`` carry a client's drop report."""

    def __call__(self, kind: bytes, items: list[Any], report_id: str | None = None,
                 drops: list[tuple[str, str, str, int]] | None = None) -> int: ...


class _Refused(Exception):
    """This connection must end: ``reason`` is the metric label, the message says why."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class _BadEntry(Exception):
    """One entry that cannot become a record (its neighbours still can)."""


class _EventTime:
    """A decoded EventTime (ext type 0). Not an int, so that one inside a record is refused
    as non-JSON rather than silently becoming a number."""

    __slots__ = ("ns",)

    def __init__(self, ns: int) -> None:
        self.ns = ns


def _ext_hook(code: int, data: bytes) -> Any:
    if code == 0 and len(data) == 8:
        seconds, nanos = struct.unpack(">II", data)
        if nanos < 1_000_000_000:
            return _EventTime(seconds * 1_000_000_000 + nanos)
    return msgpack.ExtType(code, data)


def _unpacker(max_buffer_size: int) -> msgpack.Unpacker:
    return msgpack.Unpacker(raw=False, unicode_errors="surrogateescape", ext_hook=_ext_hook,
                            max_buffer_size=max_buffer_size, max_array_len=MAX_ENTRIES)


def _raw(value: str | bytes) -> bytes:
    """The bytes a str|bin field carried (strings were decoded with surrogateescape)."""
    return value if isinstance(value, bytes) else value.encode("utf-8", "surrogateescape")


def _show(value: Any, limit: int = 60) -> str:
    text = ascii(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _is_message_mode(msg: list[Any]) -> bool:
    """Message mode: anything but an array or str/bin in second place (a time, or not);
    an array in a message of four (only Message mode has four); Fluent Bit's
    ``[time, map]`` pair followed by a record (not by a lone map with a ``chunk`` key:
    that is a Forward message's option)."""
    second = msg[1]
    if isinstance(second, (bytes, str)):
        return False
    if type(second) is not list or len(msg) == 4:
        return True
    pair = len(second) == 2 and type(second[1]) is dict and (
        isinstance(second[0], _EventTime) or type(second[0]) in (int, float))
    return pair and len(msg) == 3 and not (type(msg[2]) is dict and "chunk" in msg[2])


def _what(value: Any) -> str:
    return {dict: "map", list: "array", str: "str", bytes: "bin", type(None): "nil"}.get(
        type(value), type(value).__name__)


def _article(value: Any) -> str:
    what = _what(value)
    if type(value) is list:
        what = f"array of {len(value)}"
    return ("an " if what[0].lower() in "aeiou" else "a ") + what


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
        return tag[len(prefix):]
    return None


def derived_id(tag: str, ts_ns: int, record: dict[str, Any]) -> str:
    """A UUIDv7-shaped id that is the same each time this entry is sent (see module doc)."""
    digest = hashlib.sha256(msgpack.packb([tag, ts_ns, record], use_bin_type=True)).digest()
    value = ((ts_ns // 1_000_000) << 80) | int.from_bytes(digest[:10], "big")
    value = (value & _VERSION_CLEAR & _VARIANT_CLEAR) | _VERSION_BITS | _VARIANT_BITS
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _time_ns(value: Any) -> int | None:
    """An entry's time in nanoseconds since the epoch, or None when it is not a time."""
    if type(value) is list and len(value) == 2 and type(value[1]) is dict:
        value = value[0]  # Fluent Bit 2's [time, metadata]
    if isinstance(value, _EventTime):
        ns = value.ns
    elif type(value) is int:
        ns = value * 1_000_000_000
    elif type(value) is float and math.isfinite(value):
        ns = round(value * 1_000_000) * 1000
    else:
        return None
    return ns if 0 <= ns <= MAX_TIME_NS else None


def gunzip(data: bytes, limit: int) -> bytes:
    """Inflate one or more concatenated gzip members, refusing more than ``limit`` bytes."""
    out: list[bytes] = []
    total = 0
    while data:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            part = inflater.decompress(data, limit - total + 1)
        except zlib.error as exc:
            raise _Refused("gzip", f"entries are not valid gzip: {exc}") from None
        total += len(part)
        if total > limit or inflater.unconsumed_tail:
            raise _Refused("too_large", f"entries exceed {limit} bytes after gzip "
                           "decompression")
        if not inflater.eof:
            raise _Refused("gzip", "entries are not valid gzip: truncated stream")
        out.append(part)
        data = inflater.unused_data
    return b"".join(out)


class ForwardInput:
    """A TCP server for the forward protocol that hands records to ``accept``.

    ``port`` is the bound port once :meth:`start` returned (``forward_port: 0`` picks a
    free one). Keyword arguments override the module's limits (tests use them).
    """

    def __init__(self, config: Config, accept: Accept, *, registry: CollectorRegistry,
                 max_connections: int = MAX_CONNECTIONS, idle_timeout_s: float = IDLE_TIMEOUT_S,
                 handshake_timeout_s: float = HANDSHAKE_TIMEOUT_S,
                 message_timeout_s: float = MESSAGE_TIMEOUT_S,
                 max_buffered_bytes: int | None = None,
                 max_entries: int = MAX_ENTRIES) -> None:
        self.host = config.host
        self.port = config.forward_port or 0
        self.max_message_bytes = config.max_body_bytes
        self.max_records = config.max_events_per_request
        self.max_connections = max_connections
        self.idle_timeout_s = idle_timeout_s
        self.handshake_timeout_s = handshake_timeout_s
        self.message_timeout_s = message_timeout_s
        self.max_buffered_bytes = (max(MAX_BUFFERED_BYTES, 2 * self.max_message_bytes)
                                   if max_buffered_bytes is None else max_buffered_bytes)
        self.max_entries = max_entries
        self._buffered = 0  # bytes received but not yet handled, all connections (_lock)
        self._accept = accept
        self.registry = registry
        key = config.forward_shared_key
        self._shared_key = key.encode() if key else None
        # Not the bare host name: Fluentd's out_forward refuses a PONG that carries its own
        # self_hostname, and a Fluentd / Fluent Bit next to the sidecar shares the pod's name.
        self._hostname = f"mlwatch-sidecar@{socket.gethostname()}"
        self._log = RateLimitedLog(log)
        self._lock = threading.Lock()
        self._conns: dict[socket.socket, threading.Thread] = {}
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.records = Counter("mlwatch_forward_records", "Records accepted through the forward "
                               "protocol, by kind.", ["kind"], registry=registry)
        self.rejected = Counter("mlwatch_forward_records_rejected", "Records of acked forward "
                                "chunks that were refused (invalid or too large).", ["reason"],
                                registry=registry)
        self.errors = Counter("mlwatch_forward_errors", "Forward connections closed by the "
                              "sidecar, by reason.", ["reason"], registry=registry)
        self.connections = Gauge("mlwatch_forward_connections", "Open forward-protocol "
                                 "connections.", registry=registry)
        self.buffered = Gauge("mlwatch_forward_buffered_bytes", "Bytes received on forward "
                              "connections and not yet handled (incomplete messages, and "
                              "complete ones until acked).", registry=registry)
        for kind in (*KINDS, "drops"):
            self.records.labels(kind)
        for reason in ("invalid", "too_large"):
            self.rejected.labels(reason)
        for reason in ERROR_REASONS:
            self.errors.labels(reason)

    def __repr__(self) -> str:  # never shows the key
        key = "'***'" if self._shared_key else None
        return f"ForwardInput({self.host}:{self.port}, shared_key={key})"

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> None:
        if self._listener is not None:
            return
        family, kind, proto, _, addr = socket.getaddrinfo(
            self.host or None, self.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        listener = socket.socket(family, kind, proto)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(addr)
            listener.listen(128)
            listener.settimeout(0.2)  # the accept loop checks for stop() this often
        except OSError:
            listener.close()
            raise
        self._listener = listener
        self.port = int(listener.getsockname()[1])
        self._thread = threading.Thread(target=self._serve, name="mlwatch-forward", daemon=True)
        self._thread.start()
        log.info("forward protocol input on %s:%d (handshake %s)", self.host, self.port,
                 "on" if self._shared_key else "off")

    def stop(self, timeout: float = STOP_JOIN_S) -> None:
        """Stop accepting, end idle connections, and give those in the middle of an
        ``accept`` up to ``timeout`` seconds to ack what they stored."""
        deadline = time.monotonic() + timeout
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            conns = list(self._conns.items())
        for conn, _ in conns:
            with contextlib.suppress(OSError):  # wakes a blocked recv(); a last ack may go out
                conn.shutdown(socket.SHUT_RD)
        for _, thread in conns:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _serve(self) -> None:
        listener = self._listener
        assert listener is not None
        while not self._stopping.is_set():
            try:
                conn, peer = listener.accept()
            except TimeoutError:
                continue
            except OSError as exc:  # e.g. EMFILE: wait rather than spin
                if self._stopping.is_set():
                    return
                self._log.error("forward.accept", "forward: accept failed: %s", exc)
                self._stopping.wait(0.1)
                continue
            where = f"{peer[0]}:{peer[1]}"
            thread = threading.Thread(target=self._connection, args=(conn, where),
                                      name=f"mlwatch-forward-{where}", daemon=True)
            with self._lock:
                full = len(self._conns) >= self.max_connections
                if not full:
                    self._conns[conn] = thread
            if full:
                self.errors.labels("connection_limit").inc()
                self._log.warning("forward.limit", "forward: %d connections open; closing the "
                                  "one from %s", self.max_connections, where)
                conn.close()
                continue
            self.connections.inc()
            try:
                thread.start()
            except RuntimeError as exc:  # no thread to spare: refuse this one, keep serving
                with self._lock:
                    self._conns.pop(conn, None)
                self.connections.dec()
                conn.close()
                self.errors.labels("error").inc()
                self._log.error("forward.thread", "forward: cannot serve %s: %s", where, exc)

    # -- one connection -------------------------------------------------------
    def _connection(self, conn: socket.socket, where: str) -> None:
        try:
            self._converse(conn, where)
        except _Refused as exc:
            self.errors.labels(exc.reason).inc()
            self._log.warning("forward." + exc.reason, "forward: closing the connection from "
                              "%s: %s", where, exc)
        except TimeoutError:  # between messages: not an error
            log.debug("forward: closing the idle connection from %s", where)
        except OSError as exc:  # the peer went away
            log.debug("forward: connection from %s: %s", where, exc)
        except Exception as exc:  # a bug: this connection ends, the server keeps serving
            self.errors.labels("error").inc()
            self._log.error("forward.error", "forward: internal error on the connection from "
                            "%s: %r", where, exc, exc_info=True)
        finally:
            with self._lock:
                self._conns.pop(conn, None)
            self.connections.dec()
            with contextlib.suppress(OSError):
                conn.close()

    def _converse(self, conn: socket.socket, where: str) -> None:
        unpacker = _unpacker(self.max_message_bytes + RECV_BYTES)
        nonce = None
        handshake_end: float | None = None  # until the PING: its absolute deadline
        if self._shared_key is not None:
            nonce = os.urandom(16)
            handshake_end = time.monotonic() + self.handshake_timeout_s
            conn.settimeout(self.handshake_timeout_s)
            conn.sendall(msgpack.packb(["HELO", {"nonce": nonce, "auth": b"", "keepalive": True}],
                                       use_bin_type=True))
        received = 0  # bytes fed to the unpacker
        boundary = 0  # where the first message not yet handled starts
        started = 0.0  # when the first byte past ``boundary`` arrived
        held = 0  # this connection's share of ``_buffered``
        try:
            while not self._stopping.is_set():
                pending = received - boundary
                conn.settimeout(self._recv_timeout(handshake_end, pending, started))
                try:
                    data = conn.recv(RECV_BYTES)
                except TimeoutError:
                    if handshake_end is None and not pending:
                        raise  # idle between messages: closed, not an error
                    raise self._timed_out(handshake_end, pending, started) from None
                if not data:
                    return
                conn.settimeout(self.idle_timeout_s)  # for the PONG and acks sent below
                if not pending:
                    started = time.monotonic()
                received += len(data)
                # The unpacker builds a message's objects as bytes arrive (its buffer holds
                # only what it has not parsed yet), so the size of a message is counted here.
                pending = received - boundary
                if handshake_end is not None and pending > PREAUTH_MAX_BYTES:
                    raise _Refused("too_large", f"more than {PREAUTH_MAX_BYTES} bytes before "
                                   "the handshake ended (expected a PING)")
                if pending > self.max_message_bytes:
                    raise _Refused("too_large", "a message larger than "
                                   f"{self.max_message_bytes} bytes")
                held = self._hold(held, pending)
                try:
                    unpacker.feed(data)
                except msgpack.BufferFull:  # defensive: the count above keeps it from happening
                    raise _Refused("too_large", "a message larger than "
                                   f"{self.max_message_bytes} bytes") from None
                while not self._stopping.is_set():
                    try:
                        msg = next(unpacker)
                    except StopIteration:
                        break
                    except Exception as exc:
                        raise _Refused("malformed", f"malformed msgpack ({_error(exc)}); "
                                       "expected forward-protocol arrays") from None
                    if nonce is not None:
                        self._handshake(conn, msg, nonce)
                        nonce = handshake_end = None
                    elif not self._message(conn, where, msg):
                        return
                    boundary = unpacker.tell()
                    held = self._hold(held, received - boundary)
                    started = time.monotonic()  # the next message's deadline starts now
        finally:
            self._hold(held, 0)

    def _recv_timeout(self, handshake_end: float | None, pending: int, started: float
                      ) -> float:
        """How long the next ``recv`` may wait: the idle timeout, cut short by the absolute
        deadline of the handshake or of the message being received."""
        if handshake_end is not None:
            end = handshake_end
        elif pending:
            end = started + self.message_timeout_s
        else:
            return self.idle_timeout_s
        left = end - time.monotonic()
        if left <= 0:
            raise self._timed_out(handshake_end, pending, started)
        return min(self.idle_timeout_s, left)

    def _timed_out(self, handshake_end: float | None, pending: int, started: float
                   ) -> _Refused:
        if handshake_end is not None:
            return _Refused("timeout", "no complete PING within "
                            f"{self.handshake_timeout_s:g}s of HELO")
        return _Refused("timeout", f"a message still incomplete after "
                        f"{time.monotonic() - started:.1f}s ({pending} bytes received; "
                        f"limits: {self.message_timeout_s:g}s per message, "
                        f"{self.idle_timeout_s:g}s without a byte)")

    def _hold(self, held: int, want: int) -> int:
        """Change this connection's share of the buffered bytes from ``held`` to ``want``;
        refuse (``buffer_limit``) a growth past ``max_buffered_bytes``."""
        with self._lock:
            total = self._buffered + want - held
            if want > held and total > self.max_buffered_bytes:
                raise _Refused("buffer_limit", f"{self._buffered} bytes of unfinished messages "
                               "are buffered across connections; this one's "
                               f"{want} would cross max_buffered_bytes "
                               f"({self.max_buffered_bytes})")
            self._buffered = total
            self.buffered.set(total)
        return want

    def _handshake(self, conn: socket.socket, msg: Any, nonce: bytes) -> None:
        assert self._shared_key is not None
        if not (type(msg) is list and 4 <= len(msg) <= 6 and msg[0] == "PING"
                and isinstance(msg[1], str) and isinstance(msg[2], (str, bytes))
                and isinstance(msg[3], str)):
            raise _Refused("auth", "expected [\"PING\", client_hostname, shared_key_salt, "
                           "shared_key_hexdigest, username, password] after HELO, got "
                           f"{_show(msg)}")
        client, salt, digest = _raw(msg[1]), _raw(msg[2]), _raw(msg[3])
        expected = hashlib.sha512(salt + client + nonce + self._shared_key).hexdigest().encode()
        host = self._hostname
        if not hmac.compare_digest(expected, digest):
            conn.sendall(msgpack.packb(["PONG", False, "shared_key mismatch", host, ""]))
            raise _Refused("auth", f"shared key mismatch (client hostname {_show(msg[1])})")
        mine = hashlib.sha512(salt + host.encode() + nonce + self._shared_key).hexdigest()
        conn.sendall(msgpack.packb(["PONG", True, "", host, mine]))

    def _message(self, conn: socket.socket, where: str, msg: Any) -> bool:
        """Handle one request; False when the connection must close without an ack."""
        if msg is None:  # heartbeat
            return True
        if type(msg) is not list or not 2 <= len(msg) <= 4 or not isinstance(msg[0], str):
            raise _Refused("malformed", "expected [tag, time, record, option?] or [tag, "
                           f"entries, option?] with a str tag, got {_show(msg)}")
        if not msg[0].isprintable():  # also catches invalid UTF-8 (surrogateescape'd)
            raise _Refused("malformed", f"tag {_show(msg[0])}: expected printable UTF-8")
        tag, second = msg[0], msg[1]
        message = _is_message_mode(msg)  # see "Mode detection" in the module doc
        forward = not message and type(second) is list
        if not message:  # Forward, PackedForward
            if len(msg) > 3:
                raise _Refused("malformed", f"tag {_show(tag)}: expected [tag, entries, "
                               f"option?], got an array of {len(msg)}")
            option = msg[2] if len(msg) == 3 else None
        else:  # Message
            if len(msg) < 3:
                raise _Refused("malformed", f"tag {_show(tag)}: expected [tag, time, record, "
                               f"option?], got an array of {len(msg)}")
            option = msg[3] if len(msg) == 4 else None
        if option is not None and type(option) is not dict:
            raise _Refused("malformed", f"tag {_show(tag)}: option must be a map, got "
                           f"{_what(option)}")
        chunk = option.get("chunk") if option else None
        if chunk is not None and not (isinstance(chunk, bytes) or (
                isinstance(chunk, str) and chunk.isprintable())):
            raise _Refused("malformed", f"tag {_show(tag)}: option chunk must be a base64 "
                           f"string, got {_show(chunk)}")
        if forward:
            entries = second
        elif isinstance(second, (bytes, str)):
            raw = _raw(second)
            if option and option.get("compressed") == "gzip":
                raw = gunzip(raw, self.max_message_bytes)
            entries = self._unpack_entries(tag, raw)
        else:
            entries = [[second, msg[2]]]
        if len(entries) > self.max_entries:
            raise _Refused("too_large", f"tag {_show(tag)}: {len(entries)} entries in one "
                           f"message; the limit is {self.max_entries}")
        if not self._ingest(tag, entries, where):
            return False
        if chunk is not None:
            conn.sendall(msgpack.packb({"ack": chunk}, use_bin_type=True))
        return True

    def _unpack_entries(self, tag: str, raw: bytes) -> list[Any]:
        unpacker = _unpacker(len(raw) + 1)
        unpacker.feed(raw)
        entries: list[Any] = []
        try:
            for entry in unpacker:
                entries.append(entry)
                if len(entries) > self.max_entries:
                    raise _Refused("too_large", f"tag {_show(tag)}: more than "
                                   f"{self.max_entries} entries in one message")
            # A stream cut inside an entry just stops yielding (and tell() counts the bytes
            # of a partial array header), so probe with a nil: only a stream that ended
            # between entries yields it as a value of its own.
            unpacker.feed(b"\xc0")
            end = next(unpacker, _MISSING)
        except _Refused:
            raise
        except Exception as exc:
            raise _Refused("malformed", f"tag {_show(tag)}: the packed entries are not "
                           f"msgpack ({_error(exc)})") from None
        if end is not None:
            raise _Refused("malformed", f"tag {_show(tag)}: the packed entries end in the "
                           "middle of an entry")
        return entries

    # -- records ---------------------------------------------------------------
    def _prepare(self, kind: str, tag: str, entry: Any) -> dict[str, Any]:
        """The record of one entry, with ``ts``, its id and ``model`` filled when absent."""
        if type(entry) is not list or len(entry) != 2:
            raise _BadEntry(f"expected an entry [time, record], got {_article(entry)} "
                            f"{_show(entry)}")
        ts_ns = _time_ns(entry[0])
        if ts_ns is None:
            raise _BadEntry("time: expected an EventTime or a number of seconds in "
                            f"1970..9999, got {_show(entry[0])}")
        record = entry[1]
        if type(record) is not dict:
            raise _BadEntry(f"record: expected a map, got {_what(record)}")
        try:
            orjson.dumps(record)
        except TypeError:  # orjson.JSONEncodeError: bin or ext values, invalid UTF-8, ...
            raise _BadEntry("record: not representable as JSON (binary or extension values, "
                            "non-string keys or invalid UTF-8)") from None
        if kind not in ("events", "feedback"):
            return record
        id_key = "event_id" if kind == "events" else "feedback_id"
        out = dict(record)
        if out.get(id_key) is None:
            out[id_key] = derived_id(tag, ts_ns, record)
        if out.get("ts") is None:
            out["ts"] = wire.format_ts(ts_ns)
        if out.get("model") is None:
            model = model_from_tag(tag, kind)
            if model is not None:
                out["model"] = model
        return out

    def _ingest(self, tag: str, entries: list[Any], where: str) -> bool:
        """Store the good records of one message; False when the sidecar cannot take them now
        (nothing to ack). Raises nothing for bad records: they are counted and logged."""
        kind = route(tag)
        batch: list[tuple[int, dict[str, Any]]] = []
        for index, entry in enumerate(entries):
            try:
                batch.append((index, self._prepare(kind, tag, entry)))
            except _BadEntry as exc:
                self._reject(tag, index, "invalid", str(exc), where)
        if kind == "drops":
            return self._ingest_drops(tag, batch, where)
        for start in range(0, len(batch), self.max_records):
            if not self._store(kind, tag, batch[start:start + self.max_records], where):
                return False
        return True

    def _store(self, kind: str, tag: str, batch: list[tuple[int, dict[str, Any]]],
               where: str) -> bool:
        """``accept`` the batch; on a 4xx drop the refused records and try the rest again."""
        todo = [batch]
        while todo:
            part = todo.pop()
            if not part:
                continue
            try:
                n = self._accept(KINDS[kind], [rec for _, rec in part])
            except IngestError as exc:
                if exc.status >= 500 or exc.status == 429:
                    self.errors.labels("unavailable").inc()
                    self._log.warning("forward.unavailable", "forward: not acking tag %s from "
                                      "%s (%s); the sender will retry", _show(tag), where,
                                      exc.message)
                    return False
                todo.extend(self._after_refusal(kind, tag, part, exc, where))
                continue
            self.records.labels(kind).inc(n)
        return True

    def _after_refusal(self, kind: str, tag: str, part: list[tuple[int, dict[str, Any]]],
                       exc: IngestError, where: str) -> list[list[tuple[int, dict[str, Any]]]]:
        """What to try next after ``accept`` refused ``part`` with a 4xx."""
        if len(part) == 1:
            reason = "too_large" if exc.status == 413 else "invalid"
            self._reject(tag, part[0][0], reason, exc.message, where)
            return []
        if exc.status == 413:  # too big for the spool in one piece: halves
            half = len(part) // 2
            return [part[half:], part[:half]]
        bad: dict[int, str] = {}
        for err in exc.errors:
            line = err.get("line")
            if type(line) is int and 1 <= line <= len(part):
                field = f"field {_show(err.get('field'))}: " if err.get("field") else ""
                bad[line - 1] = field + str(err.get("message"))
        if not bad:  # no line numbers: one by one
            return [[item] for item in reversed(part)]
        rest = []
        for i, item in enumerate(part):
            if i in bad:
                self._reject(tag, item[0], "invalid", bad[i], where)
            else:
                rest.append(item)
        if len(exc.errors) >= MAX_REPORTED_ERRORS:  # maybe more: find them all in one pass
            screened = []
            for item in rest:
                try:
                    VALIDATORS[kind](item[1], line=None)
                except ValidationError as err:
                    self._reject(tag, item[0], "invalid", str(err), where)
                else:
                    screened.append(item)
            rest = screened
        return [rest]

    def _ingest_drops(self, tag: str, batch: list[tuple[int, dict[str, Any]]],
                      where: str) -> bool:
        """Drop reports: the entries of one ``report_id`` are one report, applied once."""
        reports: dict[Any, list[tuple[int, dict[str, Any]]]] = {}
        for item in batch:
            reports.setdefault(item[1].get("report_id"), []).append(item)
        for items in reports.values():
            try:
                report_id, drops = wire.validate_drop_report([rec for _, rec in items])
            except ValidationError as exc:
                for index, _ in items:
                    self._reject(tag, index, "invalid", str(exc), where)
                continue
            try:
                self._accept(EVENTS, [], report_id, drops)
            except IngestError as exc:
                if exc.status >= 500 or exc.status == 429:
                    self.errors.labels("unavailable").inc()
                    return False
                for index, _ in items:
                    self._reject(tag, index, "invalid", exc.message, where)
                continue
            self.records.labels("drops").inc(len(items))
        return True

    def _reject(self, tag: str, index: int, reason: str, message: str, where: str) -> None:
        self.rejected.labels(reason).inc()
        self._log.warning("forward.rejected." + reason, "forward: dropped entry %d of tag %s "
                          "from %s (%s): %s", index, _show(tag), where, reason,
                          message.encode("utf-8", "backslashreplace").decode())
