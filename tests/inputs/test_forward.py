"""The sidecar's forward-protocol input: framing, acks, handshake, limits, and real peers.

Unit tests talk to a real :class:`ForwardInput` over TCP with a recording ``accept``;
end-to-end tests run a real :class:`Sidecar` and send with the Python fluent-logger
senders, the Node fluent-logger package (tests/node/send.js) and hand-made msgpack.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import itertools
import json
import logging
import os
import re
import select
import shutil
import socket
import struct
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import msgpack
import pytest
from prometheus_client import CollectorRegistry

from mlwatch import wire
from mlwatch.errors import IngestError
from mlwatch.forward.protocol import derived_id
from mlwatch.inputs.body import validate_all
from mlwatch.inputs.forward import ForwardInput
from mlwatch.sidecar.service import Sidecar
from mlwatch.store.payloads import EVENTS, FEEDBACK, MODELS
from tests.helpers import IN_CI, REPO, forward_port, wait_until

NODE_DIR = REPO / "tests" / "node"
T0 = 1_700_000_000  # a fixed entry time, seconds
KEY = "s3cret-forward-key"


# -- helpers ---------------------------------------------------------------------
class Recorder:
    """An ``accept`` that records what it was given; can hold, fail or validate."""

    def __init__(self, *, validate: bool = False) -> None:
        self.calls: list[tuple[bytes, list[Any], str | None, Any]] = []
        self.entered = threading.Event()
        self.gate: threading.Event | None = None
        self.fail: Callable[[list[Any]], IngestError | None] | None = None
        self.validate = validate
        self._lock = threading.Lock()

    def __call__(
        self,
        kind: bytes,
        items: list[Any],
        report_id: str | None = None,
        drops: list[tuple[str, str, str, int]] | None = None,
    ) -> int:
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(10)
        if self.fail is not None and (exc := self.fail(items)) is not None:
            raise exc
        if self.validate:
            validators = {
                EVENTS: wire.validate_event,
                FEEDBACK: wire.validate_feedback,
                MODELS: wire.validate_registration,
            }
            validate_all(items, validators[kind], 10_000)
        with self._lock:
            self.calls.append((kind, list(items), report_id, drops))
        return len(items)

    def records(self, kind: bytes = EVENTS) -> list[dict[str, Any]]:
        with self._lock:
            return [rec for k, items, _, _ in self.calls if k == kind for rec in items]


class Peer:
    """A hand-driven forward-protocol client (closed after the test)."""

    opened: ClassVar[list[Peer]] = []

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.unpacker = msgpack.Unpacker(raw=False)
        Peer.opened.append(self)

    def send(self, obj: Any) -> Peer:
        self.sock.sendall(msgpack.packb(obj, use_bin_type=True))
        return self

    def raw(self, data: bytes) -> Peer:
        self.sock.sendall(data)
        return self

    def read(self, timeout: float = 5.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            for obj in self.unpacker:
                return obj
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no reply")
            self.sock.settimeout(left)
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("closed by the server")
            self.unpacker.feed(data)

    def nothing_to_read(self, seconds: float = 0.2) -> bool:
        return not select.select([self.sock], [], [], seconds)[0]

    def closed_by_server(self, timeout: float = 5.0) -> bool:
        """True when the server closed the connection (EOF or reset) without a reply."""
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(65536) == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(autouse=True)
def _close_peers() -> Iterator[None]:
    yield
    while Peer.opened:
        Peer.opened.pop().close()


def ack_of(peer: Peer, chunk: str) -> None:
    assert peer.read() == {"ack": chunk}


def et(seconds: int, nanos: int = 0) -> msgpack.ExtType:
    return msgpack.ExtType(0, struct.pack(">II", seconds, nanos))


def ev(i: int, **extra: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {"latency_ms": 1.0 + i, "request_id": f"r{i}", "prediction": i % 2}
    rec.update(extra)
    return rec


def metric(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


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


def still_serving(fwd: ForwardInput, rec: Recorder) -> None:
    """A fresh connection is served after whatever happened to another one."""
    before = len(rec.records())
    peer = Peer(fwd.port).send(["mlwatch.iris", T0, ev(99), {"chunk": "alive"}])
    ack_of(peer, "alive")
    peer.close()
    assert len(rec.records()) == before + 1


# -- carrier modes ------------------------------------------------------------------
ENTRIES = [
    [T0, ev(0)],
    [et(T0, 123_456_789), ev(1)],
    [T0 + 0.5, ev(2)],
    [[et(T0 + 1, 5_000), {"fluent-bit": "metadata"}], ev(3)],
]
EXPECTED_TS = [
    "2023-11-14T22:13:20.000000Z",
    "2023-11-14T22:13:20.123456Z",
    "2023-11-14T22:13:20.500000Z",
    "2023-11-14T22:13:21.000005Z",
]


def _packed(entries: list[Any]) -> bytes:
    return b"".join(msgpack.packb(e, use_bin_type=True) for e in entries)


def _fluentd_str32(tag: str, entries: bytes, option: dict[str, Any]) -> bytes:
    """What Fluentd's out_forward writes: the entries as a str32 holding raw msgpack."""
    return (
        b"\x93"
        + msgpack.packb(tag)
        + b"\xdb"
        + struct.pack(">I", len(entries))
        + entries
        + msgpack.packb(option)
    )


def _gzip_members(data: bytes) -> bytes:
    half = len(data) // 2
    return gzip.compress(data[:half]) + gzip.compress(data[half:])


MODES: dict[str, Callable[[str, str], list[bytes]]] = {
    "message": lambda tag, chunk: [
        msgpack.packb([tag, *e, {"chunk": f"{chunk}-{i}"}], use_bin_type=True)
        for i, e in enumerate(ENTRIES)
    ],
    "forward": lambda tag, chunk: [
        msgpack.packb([tag, ENTRIES, {"chunk": chunk}], use_bin_type=True)
    ],
    "packed_bin": lambda tag, chunk: [
        msgpack.packb(
            [tag, _packed(ENTRIES), {"chunk": chunk, "size": len(ENTRIES)}], use_bin_type=True
        )
    ],
    "packed_str32": lambda tag, chunk: [
        _fluentd_str32(tag, _packed(ENTRIES), {"chunk": chunk, "size": 4})
    ],
    "compressed": lambda tag, chunk: [
        msgpack.packb(
            [tag, _gzip_members(_packed(ENTRIES)), {"chunk": chunk, "compressed": "gzip"}],
            use_bin_type=True,
        )
    ],
}


@pytest.mark.parametrize("mode", sorted(MODES))
def test_every_carrier_mode_gives_the_same_records(forward: Any, mode: str) -> None:
    fwd, rec = forward()
    peer = Peer(fwd.port)
    frames = MODES[mode]("mlwatch.iris", "c1")
    for frame in frames:
        peer.raw(frame)
    replies = [peer.read() for _ in frames]
    assert replies == (
        [{"ack": f"c1-{i}"} for i in range(4)] if mode == "message" else [{"ack": "c1"}]
    )
    got = rec.records()
    assert [r["request_id"] for r in got] == ["r0", "r1", "r2", "r3"]
    assert [r["ts"] for r in got] == EXPECTED_TS
    assert {r["model"] for r in got} == {"iris"}  # from the tag
    for r in got:
        assert uuid.UUID(r["event_id"]).version == 7
    # EventTime, integer and float times and Fluent Bit's [time, metadata] all decode
    ns = [T0 * 10**9, T0 * 10**9 + 123_456_789, T0 * 10**9 + 500_000_000, (T0 + 1) * 10**9 + 5_000]
    originals = [e[1] for e in ENTRIES]
    assert [r["event_id"] for r in got] == [
        derived_id("mlwatch.iris", t, o) for t, o in zip(ns, originals, strict=True)
    ]


def test_ext8_event_time_and_heartbeat_and_no_chunk(forward: Any) -> None:
    fwd, rec = forward()
    peer = Peer(fwd.port)
    ext8 = b"\xc7\x08\x00" + struct.pack(">II", T0, 7_000)
    # [tag, EventTime(ext8), record] without a chunk: stored, and nothing is answered
    peer.raw(b"\x93" + msgpack.packb("mlwatch.iris") + ext8 + msgpack.packb(ev(0)))
    peer.send(None)  # a heartbeat
    peer.send(["mlwatch.iris", T0, ev(1), {"chunk": "second"}])
    assert peer.read() == {"ack": "second"}  # the first reply is the second message's ack
    assert [r["ts"] for r in rec.records()] == [
        "2023-11-14T22:13:20.000007Z",
        "2023-11-14T22:13:20.000000Z",
    ]


def test_derived_ids_are_stable_across_resends_and_own_ids_are_kept(forward: Any) -> None:
    fwd, rec = forward()
    peer = Peer(fwd.port)
    own = {
        "event_id": "0190c1de-0000-7000-8000-000000000001",
        "ts": "2024-01-01T00:00:00Z",
        "model": "other",
        "latency_ms": 2,
    }
    msg = ["mlwatch.iris", [[et(T0, 1), ev(0)], [et(T0, 2), ev(0)], [T0, own]], {"chunk": "a"}]
    peer.send(msg)
    ack_of(peer, "a")
    peer.send(msg)  # sent again, as after a lost ack
    ack_of(peer, "a")
    first, second = rec.records()[:3], rec.records()[3:]
    assert [r["event_id"] for r in first] == [r["event_id"] for r in second]
    a, b, kept = first
    assert a["event_id"] != b["event_id"]  # same record, another nanosecond: another event
    assert int(a["event_id"].replace("-", "")[:12], 16) == T0 * 1000  # ms field = entry time
    assert kept == own  # nothing is filled over what the record says


def test_tags_route_records_to_their_kind(forward: Any) -> None:
    fwd, rec = forward()
    peer = Peer(fwd.port)
    report = [
        {"model": "iris", "version": "1", "reason": "queue_full", "count": 4, "report_id": "rep-1"}
    ]
    peer.send(
        [
            "mlwatch.feedback",
            [[T0, {"model": "iris", "request_id": "r0", "label": 1}]],
            {"chunk": "f"},
        ]
    )
    peer.send(["mlwatch.feedback.churn", [[T0, {"request_id": "r1", "label": 0}]], {"chunk": "g"}])
    peer.send(["mlwatch.models", [[T0, {"model": "iris", "version": "1"}]], {"chunk": "m"}])
    peer.send(["mlwatch.drops", [[T0, report[0]]], {"chunk": "d"}])
    peer.send(["app.logs", [[T0, ev(0, model="iris")]], {"chunk": "e"}])
    for chunk in "fgmde":
        ack_of(peer, chunk)
    fb = rec.records(FEEDBACK)
    assert [(f["model"], f["request_id"]) for f in fb] == [("iris", "r0"), ("churn", "r1")]
    assert all(f["ts"] == EXPECTED_TS[0] and uuid.UUID(f["feedback_id"]) for f in fb)
    assert rec.records(MODELS) == [{"model": "iris", "version": "1"}]  # nothing added
    drops = [(items, rid, d) for k, items, rid, d in rec.calls if d]
    assert drops == [([], "rep-1", [("iris", "1", "queue_full", 4)])]
    assert [r["model"] for r in rec.records(EVENTS)] == ["iris"]
    assert metric(fwd.registry, "mlwatch_forward_records_total", kind="feedback") == 2


# -- acks and durability ------------------------------------------------------------
def test_ack_is_sent_only_after_accept_returned(forward: Any) -> None:
    rec = Recorder()
    rec.gate = threading.Event()
    fwd, _ = forward(rec)
    peer = Peer(fwd.port).send(["mlwatch.iris", T0, ev(0), {"chunk": "durable"}])
    assert rec.entered.wait(5)
    assert peer.nothing_to_read(0.3)  # accept is still "fsyncing": no ack yet
    rec.gate.set()
    ack_of(peer, "durable")
    assert len(rec.records()) == 1


def test_unavailable_spool_means_no_ack_and_a_closed_connection(forward: Any) -> None:
    rec = Recorder()
    rec.fail = lambda items: IngestError(503, "spool is full (sinks are behind); retry later")
    fwd, _ = forward(rec)
    peer = Peer(fwd.port).send(["mlwatch.iris", [[T0, ev(0)]], {"chunk": "full"}])
    assert peer.closed_by_server()
    assert metric(fwd.registry, "mlwatch_forward_errors_total", reason="unavailable") == 1
    rec.fail = None
    still_serving(fwd, rec)


def test_invalid_records_are_dropped_counted_and_logged_the_rest_stored(
    forward: Any, caplog: pytest.LogCaptureFixture
) -> None:
    fwd, rec = forward(Recorder(validate=True))
    good = [[T0 + i, ev(i)] for i in range(13)]
    bad: list[Any] = [[T0, ev(100 + i, latency_ms="slow")] for i in range(11)]  # > 10 errors
    bad += [
        [T0, ev(200, colour="red")],  # unknown field
        ["yesterday", ev(201)],  # not a time
        [T0, "not a map"],  # not a record
        [T0, ev(202, features={"blob": b"\x00\x01"})],  # bin is not JSON
        [T0],
    ]  # not an entry
    entries = [e for pair in itertools.zip_longest(good, bad) for e in pair if e is not None]
    with caplog.at_level(logging.WARNING, logger="mlwatch.sidecar.forward"):
        peer = Peer(fwd.port).send(["mlwatch.iris", entries, {"chunk": "mixed"}])
        ack_of(peer, "mixed")
    assert sorted(r["request_id"] for r in rec.records()) == sorted(f"r{i}" for i in range(13))
    reg = fwd.registry
    assert metric(reg, "mlwatch_forward_records_rejected_total", reason="invalid") == 16
    assert metric(reg, "mlwatch_forward_records_total", kind="events") == 13
    [line] = [r.getMessage() for r in caplog.records if "dropped entry" in r.getMessage()]
    assert re.match(
        r"forward: dropped entry \d+ of tag 'mlwatch.iris' from 127.0.0.1:\d+ "
        r"\(invalid\): ",
        line,
    )  # one line: the others are rate-limited
    peer.send(["mlwatch.iris", T0, ev(0), {"chunk": "after"}])
    ack_of(peer, "after")  # the connection stays usable


def test_forward_entries_that_are_not_arrays_are_rejected_and_the_chunk_acked(
    forward: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """An array second element is Forward mode even when its first entry is not an array;
    before, such a chunk was taken for a Message (the option became the record) and never
    acked, so the sender sent it again forever."""
    fwd, rec = forward()
    peer = Peer(fwd.port)
    with caplog.at_level(logging.WARNING, logger="mlwatch.sidecar.forward"):
        peer.send(["mlwatch.iris", [ev(0), [T0, ev(1)]], {"chunk": "first-not-array"}])
        ack_of(peer, "first-not-array")
        peer.send(["mlwatch.iris", ["x", 5, None], {"chunk": "scalars"}])
        ack_of(peer, "scalars")
        peer.send(["mlwatch.iris", [T0, ev(2)], {"chunk": "unwrapped"}])  # [time, record]
        ack_of(peer, "unwrapped")
        # Fluent Bit's [time, metadata] as a Message's time is still a Message
        peer.send(["mlwatch.iris", [et(T0), {"meta": 1}], ev(3)])
        peer.send(["mlwatch.iris", [et(T0), {"meta": 1}], ev(4), {"chunk": "fb"}])
        ack_of(peer, "fb")
    assert [r["request_id"] for r in rec.records()] == ["r1", "r3", "r4"]
    assert metric(fwd.registry, "mlwatch_forward_records_rejected_total", reason="invalid") == 6
    assert metric(fwd.registry, "mlwatch_forward_errors_total", reason="malformed") == 0
    [line] = [r.getMessage() for r in caplog.records if "dropped entry" in r.getMessage()]
    assert re.match(
        r"forward: dropped entry 0 of tag 'mlwatch.iris' from 127.0.0.1:\d+ "
        r"\(invalid\): expected an entry \[time, record\], got a map ",
        line,
    ), line


def test_a_message_whose_time_is_not_a_time_is_an_invalid_entry(forward: Any) -> None:
    """As Fluentd reads it: not an array nor str/bin in second place is Message mode."""
    fwd, rec = forward()
    peer = Peer(fwd.port)
    for i, when in enumerate([True, None, {"t": T0}, -1, [ev(0)]]):
        peer.send(["mlwatch.iris", when, ev(i), {"chunk": f"t{i}"}])
        ack_of(peer, f"t{i}")
    assert rec.records() == []
    assert metric(fwd.registry, "mlwatch_forward_records_rejected_total", reason="invalid") == 5
    assert metric(fwd.registry, "mlwatch_forward_errors_total", reason="malformed") == 0


def test_batches_too_big_for_the_spool_are_halved_and_a_single_one_rejected(forward: Any) -> None:
    rec = Recorder()
    rec.fail = lambda items: (
        IngestError(413, "larger than the spool can hold")
        if len(items) > 2 or any(i.get("huge") for i in items)
        else None
    )
    fwd, _ = forward(rec, config={"max_events_per_request": 5})
    entries = [[T0, ev(i)] for i in range(12)] + [[T0, ev(12, huge=True)]]
    peer = Peer(fwd.port).send(["mlwatch.iris", entries, {"chunk": "big"}])
    ack_of(peer, "big")
    assert sorted(r["request_id"] for r in rec.records()) == sorted(f"r{i}" for i in range(12))
    assert metric(fwd.registry, "mlwatch_forward_records_rejected_total", reason="too_large") == 1
    assert max(len(items) for _, items, _, _ in rec.calls) <= 2


# -- handshake ------------------------------------------------------------------------
def _ping(
    nonce: bytes, key: str, hostname: str = "client.test", salt: bytes = b"salty"
) -> list[Any]:
    digest = hashlib.sha512(salt + hostname.encode() + nonce + key.encode()).hexdigest()
    return ["PING", hostname, salt, digest, "", ""]


def test_shared_key_handshake(forward: Any, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        fwd, rec = forward(config={"forward_shared_key": KEY})
        peer = Peer(fwd.port)
        helo = peer.read()
        assert helo[0] == "HELO" and len(helo[1]["nonce"]) == 16
        assert helo[1]["auth"] == b"" and helo[1]["keepalive"] is True
        nonce = helo[1]["nonce"]
        peer.send(_ping(nonce, KEY))
        pong = peer.read()
        server = f"mlwatch-sidecar@{socket.gethostname()}"  # never Fluentd's own name
        expected = hashlib.sha512(b"salty" + server.encode() + nonce + KEY.encode()).hexdigest()
        assert pong == ["PONG", True, "", server, expected]
        peer.send(["mlwatch.iris", T0, ev(0), {"chunk": "in"}])
        ack_of(peer, "in")

        wrong = Peer(fwd.port)
        nonce = wrong.read()[1]["nonce"]
        wrong.send(_ping(nonce, "not-the-key"))
        pong = wrong.read()
        assert pong[:3] == ["PONG", False, "shared_key mismatch"]
        assert wrong.closed_by_server()

        # Fluent Bit's PING: the salt is a str of 16 raw (not UTF-8) random bytes
        fluent_bit = Peer(fwd.port)
        nonce = fluent_bit.read()[1]["nonce"]
        salt = bytes(range(240, 256))
        digest = hashlib.sha512(salt + b"fluent-bit" + nonce + KEY.encode()).hexdigest()
        fluent_bit.raw(
            b"\x96"
            + msgpack.packb("PING")
            + msgpack.packb("fluent-bit")
            + b"\xd9\x10"
            + salt
            + msgpack.packb(digest)
            + msgpack.packb("")
            + msgpack.packb("")
        )
        assert fluent_bit.read()[:2] == ["PONG", True]

        rude = Peer(fwd.port)  # events instead of PING
        assert rude.read()[0] == "HELO"
        rude.send(["mlwatch.iris", T0, ev(1), {"chunk": "x"}])
        assert rude.closed_by_server()
    assert len(rec.records()) == 1
    assert metric(fwd.registry, "mlwatch_forward_errors_total", reason="auth") == 2
    assert KEY not in caplog.text and KEY not in repr(fwd)


# -- refusing what is not the protocol ----------------------------------------------
@pytest.mark.parametrize(
    "frame",
    [
        b"\xc1\xc1\xc1",  # never valid msgpack
        msgpack.packb({"tag": "mlwatch.iris"}),  # not an array
        msgpack.packb(["mlwatch.iris"]),  # too short
        msgpack.packb([42, T0, {}]),  # tag not a str
        b"\x93\xa2\xff\xfe" + msgpack.packb(T0) + msgpack.packb({}),  # tag not UTF-8
        msgpack.packb(["mlwatch.iris", T0, ev(0), "option"]),  # option not a map
        msgpack.packb(["mlwatch.iris", [], {"chunk": 5}]),  # chunk not a string
        msgpack.packb(["mlwatch.iris", b"\x92\x01", {}]),  # packed entry cut short
        msgpack.packb(["mlwatch.iris", b"not gzip", {"compressed": "gzip"}], use_bin_type=True),
    ],
    ids=["garbage", "map", "short", "int-tag", "bad-tag", "option", "chunk", "truncated", "gzip"],
)
def test_malformed_input_closes_that_connection_only(forward: Any, frame: bytes) -> None:
    fwd, rec = forward()
    bystander = Peer(fwd.port)
    peer = Peer(fwd.port).raw(frame)
    assert peer.closed_by_server()
    reg = fwd.registry
    assert (
        metric(reg, "mlwatch_forward_errors_total", reason="malformed")
        + metric(reg, "mlwatch_forward_errors_total", reason="gzip")
    ) == 1
    assert rec.records() == []
    bystander.send(["mlwatch.iris", T0, ev(0), {"chunk": "ok"}])  # others are untouched
    ack_of(bystander, "ok")
    still_serving(fwd, rec)


def test_size_limits_close_the_connection(forward: Any) -> None:
    fwd, rec = forward(config={"max_body_bytes": 64 * 1024}, max_entries=100)
    big = Peer(fwd.port).send(
        [
            "mlwatch.iris",
            [[T0, ev(i, features={"x": "y" * 2000})] for i in range(40)],
            {"chunk": "big"},
        ]
    )
    assert big.closed_by_server()
    bomb = gzip.compress(_packed([[T0, ev(0, features={"x": "0" * 2000})]]) * 200)
    assert len(bomb) < 16 * 1024
    peer = Peer(fwd.port).send(["mlwatch.iris", bomb, {"compressed": "gzip", "chunk": "b"}])
    assert peer.closed_by_server()
    many = Peer(fwd.port).send(["mlwatch.iris", _packed([[T0, {}]] * 101), {"chunk": "m"}])
    assert many.closed_by_server()
    assert metric(fwd.registry, "mlwatch_forward_errors_total", reason="too_large") == 3
    assert rec.records() == []
    still_serving(fwd, rec)


def test_connection_limit_and_idle_timeout(forward: Any) -> None:
    fwd, rec = forward(max_connections=2, idle_timeout_s=0.5)
    a, b = Peer(fwd.port), Peer(fwd.port)
    wait_until(lambda: metric(fwd.registry, "mlwatch_forward_connections") == 2)
    c = Peer(fwd.port)
    assert c.closed_by_server(timeout=2)
    assert metric(fwd.registry, "mlwatch_forward_errors_total", reason="connection_limit") == 1
    assert a.closed_by_server(timeout=3) and b.closed_by_server(timeout=3)  # idle
    wait_until(lambda: metric(fwd.registry, "mlwatch_forward_connections") == 0)
    still_serving(fwd, rec)


def trickle(peer: Peer, data: bytes, every: float, within: float) -> float | None:
    """Send ``data`` a byte every ``every`` seconds: how long the server took to close the
    connection, or None when it was still open after ``within`` seconds (or all was sent)."""
    started = time.monotonic()
    for i in range(len(data)):
        if time.monotonic() - started > within:
            return None
        try:
            peer.sock.sendall(data[i : i + 1])
        except OSError:  # reset by the server
            return time.monotonic() - started
        if not peer.nothing_to_read(every):
            assert peer.closed_by_server(1.0)
            return time.monotonic() - started
    return None


def test_the_handshake_has_an_absolute_deadline(forward: Any) -> None:
    """A byte every 0.2 s kept a 0.5 s handshake timeout from ever firing."""
    fwd, _ = forward(config={"forward_shared_key": KEY}, handshake_timeout_s=0.5)
    peer = Peer(fwd.port)
    nonce = peer.read()[1]["nonce"]
    took = trickle(peer, msgpack.packb(_ping(nonce, KEY), use_bin_type=True), 0.2, within=3)
    assert took is not None and took < 1.5
    assert metric(fwd.registry, "mlwatch_forward_errors_total", reason="timeout") == 1
    wait_until(lambda: metric(fwd.registry, "mlwatch_forward_connections") == 0)


def test_a_message_has_an_absolute_deadline(forward: Any) -> None:
    fwd, rec = forward(message_timeout_s=0.6)
    peer = Peer(fwd.port)
    # heartbeats are messages of their own: a slow stream of them is fine
    assert trickle(peer, b"\xc0" * 6, 0.2, within=3) is None
    peer.send(["mlwatch.iris", T0, ev(0), {"chunk": "whole"}])
    ack_of(peer, "whole")
    slow = msgpack.packb(["mlwatch.iris", T0, ev(1), {"chunk": "slow"}], use_bin_type=True)
    took = trickle(peer, slow, 0.2, within=3)
    assert took is not None and took < 1.5
    assert metric(fwd.registry, "mlwatch_forward_errors_total", reason="timeout") == 1
    assert [r["request_id"] for r in rec.records()] == ["r0"]
    still_serving(fwd, rec)


def test_silence_in_the_middle_of_a_message_is_counted(forward: Any) -> None:
    fwd, _ = forward(idle_timeout_s=0.3)
    idle = Peer(fwd.port)
    cut = Peer(fwd.port).raw(msgpack.packb(["mlwatch.iris", T0, ev(0)])[:10])
    assert idle.closed_by_server(3) and cut.closed_by_server(3)
    assert metric(fwd.registry, "mlwatch_forward_errors_total", reason="timeout") == 1


def test_buffered_bytes_have_a_budget_across_connections(forward: Any) -> None:
    fwd, rec = forward(config={"max_body_bytes": 64 * 1024}, max_buffered_bytes=64 * 1024)
    reg = fwd.registry
    msg = msgpack.packb(
        ["mlwatch.iris", [[T0, ev(0, features={"x": "y" * 50_000})]], {"chunk": "a"}],
        use_bin_type=True,
    )
    first = Peer(fwd.port).raw(msg[:40_000])
    wait_until(lambda: metric(reg, "mlwatch_forward_buffered_bytes") == 40_000)
    second = Peer(fwd.port).raw(msg[:40_000])  # 80,000 bytes would be buffered
    assert second.closed_by_server()
    assert metric(reg, "mlwatch_forward_errors_total", reason="buffer_limit") == 1
    assert metric(reg, "mlwatch_forward_buffered_bytes") == 40_000
    first.raw(msg[40_000:])
    ack_of(first, "a")
    wait_until(lambda: metric(reg, "mlwatch_forward_buffered_bytes") == 0)  # after the ack
    third = Peer(fwd.port).raw(msg)  # room again
    ack_of(third, "a")
    assert len(rec.records()) == 2


def test_before_the_handshake_messages_are_small(forward: Any) -> None:
    fwd, _ = forward(config={"forward_shared_key": KEY})
    peer = Peer(fwd.port)
    assert peer.read()[0] == "HELO"
    with contextlib.suppress(OSError):  # the server may reset it while we send
        peer.raw(b"\xc6" + struct.pack(">I", 1 << 20) + bytes(100 * 1024))
    assert peer.closed_by_server(timeout=2)
    assert metric(fwd.registry, "mlwatch_forward_errors_total", reason="too_large") == 1
    ok = Peer(fwd.port)
    ok.send(_ping(ok.read()[1]["nonce"], KEY))
    assert ok.read()[:2] == ["PONG", True]
    # after the PONG the ordinary limit applies
    ok.send(["mlwatch.iris", [[T0, ev(0, features={"x": "y" * 2000})]] * 50, {"chunk": "big"}])
    ack_of(ok, "big")


def test_stop_ends_connections_and_frees_the_port(forward: Any) -> None:
    fwd, _ = forward()
    peer = Peer(fwd.port)
    wait_until(lambda: metric(fwd.registry, "mlwatch_forward_connections") == 1)
    started = time.monotonic()
    fwd.stop()
    assert time.monotonic() - started < 2
    assert peer.closed_by_server(timeout=2)
    with socket.create_server(("127.0.0.1", fwd.port)):
        pass


# -- end to end through a real sidecar -----------------------------------------------


def stored_ids(sc: Sidecar, model: str) -> list[str]:
    return [e["request_id"] for e in sc.store.events(model, limit=1000)]


def test_python_fluent_logger_senders(forward_sidecar: Callable[..., Sidecar]) -> None:
    """fluent-logger-python speaks Message mode without acks (it cannot request them), so
    delivery is checked in the store."""
    from fluent import asyncsender, sender

    sc = forward_sidecar()
    sync = sender.FluentSender("mlwatch", port=forward_port(sc), nanosecond_precision=True)
    background = asyncsender.FluentSender("mlwatch", port=forward_port(sc))
    for i in range(20):
        assert sync.emit("py", ev(i, request_id=f"sync-{i}"))
        assert background.emit_with_time("py", T0 + i, ev(i, request_id=f"async-{i}"))
    sync.close()
    background.close()
    wait_until(lambda: sc.store.count_events("py") == 40, what="40 events stored")
    assert sorted(stored_ids(sc, "py")) == sorted(
        [f"sync-{i}" for i in range(20)] + [f"async-{i}" for i in range(20)]
    )
    assert (
        metric(
            sc.registry,
            "mlwatch_predictions_total",
            model="py",
            version="unknown",
            environment="default",
            status="ok",
        )
        == 40
    )


def test_hand_made_forward_chunk_end_to_end(
    forward_sidecar: Callable[..., Sidecar], caplog: pytest.LogCaptureFixture
) -> None:
    sc = forward_sidecar()
    entries = [[et(T0 + i), ev(i)] for i in range(10)]
    entries[3] = [et(T0 + 3), ev(3, status="maybe")]
    entries[7] = [et(T0 + 7), ev(7, features={"x": [1, 2]})]
    msg = ["mlwatch.hand", entries, {"chunk": "hand-1", "size": 10}]
    with caplog.at_level(logging.WARNING, logger="mlwatch.sidecar.forward"):
        peer = Peer(forward_port(sc)).send(msg)
        ack_of(peer, "hand-1")
    assert "dropped entry 3 of tag 'mlwatch.hand'" in caplog.text
    assert "field 'status': expected 'ok' or 'error'" in caplog.text
    # acked means durable: a sidecar restarted now would replay them from the spool
    assert sc.spool.total_bytes() > 0
    wait_until(lambda: sc.store.count_events("hand") == 8, what="8 good events stored")
    peer.send(msg)  # the same chunk again, as after a lost ack: stored once
    ack_of(peer, "hand-1")
    wait_until(lambda: sc.spool.lag_bytes("store") == 0, what="store caught up")
    assert sorted(stored_ids(sc, "hand")) == sorted(f"r{i}" for i in range(10) if i not in (3, 7))
    assert metric(sc.registry, "mlwatch_forward_records_rejected_total", reason="invalid") == 4
    assert metric(sc.registry, "mlwatch_forward_records_total", kind="events") == 16


def test_full_spool_gets_no_ack(forward_sidecar: Callable[..., Sidecar]) -> None:
    sc = forward_sidecar(spool_segment_bytes=4096, spool_max_bytes=16384)
    sink = sc.sinks[0]
    real_export = sink.export

    def broken(batch: Any) -> None:
        raise OSError("disk on fire")

    sink.export = broken  # type: ignore[method-assign]
    acked = 0
    peer = Peer(forward_port(sc))
    for n in range(40):
        chunk = f"c{n}"
        peer.send(
            [
                "mlwatch.full",
                [[T0, ev(n * 10 + j, features={"x": "y" * 200})] for j in range(5)],
                {"chunk": chunk},
            ]
        )
        try:
            reply = peer.read()
        except ConnectionError:
            break
        assert reply == {"ack": chunk}
        acked += 1
    else:
        raise AssertionError("the spool never filled up")
    assert acked >= 1
    assert metric(sc.registry, "mlwatch_forward_errors_total", reason="unavailable") == 1
    sink.export = real_export  # type: ignore[method-assign]
    wait_until(lambda: sc.store.count_events("full") == 5 * acked, what="backlog drained")
    peer = Peer(forward_port(sc)).send(["mlwatch.full", T0, ev(999), {"chunk": "later"}])
    wait_until(lambda: peer.read() == {"ack": "later"}, what="accepted again")


def require_node_peer() -> str:
    """The node binary with tests/node's fluent-logger installed: skip locally, fail in CI."""
    node = shutil.which("node")
    installed = (NODE_DIR / "node_modules" / "fluent-logger" / "package.json").exists()
    if node is None or not installed:
        message = (
            "node is not installed"
            if node is None
            else "the Node peer is not installed (npm ci --prefix tests/node)"
        )
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return node


def run_node(
    port: int, events: list[dict[str, Any]], *, mode: str, key: str | None, timeout_ms: int = 10_000
) -> dict[str, Any]:
    node = require_node_peer()
    spec = {
        "host": "127.0.0.1",
        "port": port,
        "tagPrefix": "mlwatch",
        "eventMode": mode,
        "requireAckResponse": True,
        "timeoutMs": timeout_ms,
        "events": events,
        "security": {"clientHostname": "node-peer.test", "sharedKey": key} if key else None,
    }
    proc = subprocess.run(
        [node, str(NODE_DIR / "send.js")],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        timeout=timeout_ms / 1000 + 30,
        env={**os.environ, "NODE_PATH": ""},
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize("mode", ["Message", "PackedForward", "CompressedPackedForward"])
def test_node_fluent_logger_with_shared_key(
    forward_sidecar: Callable[..., Sidecar], mode: str
) -> None:
    require_node_peer()
    sc = forward_sidecar(forward_shared_key=KEY)
    events: list[dict[str, Any]] = [
        {
            "label": "node",
            "time": [T0 + i, 250_000] if i % 2 else T0 + i,
            "record": ev(i, request_id=f"{mode}-{i}"),
        }
        for i in range(30)
    ]
    events.append(
        {
            "label": "feedback",
            "time": None,
            "record": {"model": "node", "request_id": f"{mode}-0", "label": 1},
        }
    )
    result = run_node(forward_port(sc), events, mode=mode, key=KEY)
    assert result == {"acked": 31, "errors": []}  # every callback fired after its ack
    # acked means in the spool; the store follows
    wait_until(lambda: sc.store.count_events("node") == 30, what="30 events stored")
    wait_until(lambda: sc.store.count_feedback("node") == 1, what="feedback stored")
    assert sorted(stored_ids(sc, "node")) == sorted(f"{mode}-{i}" for i in range(30))
    stored = {e["request_id"]: e for e in sc.store.events("node", limit=100)}
    assert stored[f"{mode}-1"]["ts"] == "2023-11-14T22:13:21.000250Z"
    assert stored[f"{mode}-2"]["ts"] == "2023-11-14T22:13:22.000000Z"

    refused = run_node(
        forward_port(sc),
        [{"label": "node", "time": None, "record": ev(0, request_id="intruder")}],
        mode=mode,
        key="wrong-key",
        timeout_ms=2000,
    )
    assert refused["acked"] == 0
    assert any("shared_key mismatch" in e for e in refused["errors"]), refused
    assert sc.store.count_events("node") == 30
    assert metric(sc.registry, "mlwatch_forward_errors_total", reason="auth") == 1


@pytest.mark.integration
def test_real_sidecar_process_keeps_what_it_acked_through_kill_9(tmp_path: Path) -> None:
    """``mlwatch sidecar`` with MLWATCH_FORWARD_PORT: every acked chunk survives a kill -9
    that follows the ack at once (the ack came after the spool append)."""
    from tests.helpers import free_port
    from tests.integration.servers import SidecarProcess, get_json

    port = free_port()
    proc = SidecarProcess(
        tmp_path / "data",
        MLWATCH_FORWARD_PORT=str(port),
        MLWATCH_FORWARD_SHARED_KEY=KEY,
        MLWATCH_RETENTION_DAYS="0",
    ).start()
    try:
        wait_until(
            lambda: socket.create_connection(("127.0.0.1", port), timeout=1).close() is None,
            what="forward port open",
        )
        peer = Peer(port)
        nonce = peer.read()[1]["nonce"]
        peer.send(_ping(nonce, KEY))
        assert peer.read()[:2] == ["PONG", True]
        for n in range(5):
            peer.send(
                [
                    "mlwatch.proc",
                    [[et(T0 + n), ev(n * 100 + j, request_id=f"p{n}-{j}")] for j in range(100)],
                    {"chunk": f"k{n}"},
                ]
            )
            ack_of(peer, f"k{n}")
        proc.kill9()
        proc.start()  # replays the spool into the store
        wait_until(
            lambda: get_json(proc.url + "/v1/models/proc/status")["events_stored"] == 500,
            what="500 acked events after the restart",
        )
        assert KEY not in proc.log()
    finally:
        proc.stop()
