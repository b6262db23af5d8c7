"""The forward-protocol input: a TCP server on ``forward_port`` that hands records to the
sidecar's ``accept``, acking a chunk only once its records are durable.

Fluentd's ``out_forward``, Fluent Bit's ``forward`` output, the fluent-logger libraries
and :class:`mlwatch.client.fluent.FluentExporter` can all send here. The codec and the
handshake are :mod:`mlwatch.forward`; what happens to the entries is
:mod:`.records`. Each connection has its own thread, because ``accept`` blocks for the
group-commit fsync (~20 ms). A message is decoded only once all its bytes are in
(:mod:`mlwatch.forward.framing`), so what a connection holds is the bytes it sent. Every
limit (sizes, deadlines, connections, buffered bytes) closes the connection and is
counted in ``mlwatch_forward_errors_total{reason}``; the limits and their reasons are
listed in docs/forward-protocol.md.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import msgpack
from prometheus_client import CollectorRegistry

from mlwatch.errors import ForwardError
from mlwatch.forward import protocol
from mlwatch.forward.framing import Framer
from mlwatch.forward.messages import MAX_ENTRIES, read_message
from mlwatch.forward.protocol import decode_one, show
from mlwatch.inputs.forward.metrics import ForwardMetrics
from mlwatch.inputs.forward.records import Accept, ForwardRecords
from mlwatch.inputs.forward.slots import Slot, Slots
from mlwatch.logs import RateLimitedLog
from mlwatch.settings import Config

log = logging.getLogger("mlwatch.sidecar.forward")

#: Most connections served at once; past it the one idle longest, or the newcomer, is
#: closed (counted).
MAX_CONNECTIONS = 256
#: A connection with no byte for this long is closed (senders reconnect on their next write).
IDLE_TIMEOUT_S = 300.0
#: Time a client has to answer HELO with a complete PING (an absolute deadline).
HANDSHAKE_TIMEOUT_S = 10.0
#: Time a message may take to arrive, from its first byte to its last (absolute).
MESSAGE_TIMEOUT_S = 60.0
#: Time the peer has to take an ack, the HELO or the PONG (tens of bytes): one that does
#: not read its acks would otherwise hold its connection until the idle timeout.
SEND_TIMEOUT_S = 30.0
#: With a shared key, the most bytes buffered before the PONG (a PING is < 1 KiB).
PREAUTH_MAX_BYTES = 64 * 1024
#: Bytes received but not yet handled across all connections (at least twice
#: ``max_body_bytes``): 256 connections x 16 MiB would otherwise be 4 GiB.
MAX_BUFFERED_BYTES = 128 * 1024 * 1024
RECV_BYTES = 64 * 1024
STOP_JOIN_S = 5.0


@dataclass
class _Conversation:
    """One connection's reading state."""

    slot: Slot
    framer: Framer
    nonce: bytes | None = None  # set until the handshake is done
    handshake_end: float | None = None  # until the PING: its absolute deadline
    started: float = 0.0  # when the first byte not yet handled arrived
    held: int = 0  # this connection's share of the buffered bytes


class ForwardInput:
    """A TCP server for the forward protocol that hands records to ``accept``.

    ``port`` is the bound port once :meth:`start` returned (``forward_port: 0`` picks a
    free one). Keyword arguments override the module's limits (tests use them).
    """

    def __init__(
        self,
        config: Config,
        accept: Accept,
        *,
        registry: CollectorRegistry,
        max_connections: int = MAX_CONNECTIONS,
        idle_timeout_s: float = IDLE_TIMEOUT_S,
        handshake_timeout_s: float = HANDSHAKE_TIMEOUT_S,
        message_timeout_s: float = MESSAGE_TIMEOUT_S,
        send_timeout_s: float = SEND_TIMEOUT_S,
        max_buffered_bytes: int | None = None,
        max_entries: int = MAX_ENTRIES,
    ) -> None:
        self.host = config.host
        self.port = config.forward_port or 0
        self.max_message_bytes = config.max_body_bytes
        self.max_connections = max_connections
        self.idle_timeout_s = idle_timeout_s
        self.handshake_timeout_s = handshake_timeout_s
        self.message_timeout_s = message_timeout_s
        self.send_timeout_s = send_timeout_s
        self.max_buffered_bytes = (
            max(MAX_BUFFERED_BYTES, 2 * self.max_message_bytes)
            if max_buffered_bytes is None
            else max_buffered_bytes
        )
        self.max_entries = max_entries
        self._buffered = 0  # bytes received but not yet handled, all connections (_lock)
        self.registry = registry
        key = config.forward_shared_key
        self._shared_key = key.encode() if key else None
        # Not the bare host name: Fluentd's out_forward refuses a PONG that carries its own
        # self_hostname, and a Fluentd / Fluent Bit next to the sidecar shares the pod's name.
        self._hostname = f"mlwatch-sidecar@{socket.gethostname()}"
        self._log = RateLimitedLog(log)
        self._lock = threading.Lock()  # the buffered bytes
        self._slots = Slots(max_connections)
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.metrics = ForwardMetrics(registry)
        self.handler = ForwardRecords(
            accept,
            max_records=config.max_events_per_request,
            records=self.metrics.records,
            rejected=self.metrics.rejected,
            unavailable=self.metrics.errors.labels("unavailable"),
            log=self._log,
        )

    def __repr__(self) -> str:  # never shows the key
        key = "'***'" if self._shared_key else None
        return f"ForwardInput({self.host}:{self.port}, shared_key={key})"

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> None:
        if self._listener is not None:
            return
        family, kind, proto, _, addr = socket.getaddrinfo(
            self.host or None, self.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
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
        log.info(
            "forward protocol input on %s:%d (handshake %s)",
            self.host,
            self.port,
            "on" if self._shared_key else "off",
        )

    def stop(self, timeout: float = STOP_JOIN_S) -> None:
        """Stop accepting, end idle connections, and give those in the middle of an
        ``accept`` up to ``timeout`` seconds to ack what they stored."""
        deadline = time.monotonic() + timeout
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._listener is not None:
            self._listener.close()
        slots = self._slots.all()
        for slot in slots:
            with contextlib.suppress(OSError):  # wakes a blocked recv(); a last ack may go out
                slot.conn.shutdown(socket.SHUT_RD)
        for slot in slots:
            if slot.thread is not None:
                slot.thread.join(max(0.0, deadline - time.monotonic()))

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
            self._admit(Slot(conn, f"{peer[0]}:{peer[1]}"))

    def _admit(self, slot: Slot) -> None:
        """Serve a new connection on a thread of its own, making room if need be."""
        admission = self._slots.admit(slot)
        if not admission.admitted or admission.evicted is not None:
            self.metrics.errors.labels("connection_limit").inc()
            gone = admission.evicted
            self._log.warning(
                "forward.limit",
                "forward: %d connections open; closing %s",
                self.max_connections,
                f"the one from {slot.where}"
                if gone is None
                else f"the one from {gone.where}, idle longest, for the one from {slot.where}",
            )
            if not admission.admitted:
                slot.conn.close()
                return
        slot.thread = threading.Thread(
            target=self._connection,
            args=(slot,),
            name=f"mlwatch-forward-{slot.where}",
            daemon=True,
        )
        self.metrics.connections.inc()
        try:
            slot.thread.start()
        except RuntimeError as exc:  # no thread to spare: refuse this one, keep serving
            self._slots.release(slot)
            self.metrics.connections.dec()
            slot.conn.close()
            self.metrics.errors.labels("error").inc()
            self._log.error("forward.thread", "forward: cannot serve %s: %s", slot.where, exc)

    # -- one connection -------------------------------------------------------
    def _connection(self, slot: Slot) -> None:
        where = slot.where
        try:
            self._converse(slot)
        except ForwardError as exc:
            self.metrics.errors.labels(exc.reason).inc()
            self._log.warning(
                "forward." + exc.reason, "forward: closing the connection from %s: %s", where, exc
            )
        except TimeoutError:  # between messages: not an error
            log.debug("forward: closing the idle connection from %s", where)
        except OSError as exc:  # the peer went away
            log.debug("forward: connection from %s: %s", where, exc)
        except Exception as exc:  # a bug: this connection ends, the server keeps serving
            self.metrics.errors.labels("error").inc()
            self._log.error(
                "forward.error",
                "forward: internal error on the connection from %s: %r",
                where,
                exc,
                exc_info=True,
            )
        finally:
            self._slots.release(slot)
            self.metrics.connections.dec()
            with contextlib.suppress(OSError):
                slot.conn.close()

    def _converse(self, slot: Slot) -> None:
        conn = slot.conn
        st = _Conversation(slot, Framer(self.max_message_bytes + RECV_BYTES))
        if self._shared_key is not None:
            st.nonce = os.urandom(16)
            st.handshake_end = time.monotonic() + self.handshake_timeout_s
            self._send(conn, protocol.helo(st.nonce), "the HELO")
        try:
            while not self._stopping.is_set():
                if not self._receive(conn, st) or not self._handle(conn, slot.where, st):
                    return
        finally:
            self._hold(st.held, 0)

    def _receive(self, conn: socket.socket, st: _Conversation) -> bool:
        """The next bytes into the framer, within the deadlines and size limits; False when
        the peer closed the connection."""
        pending = st.framer.pending
        if not pending:
            st.slot.idle()  # nothing unhandled: this connection may make room for another
        conn.settimeout(self._recv_timeout(st.handshake_end, pending, st.started))
        try:
            data = conn.recv(RECV_BYTES)
        except TimeoutError:
            if st.handshake_end is None and not pending:
                raise  # idle between messages: closed, not an error
            raise self._timed_out(st.handshake_end, pending, st.started) from None
        finally:
            st.slot.busy()
        if not data:
            return False
        if not pending:
            st.started = time.monotonic()
        # The framer holds a message's bytes until all of it is in, so the size of a
        # message is counted here, before it is decoded.
        pending += len(data)
        if st.handshake_end is not None and pending > PREAUTH_MAX_BYTES:
            raise ForwardError(
                f"more than {PREAUTH_MAX_BYTES} bytes before the handshake ended (expected a PING)",
                reason="too_large",
            )
        if pending > self.max_message_bytes:
            raise ForwardError(
                f"a message larger than {self.max_message_bytes} bytes", reason="too_large"
            )
        st.held = self._hold(st.held, pending)
        try:
            st.framer.feed(data)
        except msgpack.BufferFull:  # defensive: the count above keeps it from happening
            raise ForwardError(
                f"a message larger than {self.max_message_bytes} bytes", reason="too_large"
            ) from None
        return True

    def _handle(self, conn: socket.socket, where: str, st: _Conversation) -> bool:
        """Answer every complete message received so far; False when the connection must
        close without an ack (the sidecar cannot take the records now)."""
        while not self._stopping.is_set():
            try:
                frame = st.framer.next()
                if frame is None:
                    break
                msg = decode_one(frame, max_array_len=MAX_ENTRIES)
            except Exception as exc:
                raise ForwardError(
                    f"malformed msgpack ({protocol.error_text(exc)}); "
                    "expected forward-protocol arrays"
                ) from None
            if st.nonce is not None:
                self._handshake(conn, msg, st.nonce)
                st.nonce = st.handshake_end = None
            elif not self._message(conn, where, msg):
                return False
            st.held = self._hold(st.held, st.framer.pending)
            st.started = time.monotonic()  # the next message's deadline starts now
        return True

    def _send(self, conn: socket.socket, data: bytes, what: str) -> None:
        """Write an answer the peer must take within ``send_timeout_s``."""
        conn.settimeout(self.send_timeout_s)
        try:
            conn.sendall(data)
        except TimeoutError:
            raise ForwardError(
                f"the peer did not take {what} within {self.send_timeout_s:g}s "
                "(it does not read its answers)",
                reason="timeout",
            ) from None

    def _recv_timeout(self, handshake_end: float | None, pending: int, started: float) -> float:
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

    def _timed_out(self, handshake_end: float | None, pending: int, started: float) -> ForwardError:
        if handshake_end is not None:
            return ForwardError(
                f"no complete PING within {self.handshake_timeout_s:g}s of HELO", reason="timeout"
            )
        return ForwardError(
            f"a message still incomplete after "
            f"{time.monotonic() - started:.1f}s ({pending} bytes received; "
            f"limits: {self.message_timeout_s:g}s per message, "
            f"{self.idle_timeout_s:g}s without a byte)",
            reason="timeout",
        )

    def _hold(self, held: int, want: int) -> int:
        """Change this connection's share of the buffered bytes from ``held`` to ``want``;
        refuse (``buffer_limit``) a growth past ``max_buffered_bytes``."""
        with self._lock:
            total = self._buffered + want - held
            if want > held and total > self.max_buffered_bytes:
                raise ForwardError(
                    f"{self._buffered} bytes of unfinished messages are "
                    f"buffered across connections; this one's {want} would "
                    f"cross max_buffered_bytes ({self.max_buffered_bytes})",
                    reason="buffer_limit",
                )
            self._buffered = total
            self.metrics.buffered.set(total)
        return want

    def _handshake(self, conn: socket.socket, msg: Any, nonce: bytes) -> None:
        assert self._shared_key is not None
        salt, known = protocol.check_ping(msg, nonce, self._shared_key)
        self._send(
            conn, protocol.pong(known, self._hostname, salt, nonce, self._shared_key), "the PONG"
        )
        if not known:
            raise ForwardError(
                f"shared key mismatch (client hostname {show(msg[1])})", reason="auth"
            )

    def _message(self, conn: socket.socket, where: str, msg: Any) -> bool:
        """Handle one request; False when the connection must close without an ack."""
        message = read_message(msg, max_bytes=self.max_message_bytes, max_entries=self.max_entries)
        if message is None:  # heartbeat
            return True
        if not self.handler.ingest(message.tag, message.entries, where):
            return False
        if message.chunk is not None:
            self._send(conn, protocol.ack(message.chunk), "an ack")
        return True
