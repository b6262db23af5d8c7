"""The forward input against hostile peers: values no sender would write, declared sizes
the bytes never back, peers that stall, hoard connections or never read their acks.

Each test checks the server's promises: it stays up and serves other peers, its memory
follows the bytes it received, every refused connection is counted under a reason (no
``error``, which means a bug), and a chunk is acked whole or not at all.
"""

from __future__ import annotations

import logging
import socket
import struct
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import msgpack
import pytest
from prometheus_client import CollectorRegistry

from mlwatch.inputs.forward import ForwardInput
from tests.helpers import wait_until
from tests.inputs.test_forward import (
    KEY,
    T0,
    Peer,
    Recorder,
    _ping,
    ack_of,
    et,
    ev,
    metric,
    still_serving,
)


@pytest.fixture(autouse=True)
def _close_peers() -> Iterator[None]:
    yield
    while Peer.opened:
        Peer.opened.pop().close()


@pytest.fixture
def forward(
    sidecar_config: Callable[..., Any],
) -> Iterator[Callable[..., tuple[ForwardInput, Recorder]]]:
    started: list[ForwardInput] = []

    def make(
        recorder: Recorder | None = None, *, config: dict[str, Any] | None = None, **kwargs: Any
    ) -> tuple[ForwardInput, Recorder]:
        recorder = recorder or Recorder()
        cfg = sidecar_config(forward_port=0, **(config or {}))
        fwd = ForwardInput(cfg, recorder, registry=CollectorRegistry(), **kwargs)
        fwd.start()
        started.append(fwd)
        return fwd, recorder

    yield make
    for fwd in started:
        fwd.stop()


def errors(fwd: ForwardInput, reason: str) -> float:
    return metric(fwd.registry, "mlwatch_forward_errors_total", reason=reason)


def rejected(fwd: ForwardInput) -> float:
    return metric(fwd.registry, "mlwatch_forward_records_rejected_total", reason="invalid")


def nested(depth: int, inner: Any = 0) -> Any:
    value = inner
    for _ in range(depth):
        value = [value]
    return value


# -- values no sender writes ------------------------------------------------------------
HUGE_FLOATS = [1e305, -1e308, [1e305, {"fluent-bit": "metadata"}]]


@pytest.mark.parametrize("when", HUGE_FLOATS, ids=["1e305", "-1e308", "pair"])
def test_a_float_time_out_of_range_is_an_invalid_entry(forward: Any, when: Any) -> None:
    """A float time whose nanoseconds overflow was an internal error (OverflowError), so
    the chunk was never acked and its sender would send it again forever."""
    fwd, rec = forward()
    peer = Peer(fwd.port)
    peer.send(["mlwatch.iris", when, ev(0), {"chunk": "message"}])
    ack_of(peer, "message")
    peer.send(["mlwatch.iris", [[when, ev(1)], [T0, ev(2)]], {"chunk": "forward"}])
    ack_of(peer, "forward")
    assert [r["request_id"] for r in rec.records()] == ["r2"]
    assert rejected(fwd) == 2
    assert errors(fwd, "error") == 0


def test_deeply_nested_values_are_refused_without_an_internal_error(
    forward: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Describing a value nested ~1,000 deep for the log raised RecursionError: an internal
    error with a traceback, and the chunk never acked."""
    fwd, rec = forward()
    deep = nested(1000)
    peer = Peer(fwd.port)
    with caplog.at_level(logging.WARNING, logger="mlwatch.sidecar.forward"):
        peer.send(["mlwatch.iris", [deep, [T0, ev(0)]], {"chunk": "entry"}])  # not an entry
        ack_of(peer, "entry")
        peer.send(["mlwatch.iris", deep, ev(1), {"chunk": "time"}])  # not a time
        ack_of(peer, "time")
        peer.send(["mlwatch.iris", [[T0, {"deep": deep}]], {"chunk": "record"}])  # not JSON
        ack_of(peer, "record")
        five = Peer(fwd.port).send(["mlwatch.iris", 1, 2, 3, deep])  # not a message
        assert five.closed_by_server()
        too_deep = Peer(fwd.port).raw(b"\x91" * 5000 + b"\xc0")  # beyond the decoder's stack
        assert too_deep.closed_by_server()
    assert [r["request_id"] for r in rec.records()] == ["r0"]
    assert rejected(fwd) == 3
    assert errors(fwd, "malformed") == 2
    assert errors(fwd, "error") == 0
    assert "Traceback" not in caplog.text
    assert all(len(r.getMessage()) < 1000 for r in caplog.records)  # values are cut short
    still_serving(fwd, rec)


ODD = [
    None,
    True,
    -1,
    2**64 - 1,
    float("nan"),
    float("inf"),
    1e305,
    "",
    "\x00",
    b"\xff",
    msgpack.ExtType(0, b"1"),
    msgpack.ExtType(7, b"abc"),
    [],
    [1e305, {}],
    {},
    {"chunk": 1},
    {"a": b"x"},
    nested(300),
    "s" * 70_000,
]


def _variants() -> Iterator[tuple[str, list[Any]]]:
    """Every position of every mode, with every odd value in turn."""
    rec = {"latency_ms": 1.0, "model": "iris"}
    shapes = {
        "message": ["mlwatch.iris", T0, rec, {"chunk": "k"}],
        "forward": ["mlwatch.iris", [[T0, rec]], {"chunk": "k"}],
    }
    for mode, shape in shapes.items():
        for pos in range(len(shape)):
            for value in ODD:
                msg = list(shape)
                msg[pos] = value
                yield f"{mode}[{pos}]", msg
    for pos in range(2):
        for value in ODD:
            entry: list[Any] = [T0, rec]
            entry[pos] = value
            packed = msgpack.packb(entry, use_bin_type=True)
            yield f"forward-entry[{pos}]", ["mlwatch.iris", [entry], {"chunk": "k"}]
            yield f"packed-entry[{pos}]", ["mlwatch.iris", packed, {"chunk": "k"}]
    for value in ODD:
        packed = msgpack.packb(value, use_bin_type=True)
        yield "packed-entries", ["mlwatch.iris", packed, {"chunk": "k"}]
        yield "compressed", ["mlwatch.iris", b"x", {"compressed": value, "chunk": "k"}]
        yield "size", ["mlwatch.iris", [[T0, rec]], {"size": value, "chunk": "k"}]


def _replies(peer: Peer) -> list[Any]:
    """What the server answered before it answered the probe, or closed the connection."""
    replies: list[Any] = []
    try:
        while (reply := peer.read()) != {"ack": "probe"}:
            replies.append(reply)
    except ConnectionError:
        return ["closed"]
    return replies


def test_wrong_types_in_every_position_are_refused_or_dropped_never_an_error(
    forward: Any,
) -> None:
    """Held: each message is acked (its bad entries dropped and counted), or its connection
    closed as malformed (then nothing of it was stored); never an internal error, and the
    connection of an acked message goes on serving."""
    fwd, rec = forward()
    outcomes: dict[str, set[str]] = {}
    probe = ["mlwatch.iris", T0, ev(0), {"chunk": "probe"}]
    for name, msg in _variants():
        peer = Peer(fwd.port).send(msg).send(probe)
        replies = _replies(peer)
        peer.close()
        assert replies in ([{"ack": "k"}], [], ["closed"]), (name, replies)
        outcomes.setdefault(name, set()).add("closed" if replies == ["closed"] else "served")
        assert errors(fwd, "error") == 0, name
    assert outcomes["forward-entry[0]"] == {"served"}  # a bad time drops the entry alone
    assert outcomes["message[0]"] >= {"closed"}  # a tag that is not a string: malformed
    still_serving(fwd, rec)


# -- sizes the bytes never back ------------------------------------------------------
ARRAY32 = b"\xdd" + struct.pack(">I", 200_000)  # "an array of 200,000 elements follows"


def test_declared_sizes_cost_nothing_before_their_bytes_arrive(forward: Any) -> None:
    """5 KB of nested array headers made the decoder set aside ~80 MB for elements that
    never came, on every connection, for as long as the message deadline let it wait;
    only the 5 KB counted against the buffer budget."""
    fwd, rec = forward()
    payload = b"\x93" + msgpack.packb("mlwatch.iris") + ARRAY32 * 1000
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        peers = [Peer(fwd.port).raw(payload) for _ in range(5)]
        wait_until(
            lambda: metric(fwd.registry, "mlwatch_forward_buffered_bytes") == 5 * len(payload),
            what="every byte received",
        )
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 8 << 20, f"{grown} bytes allocated for {5 * len(payload)} received"
    for peer in peers:
        peer.close()
    still_serving(fwd, rec)


@pytest.mark.parametrize(
    "header",
    [
        b"\xdb" + struct.pack(">I", 2**32 - 1),  # a str of 4 GiB
        b"\xc6" + struct.pack(">I", 2**32 - 1),  # a bin of 4 GiB
        b"\xdf" + struct.pack(">I", 2**32 - 1),  # a map of 4 billion pairs
        ARRAY32,
    ],
    ids=["str32", "bin32", "map32", "array32"],
)
def test_a_declared_size_never_backed_ends_at_a_limit(forward: Any, header: bytes) -> None:
    """Held: such a message waits for bytes that never come, within the message deadline
    or the size limit, and the connection is closed and counted."""
    fwd, rec = forward(config={"max_body_bytes": 64 * 1024}, message_timeout_s=0.5)
    peer = Peer(fwd.port).raw(b"\x93" + msgpack.packb("mlwatch.iris") + header + b"abc")
    assert peer.closed_by_server()
    assert errors(fwd, "timeout") + errors(fwd, "malformed") == 1
    flood = Peer(fwd.port).raw(b"\x93" + msgpack.packb("mlwatch.iris") + header)
    assert _send_until_refused(flood, bytes(65536), limit=1024)
    assert errors(fwd, "too_large") + errors(fwd, "malformed") >= 1
    assert errors(fwd, "error") == 0
    still_serving(fwd, rec)


def _send_until_refused(peer: Peer, data: bytes, limit: int) -> bool:
    """Send ``data`` up to ``limit`` times: whether the server closed the connection."""
    try:
        for _ in range(limit):
            peer.raw(data)
    except OSError:  # reset by the server
        return True
    return peer.closed_by_server()


# -- peers that stall ---------------------------------------------------------------------
def test_a_silent_peer_is_closed_at_the_handshake_deadline(forward: Any) -> None:
    """Held: with a shared key, a peer that connects and says nothing is closed when the
    handshake deadline passes, counted as a timeout."""
    fwd, _ = forward(config={"forward_shared_key": KEY}, handshake_timeout_s=0.5)
    silent = Peer(fwd.port)
    assert silent.read()[0] == "HELO"
    started = time.monotonic()
    assert silent.closed_by_server(timeout=5)
    assert time.monotonic() - started < 3
    assert errors(fwd, "timeout") == 1
    ok = Peer(fwd.port)
    ok.send(_ping(ok.read()[1]["nonce"], KEY))
    assert ok.read()[:2] == ["PONG", True]
    ok.send(["mlwatch.iris", T0, ev(0), {"chunk": "in"}])
    ack_of(ok, "in")


def _fill_until_blocked(sock: socket.socket, message: bytes, limit: int = 2000) -> int:
    """Send ``message`` until the server stops reading (it is stuck on an ack nobody
    reads) or has closed the connection: how many were sent."""
    sock.settimeout(0.2)
    for n in range(limit):
        try:
            sock.sendall(message)
        except OSError:  # a timeout: the server stopped reading; or it reset the connection
            return n
    raise AssertionError(f"the server read {limit} messages without blocking on an ack")


def test_a_peer_that_never_reads_its_acks_is_closed_and_counted(forward: Any) -> None:
    """An ack the peer did not take ended the connection as if it were idle: not counted,
    and only after the idle timeout (300 s by default)."""
    fwd, rec = forward(send_timeout_s=0.5)
    with socket.socket() as deaf:
        deaf.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before the handshake
        deaf.connect(("127.0.0.1", fwd.port))
        message = msgpack.packb(["mlwatch.iris", [], {"chunk": "k" * 60_000}], use_bin_type=True)
        assert _fill_until_blocked(deaf, message) > 0
        wait_until(lambda: errors(fwd, "timeout") == 1, timeout=10, what="the deaf peer counted")
        wait_until(lambda: metric(fwd.registry, "mlwatch_forward_connections") == 0)
    assert errors(fwd, "error") == 0
    still_serving(fwd, rec)


# -- hoarded connections ------------------------------------------------------------------
def test_at_the_connection_limit_the_longest_idle_connection_makes_room(forward: Any) -> None:
    """Idle connections held every slot, and a sender with records was turned away for as
    long as they stayed (up to the idle timeout, 300 s): now the connection idle longest is
    closed (it loses nothing: it has nothing unacked) and the newcomer is served."""
    fwd, rec = forward(max_connections=2)
    oldest = Peer(fwd.port)
    wait_until(lambda: metric(fwd.registry, "mlwatch_forward_connections") == 1)
    newer = Peer(fwd.port)
    wait_until(lambda: metric(fwd.registry, "mlwatch_forward_connections") == 2)
    sender = Peer(fwd.port).send(["mlwatch.iris", T0, ev(0), {"chunk": "room"}])
    ack_of(sender, "room")
    assert oldest.closed_by_server()
    assert newer.nothing_to_read(0.2)  # still open
    assert errors(fwd, "connection_limit") == 1
    assert len(rec.records()) == 1


def test_a_connection_in_the_middle_of_a_message_is_not_evicted(forward: Any) -> None:
    """Held before the change, kept after it: with every slot busy (bytes of an unfinished
    message), a newcomer is the one refused."""
    fwd, _ = forward(max_connections=1)
    busy = Peer(fwd.port)
    message = msgpack.packb(["mlwatch.iris", T0, ev(0), {"chunk": "whole"}], use_bin_type=True)
    busy.raw(message[:10])
    wait_until(lambda: metric(fwd.registry, "mlwatch_forward_buffered_bytes") == 10)
    newcomer = Peer(fwd.port)
    assert newcomer.closed_by_server()
    busy.raw(message[10:])
    ack_of(busy, "whole")
    assert errors(fwd, "connection_limit") == 1


def test_a_flood_of_connections_is_refused_quickly_and_quietly(
    forward: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Held (the log part) and fixed (the sender part): 400 connections against 16 slots;
    each one beyond the limit counted, a few log lines, and a sender that comes last is
    served at once."""
    fwd, rec = forward(max_connections=16)
    with caplog.at_level(logging.DEBUG, logger="mlwatch.sidecar.forward"):
        hoard = []
        for _ in range(400):
            hoard.append(Peer(fwd.port))
        wait_until(
            lambda: errors(fwd, "connection_limit") == 400 - 16, what="every extra one counted"
        )
        assert metric(fwd.registry, "mlwatch_forward_connections") <= 16
        started = time.monotonic()
        sender = Peer(fwd.port).send(["mlwatch.iris", T0, ev(0), {"chunk": "last"}])
        ack_of(sender, "last")
        assert time.monotonic() - started < 2
    limit_lines = [r for r in caplog.records if "connections open" in r.getMessage()]
    assert 1 <= len(limit_lines) <= 3  # rate-limited, not one per connection
    assert "Traceback" not in caplog.text
    assert len(rec.records()) == 1


def test_garbage_from_many_peers_is_counted_each_and_logged_once(
    forward: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Held: 50 peers sending bytes that are not msgpack; 50 closes counted, one warning."""
    fwd, rec = forward()
    with caplog.at_level(logging.WARNING, logger="mlwatch.sidecar.forward"):
        for _ in range(50):
            assert Peer(fwd.port).raw(b"\xc1" * 64).closed_by_server()
    assert errors(fwd, "malformed") == 50
    assert len([r for r in caplog.records if r.name == "mlwatch.sidecar.forward"]) == 1
    still_serving(fwd, rec)


def test_many_connections_sending_at_once_are_all_served(forward: Any) -> None:
    """Held: 32 senders in parallel, each of its chunks acked after its records went in."""
    fwd, rec = forward()
    failures: list[BaseException] = []

    def send(n: int) -> None:
        try:
            peer = Peer(fwd.port)
            for k in range(5):
                entries = [[et(T0 + k), ev(n * 100 + k * 10 + j)] for j in range(10)]
                peer.send(["mlwatch.iris", entries, {"chunk": f"{n}-{k}"}])
                ack_of(peer, f"{n}-{k}")
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=send, args=(n,)) for n in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert failures == []
    assert len(rec.records()) == 32 * 5 * 10
