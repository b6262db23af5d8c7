"""The recorder's queue is bounded, its failures are counted, and its thread survives them."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry

from mlwatch.errors import IngestError
from mlwatch.proxy.events import Reader
from mlwatch.proxy.metrics import ProxyMetrics
from mlwatch.proxy.recorder import Recorder
from mlwatch.settings import load_config
from tests.helpers import wait_until
from tests.proxy.test_parsers import exchange

CALL = exchange("/v1/models/m:predict", {"instances": [[1.0]]}, {"predictions": [0]})


def count(metrics: ProxyMetrics, reason: str) -> float:
    return metrics.failures[reason]._value.get()


def test_a_full_queue_drops_and_counts_without_blocking() -> None:
    metrics = ProxyMetrics(CollectorRegistry())
    accepted: list[list[dict[str, Any]]] = []
    recorder = Recorder(Reader(load_config(env={})), accepted.append, metrics, queue_size=2)
    for _ in range(5):  # not started: nothing leaves the queue
        recorder.submit(CALL)
    assert count(metrics, "queue_full") == 3
    recorder.start()
    recorder.stop()
    assert sum(map(len, accepted)) == 2  # what was queued is recorded at stop


def test_spool_refusals_and_bugs_are_counted_and_the_thread_goes_on() -> None:
    metrics = ProxyMetrics(CollectorRegistry())
    answers = iter(
        [
            IngestError(503, "spool is full (sinks are behind); retry later"),
            IngestError(503, "sidecar is shutting down"),
            RuntimeError("bug"),
        ]
    )
    accepted: list[list[dict[str, Any]]] = []

    def accept(events: list[dict[str, Any]]) -> None:
        answer = next(answers, None)
        if answer is not None:
            raise answer
        accepted.append(events)

    recorder = Recorder(Reader(load_config(env={})), accept, metrics, queue_size=10)
    recorder.start()
    try:
        for reason in ("spool_full", "spool_unavailable", "internal"):
            recorder.submit(CALL)
            wait_until(lambda r=reason: count(metrics, r) == 1, what=reason)
        recorder.submit(CALL)
        wait_until(lambda: accepted, what="recording again")
    finally:
        recorder.stop()


def test_a_call_whose_events_break_the_wire_format_does_not_cost_the_others() -> None:
    from mlwatch import wire
    from mlwatch.inputs.body import validate_all

    metrics = ProxyMetrics(CollectorRegistry())
    accepted: list[dict[str, Any]] = []

    def accept(events: list[dict[str, Any]]) -> None:  # as Sidecar.accept validates
        accepted.extend(validate_all(events, wire.validate_event, 3))

    reader = Reader(load_config(env={}))
    # a model name the wire format refuses
    bad = exchange("/v1/models/not a name:predict", {"instances": [[1.0]]}, {"predictions": [0]})
    recorder = Recorder(reader, accept, metrics, queue_size=10, max_events=3)
    recorder._record([CALL, bad, CALL, CALL, CALL])  # 4 good events: two appends of <= 3
    assert len(accepted) == 4 and count(metrics, "invalid") == 1
