"""FluentExporter against the sidecar's real forward input, and against servers that fail."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import msgpack
import pytest
from prometheus_client import CollectorRegistry

import mlwatch
from mlwatch.client import fluent, runtime
from mlwatch.client.exporter import ExportBatch, Partial, Result, settle
from mlwatch.client.fluent import FluentExporter
from mlwatch.ids import event_id
from mlwatch.logs import failures
from mlwatch.settings import load_config
from mlwatch.sidecar.service import Sidecar
from mlwatch.wire import format_ts
from tests.helpers import forward_port, free_port, wait_until

KEY = "fluent-shared-key"


@pytest.fixture
def exporters() -> Iterator[Callable[..., FluentExporter]]:
    made: list[FluentExporter] = []

    def make(port: int, **kwargs: Any) -> FluentExporter:
        kwargs.setdefault("timeout_s", 2.0)
        ex = FluentExporter("127.0.0.1", port, **kwargs)
        made.append(ex)
        return ex

    yield make
    for ex in made:
        ex.shutdown()


def events(n: int, model: str = "iris", start: int = 0) -> list[dict[str, Any]]:
    now = time.time_ns()
    return [
        {
            "event_id": event_id(now + i),
            "ts": format_ts(now + i),
            "model": model,
            "version": "2",
            "request_id": f"{model}-{i}",
            "latency_ms": 0.5 + i,
            "status": "ok",
            "features": {"x": float(i)},
            "prediction": i % 3,
        }
        for i in range(start, start + n)
    ]


def export(
    ex: FluentExporter,
    kind: str,
    records: list[dict[str, Any]],
    *,
    within: float = 5.0,
    interrupt: threading.Event | None = None,
    dropped: list[dict[str, Any]] | None = None,
) -> Result | Partial:
    return ex.export(
        ExportBatch(
            kind, records, time.monotonic() + within, interrupt or threading.Event(), dropped
        )
    )


def dropped_total(sc: Sidecar, model: str, version: str, reason: str) -> float:
    return (
        sc.registry.get_sample_value(
            "mlwatch_events_dropped_total",
            {"model": model, "environment": "default", "version": version, "reason": reason},
        )
        or 0.0
    )


def test_events_feedback_registrations_and_drop_reports_reach_the_sidecar(
    forward_sidecar: Callable[..., Sidecar], exporters: Callable[..., FluentExporter]
) -> None:
    sc = forward_sidecar()
    ex = exporters(forward_port(sc))
    report = [
        {
            "model": "iris",
            "version": "2",
            "reason": "queue_full",
            "count": 7,
            "report_id": "report-1",
        }
    ]
    mixed = events(30) + events(5, model="churn")
    assert export(ex, "events", mixed, dropped=report) is Result.OK
    assert export(ex, "events", [], dropped=report) is Result.OK  # resent: counted once
    assert (
        export(ex, "feedback", [{"model": "iris", "request_id": "iris-3", "label": 2}]) is Result.OK
    )
    assert (
        export(ex, "models", [{"model": "iris", "version": "2", "params": {"C": 0.5}}]) is Result.OK
    )
    assert export(ex, "events", events(2, model="feedback")) is Result.OK  # a reserved name
    # acked means durable in the spool; the store follows
    wait_until(lambda: sc.store.count_events("iris") == 30, what="iris events stored")
    wait_until(lambda: sc.store.count_feedback("iris") == 1, what="feedback stored")
    wait_until(lambda: sc.store.registrations("iris"), what="registration stored")
    wait_until(lambda: sc.store.count_events("feedback") == 2, what="events of 'feedback'")
    assert sc.store.count_events("churn") == 5
    stored = {e["event_id"]: e for e in sc.store.events("iris", limit=100)}
    for original in mixed[:30]:
        got = {k: v for k, v in stored[original["event_id"]].items() if v is not None}
        assert got == original | {"environment": "default"}  # every field, the sidecar's env
    assert sc.store.registrations("iris")[0]["params"] == {"C": 0.5}
    assert dropped_total(sc, "iris", "2", "queue_full") == 7
    fwd = sc.inputs[0]
    assert fwd.registry.get_sample_value("mlwatch_forward_records_total", {"kind": "events"}) == 37


def test_shared_key(
    forward_sidecar: Callable[..., Sidecar],
    exporters: Callable[..., FluentExporter],
    caplog: pytest.LogCaptureFixture,
) -> None:
    sc = forward_sidecar(forward_shared_key=KEY)
    assert export(exporters(forward_port(sc), shared_key=KEY), "events", events(3)) is Result.OK
    wait_until(lambda: sc.store.count_events("iris") == 3, what="3 events stored")
    failures.reset()
    for key in ("a-wrong-key", None):  # refused at once, not retried until the deadline
        started = time.monotonic()
        assert (
            export(exporters(forward_port(sc), shared_key=key), "events", events(3), within=10)
            is Result.FAILED
        )
        assert time.monotonic() - started < 2
    assert "shared_key mismatch" in caplog.text
    assert KEY not in caplog.text and "a-wrong-key" not in caplog.text
    assert sc.store.count_events("iris") == 3


def test_nothing_listening_fails_within_the_deadline_and_never_raises(
    exporters: Callable[..., FluentExporter], caplog: pytest.LogCaptureFixture
) -> None:
    ex = exporters(free_port(), rng=lambda: 0.5)  # backoff 0.1, 0.2, 0.4, then 0.8 s
    failures.reset()
    started = time.monotonic()
    assert export(ex, "events", events(4), within=1.0) is Result.FAILED
    assert time.monotonic() - started < 1.5
    assert "giving up on 4 records for mlwatch.iris after 4 attempts" in caplog.text
    interrupt = threading.Event()
    interrupt.set()  # shutdown began: one attempt, then give up
    started = time.monotonic()
    assert export(ex, "events", events(4), interrupt=interrupt) is Result.INTERRUPTED
    assert time.monotonic() - started < 1
    report = [{"model": "iris", "version": "2", "reason": "error", "count": 1, "report_id": "r"}]
    res = export(ex, "events", [], within=0.3, dropped=report)
    assert settle(res, []) == (False, [])  # the report is kept for the next try


class SilentServer:
    """Accepts connections and reads messages, but never acks (a server that lost them)."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.chunks: list[str] = []
        self.conns: list[socket.socket] = []
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self.read, args=(conn,), daemon=True).start()

    def read(self, conn: socket.socket) -> None:
        unpacker = msgpack.Unpacker(raw=False)
        while True:
            try:
                data = conn.recv(65536)
            except OSError:
                return
            if not data:
                return
            unpacker.feed(data)
            for msg in unpacker:
                self.chunks.append(msg[2]["chunk"])

    def close(self) -> None:
        self.listener.close()
        for conn in self.conns:
            conn.close()


def test_a_missing_ack_is_retried_with_the_same_chunk_then_given_up(
    exporters: Callable[..., FluentExporter],
) -> None:
    server = SilentServer()
    try:
        ex = exporters(server.port, timeout_s=0.3, rng=lambda: 0.5)
        started = time.monotonic()
        assert export(ex, "events", events(2), within=2.0) is Result.FAILED
        assert time.monotonic() - started < 3
        assert len(server.chunks) >= 2 and len(set(server.chunks)) == 1
    finally:
        server.close()


def test_a_deadline_brought_forward_ends_a_wait_for_an_ack(
    exporters: Callable[..., FluentExporter],
) -> None:
    """Shutdown lowers the batch's deadline while the exporter waits on the socket."""
    server = SilentServer()
    try:
        ex = exporters(server.port, timeout_s=30)
        batch = ExportBatch("events", events(1), time.monotonic() + 30)
        threading.Timer(0.3, lambda: setattr(batch, "deadline", time.monotonic())).start()
        started = time.monotonic()
        assert ex.export(batch) is Result.FAILED
        assert time.monotonic() - started < 1.5
    finally:
        server.close()


def test_reconnects_after_the_server_closed_an_idle_connection(
    sidecar_config: Callable[..., Any], exporters: Callable[..., FluentExporter]
) -> None:
    from mlwatch.inputs.forward import ForwardInput

    got: list[Any] = []

    def accept(
        kind: bytes, items: list[Any], report_id: str | None = None, drops: Any = None
    ) -> int:
        got.extend(items)
        return len(items)

    fwd = ForwardInput(
        sidecar_config(forward_port=0), accept, registry=CollectorRegistry(), idle_timeout_s=0.2
    )
    fwd.start()
    try:
        ex = exporters(fwd.port)
        assert export(ex, "events", events(1)) is Result.OK
        wait_until(
            lambda: fwd.registry.get_sample_value("mlwatch_forward_connections") == 0,
            what="idle connection closed by the server",
        )
        failures.reset()
        assert export(ex, "events", events(1, start=1)) is Result.OK
        ex.after_fork()  # a forked child starts its own connection
        assert export(ex, "events", events(1, start=2)) is Result.OK
        assert [r["request_id"] for r in got] == ["iris-0", "iris-1", "iris-2"]
    finally:
        fwd.stop()


def test_unencodable_and_oversized_records_are_lost_alone(
    forward_sidecar: Callable[..., Sidecar], exporters: Callable[..., FluentExporter]
) -> None:
    sc = forward_sidecar()
    ex = exporters(forward_port(sc), max_message_bytes=2048)  # several messages per call
    good = events(20)
    odd = dict(events(1, start=100)[0], prediction={1, 2})  # a set: not msgpack
    huge = dict(events(1, start=200)[0], features={"x": "y" * 5000})  # > one message
    res = export(ex, "events", [*good[:10], odd, huge, *good[10:]])
    assert isinstance(res, Partial) and not res.report_sent
    assert [(r, [e["request_id"] for e in recs]) for r, recs in res.lost] == [
        (Result.ERROR, ["iris-100"]),
        (Result.REJECTED, ["iris-200"]),
    ]
    wait_until(lambda: sc.store.count_events("iris") == 20, what="the 20 good events stored")


def entry_of(rec: dict[str, Any], size: int) -> dict[str, Any]:
    """``rec`` padded so that its forward entry ([EventTime, record]) is ``size`` bytes."""
    for n in range(size):
        out = dict(rec, features={"a": "y" * min(n, 2000), "b": "y" * max(0, n - 2000)})
        if len(msgpack.packb([msgpack.ExtType(0, bytes(8)), out], use_bin_type=True)) >= size:
            return out
    raise AssertionError(size)


def test_messages_and_single_records_stay_within_the_receivers_limit(
    forward_sidecar: Callable[..., Sidecar], exporters: Callable[..., FluentExporter]
) -> None:
    """With max_message_bytes equal to the receiver's limit, every message is taken, and a
    record too big for a message of its own is rejected at once instead of being retried
    until the deadline (the entry limit used to be 16 MiB whatever the message limit)."""
    sc = forward_sidecar(max_body_bytes=4096)
    ex = exporters(forward_port(sc), max_message_bytes=4096)
    small = [dict(e, features={"x": "y" * 900}) for e in events(12)]
    fits = entry_of(events(1, start=100)[0], 3900)
    too_big = entry_of(events(1, start=200)[0], 4080)  # the message around it is > 4096
    started = time.monotonic()
    res = export(ex, "events", [*small, fits, too_big], within=5)
    assert time.monotonic() - started < 2
    assert isinstance(res, Partial)
    assert [(r, [e["request_id"] for e in recs]) for r, recs in res.lost] == [
        (Result.REJECTED, ["iris-200"])
    ]
    wait_until(lambda: sc.store.count_events("iris") == 13, what="13 events stored")
    fwd = sc.inputs[0]
    assert (
        fwd.registry.get_sample_value("mlwatch_forward_errors_total", {"reason": "too_large"}) == 0
    )


def test_the_default_single_record_limit_is_what_receivers_accept(
    exporters: Callable[..., FluentExporter],
) -> None:
    # 4 MiB: under Fluent Bit's default Buffer_Max_Size (6,144,000 bytes) and the sidecar's
    # default max_body_bytes (16 MiB)
    assert fluent.MAX_MESSAGE_BYTES == 4 * 1024 * 1024
    assert fluent.MAX_MESSAGE_BYTES < 6_144_000
    assert load_config(env={}).max_body_bytes >= fluent.MAX_MESSAGE_BYTES
    ex = exporters(free_port())  # nothing listens: a record that were sent would fail
    record = dict(events(1)[0], prediction="y" * (5 * 1024 * 1024))
    started = time.monotonic()
    assert export(ex, "events", [record], within=2) is Result.REJECTED
    assert time.monotonic() - started < 0.5


# -- through the decorator and the shipper --------------------------------------------
@pytest.fixture
def fluent_runtime() -> Iterator[Callable[..., Any]]:
    def start(port: int, **settings: Any) -> Any:
        failures.reset()
        config = load_config(
            env={},
            fluentd_host="127.0.0.1",
            fluentd_port=port,
            model="served",
            version="1",
            code_version="abc",
            flush_interval_ms=50,
            **settings,
        )
        return runtime.start(config)

    yield start
    runtime.shutdown(5.0)  # False where a test loses records on purpose
    shipper = runtime._current.shipper if runtime._current else None
    assert shipper is None or shipper.thread is None or not shipper.thread.is_alive()


def test_monitor_ships_through_the_forward_protocol(
    forward_sidecar: Callable[..., Sidecar], fluent_runtime: Callable[..., Any]
) -> None:
    sc = forward_sidecar(forward_shared_key=KEY)
    fluent_runtime(forward_port(sc), forward_shared_key=KEY)

    @mlwatch.monitor(request_id="rid", params={"depth": 3})
    def predict(features: dict[str, float], rid: str) -> int:
        return int(features["x"] > 1)

    for i in range(50):
        assert predict({"x": float(i)}, rid=f"q{i}") == int(i > 1)
    mlwatch.log_feedback("q7", 1, model="served")
    assert mlwatch.flush(10.0)
    wait_until(lambda: sc.store.count_events("served") == 50, what="50 events stored")
    wait_until(lambda: sc.store.count_feedback("served") == 1, what="feedback stored")
    assert sc.store.registrations("served")[0]["params"] == {"depth": 3}
    assert {e["request_id"] for e in sc.store.events("served", limit=100)} == {
        f"q{i}" for i in range(50)
    }


def test_drops_are_counted_when_nothing_listens_and_calls_never_fail(
    fluent_runtime: Callable[..., Any],
) -> None:
    rt = fluent_runtime(free_port(), retry_timeout_s=0.2, send_timeout_s=0.1)

    @mlwatch.monitor
    def predict(x: float) -> float:
        return x * 2

    for i in range(25):
        assert predict(float(i)) == i * 2.0
    assert not mlwatch.flush(10.0)  # nothing could be delivered
    assert rt.shipper is not None
    counts = rt.shipper.drops.snapshot()
    assert counts == {(("served", "1"), "send_failed"): 25}
