"""The consumer's health: a sink is stalled when it has records to deliver and has
committed none of them for longer than the bound, whatever it is doing meanwhile
(blocked in a write, backing off after errors); slow progress and idleness are not
stalls."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlwatch.sinks.base import Batch, ConsumerOptions, ExportResult
from mlwatch.sinks.consumer import Consumer
from mlwatch.store.spool import Spool
from tests.helpers import wait_until


class GatedSink:
    """Exports block until ``gate`` is set; each export then takes ``delay_s``."""

    name = "gated"

    def __init__(self, delay_s: float = 0.0, *, error: str | None = None) -> None:
        self.options = ConsumerOptions(max_records=1, max_backoff_s=0.2)
        self.gate = threading.Event()
        self.delay_s = delay_s
        self.error = error
        self.records = 0

    def export(self, batch: Batch) -> ExportResult:
        if self.error is not None:
            return ExportResult.failed(self.error)
        self.gate.wait(30)
        time.sleep(self.delay_s)
        self.records += len(batch.event_arrays)
        return ExportResult.SUCCESS

    def force_flush(self, timeout: float = 10.0) -> bool:
        return True

    def shutdown(self, timeout: float = 10.0) -> bool:
        self.gate.set()
        return True


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Spool]:
    with Spool(tmp_path / "spool", consumers=["gated"], fsync="always") as s:
        yield s


def run(spool: Spool, sink: GatedSink, stall_s: float) -> Consumer:
    consumer = Consumer(spool, sink, on_error=lambda _n, _e: None, stall_s=stall_s)
    consumer.start()
    return consumer


def finish(consumer: Consumer) -> None:
    consumer.sink.shutdown()
    consumer.stop()
    consumer.join(10)


def test_a_blocked_export_is_a_stall_after_the_bound(spool: Spool) -> None:
    sink = GatedSink()
    spool.append([b"E1[]"])
    consumer = run(spool, sink, stall_s=0.3)
    try:
        state = wait_until(
            lambda: not (s := consumer.state())["healthy"] and s, timeout=10, what="a stall"
        )
        assert state["alive"] is True
        assert state["last_error"].startswith("no progress for "), state
        assert "export running for" in state["last_error"]
        sink.gate.set()
        wait_until(lambda: consumer.state()["healthy"], timeout=10, what="healthy again")
        assert consumer.state()["last_error"] is None and spool.lag_bytes("gated") == 0
    finally:
        finish(consumer)


def test_a_failing_export_names_its_error_in_the_stall(spool: Spool) -> None:
    sink = GatedSink(error="database is locked")
    spool.append([b"E1[]"])
    consumer = run(spool, sink, stall_s=0.3)
    try:
        wait_until(
            lambda: (consumer.state()["last_error"] or "").startswith("no progress for "),
            timeout=10,
            what="the stall reported",
        )
        assert consumer.state()["last_error"].endswith("database is locked")
        sink.error = None
        sink.gate.set()
        wait_until(lambda: consumer.state()["healthy"], timeout=10, what="healthy again")
    finally:
        finish(consumer)


def test_slow_progress_is_not_a_stall(spool: Spool) -> None:
    """Twelve records at 0.25 s each take three seconds, longer than the bound of two,
    yet every export commits well within it."""
    sink = GatedSink(delay_s=0.25)
    sink.gate.set()
    spool.append([b"E1[]"] * 12)
    consumer = run(spool, sink, stall_s=2.0)
    try:
        while spool.lag_bytes("gated"):  # checked all along, not once at the end
            assert consumer.state()["healthy"], consumer.state()
            time.sleep(0.05)
        assert sink.records == 12
    finally:
        finish(consumer)


def test_an_idle_sink_is_not_stalled(spool: Spool) -> None:
    sink = GatedSink()
    sink.gate.set()
    consumer = run(spool, sink, stall_s=0.2)
    try:
        until = time.monotonic() + 1.0
        while time.monotonic() < until:
            assert consumer.state()["healthy"], consumer.state()
            time.sleep(0.05)
    finally:
        finish(consumer)
