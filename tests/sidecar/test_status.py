"""``GET /v1/models/{model}/status``: a sink lag of 0 means the counts beside it include
everything the sidecar had acknowledged when the status was taken."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from mlwatch.sidecar.service import Sidecar
from mlwatch.store.payloads import EVENTS
from tests.helpers import event, wait_until


@pytest.fixture
def sidecar(sidecar_config: Callable[..., Any]) -> Iterator[Sidecar]:
    sc = Sidecar(sidecar_config(), registry=CollectorRegistry())
    yield sc
    sc.stop()


def test_lag_zero_implies_the_count_includes_every_acknowledged_event(
    sidecar: Sidecar,
) -> None:
    """The store commits a batch while the status is being taken (between the count and
    the lag, if the count came first): the status must never say "caught up" next to a
    count that misses acknowledged events."""
    [store_consumer] = sidecar.consumers
    gate = threading.Event()
    real_export = store_consumer.sink.export
    real_count = sidecar.store.count_events

    def gated_export(batch: Any) -> Any:
        gate.wait(10)
        return real_export(batch)

    def count_while_the_store_commits(model: str, **kw: Any) -> int:
        n = real_count(model, **kw)
        gate.set()  # the store commits the batch now, in the middle of the status
        wait_until(lambda: sidecar.spool.lag_bytes("store") == 0, what="the batch committed")
        return n

    store_consumer.sink.export = gated_export  # type: ignore[method-assign]
    sidecar.store.count_events = count_while_the_store_commits  # type: ignore[method-assign]
    sidecar.start()
    assert sidecar.accept(EVENTS, [event(i) for i in range(10)]) == 10  # acknowledged
    status = sidecar.status("iris")
    lag = status["sinks"]["store"]["lag_bytes"]
    assert lag > 0 or status["events_stored"] == 10, status
    sidecar.store.count_events = real_count  # type: ignore[method-assign]
    assert sidecar.status("iris")["events_stored"] == 10


def test_polled_status_never_shows_lag_zero_with_events_missing(sidecar: Sidecar) -> None:
    """The same property without any hook: polled while the store drains 40 batches."""
    sidecar.start()
    acked = 0
    for k in range(40):
        acked += sidecar.accept(EVENTS, [event(k * 50 + i) for i in range(50)])
        status = sidecar.status("iris")
        if status["sinks"]["store"]["lag_bytes"] == 0:
            assert status["events_stored"] == acked, (k, status)
    wait_until(
        lambda: sidecar.status("iris")["sinks"]["store"]["lag_bytes"] == 0,
        what="the store caught up",
    )
    assert sidecar.status("iris")["events_stored"] == acked
