"""Ship records to a Fluentd / Fluent Bit forward input — or the sidecar's — with acks.

Used instead of the sidecar's HTTP API when ``fluentd_host`` is set. Like every exporter
it runs on the shipper's single worker thread, behind its bounded queue: serving code
never waits for it, and whatever it cannot deliver is returned as a ``Result`` /
``Partial`` so that the shipper counts it per reason. It speaks the forward protocol
(:mod:`mlwatch.forward`) synchronously on the worker: one PackedForward message per tag
of at most ``max_message_bytes`` (4 MiB, under Fluent Bit's default input buffer and the
sidecar's ``max_body_bytes``), delivered once its ``{"ack": chunk}`` came back (for the
sidecar: once durable in its spool), retried with jittered backoff until the export's
deadline, the shared-key handshake when ``shared_key`` is set (the server's PONG digest
is checked too). A record that cannot be encoded is dropped alone (``error``); one too
large for a message even alone is dropped at once (``rejected``). Drop reports travel
in-band as records of ``<prefix>.drops``. Why not fluent-logger's senders, the tags, and
the rest: docs/forward-protocol.md.

>>> FluentExporter("127.0.0.1", 24224).tag_for("events", {"model": "iris"})
'mlwatch.iris'
>>> FluentExporter("127.0.0.1", 24224).tag_for("events", {"model": "feedback"})
'mlwatch.events.feedback'
"""

from __future__ import annotations

import base64
import contextlib
import os
import random
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from mlwatch.client.exporter import WAIT_SLICE_S, ExportBatch, Partial, Result
from mlwatch.errors import ForwardError, HandshakeRefused, ValidationError
from mlwatch.forward import protocol
from mlwatch.forward.protocol import RESERVED, encode, event_time
from mlwatch.logs import failures
from mlwatch.times import parse_ts

#: Largest message this exporter sends, envelope included (records beyond it go in further
#: messages; one record that does not fit alone is dropped, ``rejected``). Under Fluent Bit's
#: default forward-input ``Buffer_Max_Size`` (6,144,000 bytes) and the sidecar's default
#: ``max_body_bytes`` (16 MiB).
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
#: Least ``max_message_bytes`` accepted: room for the envelope and a small record.
MIN_MESSAGE_BYTES = 1024
BACKOFF_BASE_S = 0.1
BACKOFF_MAX_S = 5.0
RECV_BYTES = 64 * 1024
MAX_REPLY_BYTES = 1024 * 1024  # acks and handshake messages are tiny

Lost = list[tuple[Result, list[dict[str, Any]]]]


def _outcome(lost: Lost, n: int, *, dropped: bool, report_sent: bool) -> Result | Partial:
    lost = [(res, recs) for res, recs in lost if recs]
    if not lost:
        return Result.OK if report_sent or not dropped else Partial(report_sent=False)
    fates = {res for res, _ in lost}
    if not report_sent and len(fates) == 1 and sum(len(r) for _, r in lost) == n:
        return fates.pop()
    return Partial(lost=lost, report_sent=report_sent)


class FluentExporter:
    """Sends events, feedback, registrations and drop reports over the forward protocol."""

    name = "fluentd"

    def __init__(
        self,
        host: str,
        port: int,
        *,
        shared_key: str | None = None,
        timeout_s: float = 5.0,
        tag_prefix: str = "mlwatch",
        client_hostname: str | None = None,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        rng: Callable[[], float] = random.random,
    ) -> None:
        if not tag_prefix or any(c.isspace() for c in tag_prefix) or tag_prefix.endswith("."):
            raise ValueError(f"tag_prefix: expected a tag like 'mlwatch', got {tag_prefix!r}")
        self.host = host
        self.port = port
        if max_message_bytes < MIN_MESSAGE_BYTES:
            raise ValueError(
                f"max_message_bytes: expected at least {MIN_MESSAGE_BYTES}, got {max_message_bytes}"
            )
        self.where = f"{host}:{port}"  # safe to log
        self.last_error: str | None = None
        self.timeout_s = timeout_s
        self.tag_prefix = tag_prefix
        self.max_message_bytes = max_message_bytes
        # Distinct from the host's own name: Fluentd refuses a PING whose hostname is its own.
        self.client_hostname = client_hostname or f"mlwatch@{socket.gethostname()}"
        self._key = shared_key.encode() if shared_key else None
        self._rng = rng
        self._sock: socket.socket | None = None
        self._unpacker: Any = None
        self._keepalive = True
        self._live_deadline: Callable[[], float] = lambda: float("inf")

    def __repr__(self) -> str:  # never shows the key
        return f"FluentExporter({self.where!r}, tag_prefix={self.tag_prefix!r})"

    def tag_for(self, kind: str, record: dict[str, Any]) -> str:
        """The tag a record travels with; Fluentd routes on it, the sidecar picks its kind."""
        if kind in ("feedback", "models"):
            return f"{self.tag_prefix}.{kind}"
        model = str(record.get("model") or "unknown")
        if model in RESERVED or model.startswith("feedback."):
            return f"{self.tag_prefix}.events.{model}"
        return f"{self.tag_prefix}.{model}"

    # -- export ------------------------------------------------------------------
    def export(self, batch: ExportBatch) -> Result | Partial:
        """Deliver the records (and the drop report) or say what became of them. Never raises."""
        self._live_deadline = lambda: batch.deadline  # shutdown may bring it forward
        try:
            return self._export(
                batch.kind, batch.records, batch.deadline, batch.interrupt, batch.dropped
            )
        except Exception as exc:  # a bug of ours must cost this batch only
            self._disconnect()
            failures.error(
                "fluent.export",
                "mlwatch: exporting %s to %s failed: %r",
                batch.kind,
                self.where,
                exc,
                exc_info=True,
            )
            return Result.ERROR if batch.records else Partial(report_sent=False)

    def _export(
        self,
        kind: str,
        records: list[dict[str, Any]],
        deadline: float,
        interrupt: threading.Event,
        dropped: list[dict[str, Any]] | None,
    ) -> Result | Partial:
        lost: Lost = []
        messages = self._messages(kind, records, lost)
        if dropped:
            now = event_time(time.time_ns())
            entries = b"".join(encode([now, item]) for item in dropped)
            messages.append(([], f"{self.tag_prefix}.drops", entries, len(dropped)))
        report_sent = False
        for i, (recs, tag, entries, n) in enumerate(messages):
            res = self._send(tag, entries, n, deadline, interrupt)
            if res is Result.OK:
                report_sent = bool(dropped) and i == len(messages) - 1
                continue
            lost.append((res, recs))
            lost.extend((res, later[0]) for later in messages[i + 1 :])
            break
        return _outcome(lost, len(records), dropped=bool(dropped), report_sent=report_sent)

    def room(self, tag: str) -> int:
        """Most bytes of entries in one message of ``tag``: ``max_message_bytes`` less the
        largest envelope ``_send`` wraps them in (array, tag, bin32 header, option map)."""
        envelope = protocol.packed_forward(tag, b"", 2**32 - 1, "=" * 24)
        return self.max_message_bytes - len(envelope) - 3  # a bin32 header is 3 bytes longer

    def _messages(
        self, kind: str, records: list[dict[str, Any]], lost: Lost
    ) -> list[tuple[list[dict[str, Any]], str, bytes, int]]:
        """Encoded entries grouped by tag, in messages of at most ``max_message_bytes``."""
        groups: dict[str, list[tuple[dict[str, Any], bytes]]] = {}
        rooms: dict[str, int] = {}
        bad: list[dict[str, Any]] = []
        huge: list[dict[str, Any]] = []
        for rec in records:
            try:
                tag = self.tag_for(kind, rec)
                entry = encode([self._time(rec), rec])
            except Exception as exc:
                bad.append(rec)
                failures.error(
                    f"fluent.encode.{kind}",
                    "mlwatch: a %s record cannot be encoded as msgpack (%s: %s); it is dropped",
                    kind,
                    type(exc).__name__,
                    exc,
                )
                continue
            room = rooms.get(tag)
            if room is None:
                room = rooms[tag] = self.room(tag)
            if len(entry) > room:
                huge.append(rec)
                failures.error(
                    f"fluent.huge.{kind}",
                    "mlwatch: a %s record of %d bytes does "
                    "not fit in a forward message of %d bytes (max_message_bytes); "
                    "it is dropped",
                    kind,
                    len(entry),
                    self.max_message_bytes,
                )
                continue
            groups.setdefault(tag, []).append((rec, entry))
        if bad:
            lost.append((Result.ERROR, bad))
        if huge:
            lost.append((Result.REJECTED, huge))
        out = []
        for tag, pairs in groups.items():
            recs: list[dict[str, Any]] = []
            parts: list[bytes] = []
            size = 0
            for rec, entry in pairs:
                if parts and size + len(entry) > rooms[tag]:
                    out.append((recs, tag, b"".join(parts), len(parts)))
                    recs, parts, size = [], [], 0
                recs.append(rec)
                parts.append(entry)
                size += len(entry)
            out.append((recs, tag, b"".join(parts), len(parts)))
        return out

    @staticmethod
    def _time(rec: dict[str, Any]) -> Any:
        ts = rec.get("ts")
        if isinstance(ts, str):
            try:
                return event_time(parse_ts(ts, line=None)[1] * 1000)
            except ValidationError:
                pass
        return event_time(time.time_ns())

    def _send(
        self, tag: str, entries: bytes, n: int, deadline: float, interrupt: threading.Event
    ) -> Result:
        """One message until acked, refused, past ``deadline`` or interrupted."""
        chunk = base64.b64encode(os.urandom(16)).decode()
        payload = protocol.packed_forward(tag, entries, n, chunk)
        attempt = 0
        fresh_retry = True
        while True:
            deadline = min(deadline, self._live_deadline())
            timeout = max(0.01, min(self.timeout_s, deadline - time.monotonic()))
            reused = self._sock is not None
            try:
                self._roundtrip(payload, chunk, timeout)
                return Result.OK
            except HandshakeRefused as exc:
                self._disconnect()
                self.last_error = f"{self.where} refused the forward-protocol handshake: {exc}"
                failures.error(
                    "fluent.handshake",
                    "mlwatch: %s refused the handshake (%s); %d records for %s dropped",
                    self.where,
                    exc,
                    n,
                    tag,
                )
                return Result.FAILED
            except (OSError, ForwardError) as exc:
                self._disconnect()
                what = f"{type(exc).__name__}: {exc}"
                self.last_error = f"cannot deliver to Fluentd at {self.where}: {what}"
                if reused and fresh_retry:  # the server closed a kept-alive connection
                    fresh_retry = False
                    continue
            if interrupt.is_set():
                return Result.INTERRUPTED
            delay = min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2**attempt) * (0.5 + self._rng())
            if time.monotonic() + delay > min(deadline, self._live_deadline()):
                failures.error(
                    "fluent.giveup",
                    "mlwatch: giving up on %d records for %s after %d attempts to %s (last: %s)",
                    n,
                    tag,
                    attempt + 1,
                    self.where,
                    what,
                )
                return Result.FAILED
            if interrupt.wait(delay):
                return Result.INTERRUPTED
            attempt += 1

    # -- connection ---------------------------------------------------------------
    def _roundtrip(self, payload: bytes, chunk: str, timeout: float) -> None:
        sock = self._sock if self._sock is not None else self._connect(timeout)
        sock.settimeout(timeout)
        sock.sendall(payload)
        reply = self._read(timeout)
        if type(reply) is list and reply and reply[0] == "HELO":
            raise HandshakeRefused("the server asks for a shared key (set forward_shared_key)")
        if not (type(reply) is dict and reply.get("ack") == chunk):
            raise ForwardError(f"expected {{'ack': {chunk!r}}}, got {ascii(reply)[:80]}")
        if not self._keepalive:
            self._disconnect()

    def _connect(self, timeout: float) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=timeout)
        self._sock = sock
        self._unpacker = protocol.unpacker(MAX_REPLY_BYTES)
        self._keepalive = True
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._key is not None:
                self._handshake(timeout)
        except BaseException:
            self._disconnect()
            raise
        return sock

    def _handshake(self, timeout: float) -> None:
        """HELO → PING → PONG (forward protocol v1), checking the server's digest too."""
        assert self._key is not None and self._sock is not None
        try:
            helo = self._read(timeout)
        except TimeoutError:
            raise ForwardError(
                f"no HELO within {timeout:g}s: does the server have a shared key configured?"
            ) from None
        nonce, self._keepalive = protocol.read_helo(helo)
        salt = os.urandom(16).hex().encode()
        self._sock.sendall(protocol.ping(self.client_hostname, salt, nonce, self._key))
        protocol.check_pong(self._read(timeout), salt, nonce, self._key)

    def _read(self, timeout: float) -> Any:
        """The next msgpack object from the server, within ``timeout`` seconds."""
        assert self._sock is not None
        end = time.monotonic() + timeout
        while True:
            try:
                return next(self._unpacker)
            except StopIteration:
                pass
            except Exception as exc:  # garbage or an oversized reply
                raise ForwardError(f"unreadable reply ({type(exc).__name__})") from None
            remaining = min(end, self._live_deadline()) - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no reply within {timeout:g}s")
            self._sock.settimeout(min(remaining, WAIT_SLICE_S))
            try:
                data = self._sock.recv(RECV_BYTES)
            except TimeoutError:
                continue  # nothing yet: look at the deadline again
            if not data:
                raise ConnectionError("connection closed by the server")
            try:
                self._unpacker.feed(data)
            except Exception as exc:
                raise ForwardError(f"unreadable reply ({type(exc).__name__})") from None

    def force_flush(self, timeout: float = 5.0) -> bool:
        return True  # nothing is held between exports

    def shutdown(self, timeout: float = 5.0) -> bool:
        self._disconnect()
        return True

    def after_fork(self) -> None:
        """Forget the parent's connection in the child. ``close()`` without ``shutdown()``
        sends nothing while the parent still holds the socket, so its connection lives on."""
        self._disconnect()

    def _disconnect(self) -> None:
        sock, self._sock = self._sock, None
        self._unpacker = None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()
