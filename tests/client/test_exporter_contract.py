"""One contract suite over every client exporter: the sidecar over HTTP, the forward
protocol into the sidecar's forward input, local mode's embedded store, memory.

Each implementation is driven against its real destination (a real sidecar on a free
port, the real forward input, a real SQLite file) and against one that is down.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mlwatch.client.exporter import ExportBatch, Exporter, Partial, Result, settle
from mlwatch.client.local import LocalExporter
from mlwatch.client.memory import MemoryExporter
from mlwatch.client.transport import HttpExporter
from mlwatch.ids import event_id
from mlwatch.times import format_ts
from tests.helpers import forward_port, free_port, wait_until

pytest.importorskip("msgpack")
from mlwatch.client.fluent import FluentExporter


@dataclass
class Case:
    """An exporter, how many events of a model its destination holds, and one that is down."""

    exporter: Exporter
    stored: Callable[[str], int]
    down: Callable[[], Exporter]


def events(n: int, model: str) -> list[dict[str, Any]]:
    now = time.time_ns()
    return [
        {
            "event_id": event_id(now + i),
            "ts": format_ts(now + i),
            "model": model,
            "version": "1",
            "request_id": f"{model}-{i}",
            "latency_ms": 1.0 + i,
            "status": "ok",
            "features": {"x": float(i), "c": "a"},
            "prediction": i % 2,
        }
        for i in range(n)
    ]


def _http(live_sidecar: Any, tmp_path: Path) -> Case:
    url, sidecar = live_sidecar()
    return Case(
        HttpExporter(url, timeout_s=2.0),
        sidecar.store.count_events,
        lambda: HttpExporter(f"http://127.0.0.1:{free_port()}", timeout_s=0.5),
    )


def _fluent(forward_sidecar: Any, tmp_path: Path) -> Case:
    sc = forward_sidecar()
    return Case(
        FluentExporter("127.0.0.1", forward_port(sc), timeout_s=2.0),
        sc.store.count_events,
        lambda: FluentExporter("127.0.0.1", free_port(), timeout_s=0.5),
    )


def _local(tmp_path: Path) -> Case:
    exporter = LocalExporter(tmp_path / "local" / "store.db")
    blocked = tmp_path / "file-not-dir"
    blocked.write_text("a file where the data directory should be")
    return Case(
        exporter,
        lambda model: exporter._open().count_events(model),
        lambda: LocalExporter(blocked / "store.db"),
    )


def _memory(tmp_path: Path) -> Case:
    exporter = MemoryExporter()
    return Case(
        exporter,
        lambda model: sum(1 for e in exporter.records["events"] if e["model"] == model),
        lambda: MemoryExporter(Result.FAILED),
    )


@pytest.fixture(params=["http", "fluent", "local", "memory"])
def case(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Case]:
    if request.param == "http":
        made = _http(request.getfixturevalue("live_sidecar"), tmp_path)
    elif request.param == "fluent":
        made = _fluent(request.getfixturevalue("forward_sidecar"), tmp_path)
    elif request.param == "local":
        made = _local(tmp_path)
    else:
        made = _memory(tmp_path)
    yield made
    made.exporter.shutdown()


def test_it_has_a_name(case: Case) -> None:
    assert isinstance(case.exporter.name, str) and case.exporter.name


def test_events_are_delivered(case: Case) -> None:
    res = case.exporter.export(ExportBatch("events", events(25, "contract"), time.monotonic() + 10))
    assert res is Result.OK
    wait_until(lambda: case.stored("contract") == 25, timeout=15, what="25 events stored")


def test_feedback_and_registrations_are_delivered(case: Case) -> None:
    deadline = time.monotonic() + 10
    feedback = [{"model": "contract", "request_id": "contract-0", "label": 1}]
    registration = [{"model": "contract", "version": "1", "code_version": "abc", "params": {}}]
    assert case.exporter.export(ExportBatch("feedback", feedback, deadline)) is Result.OK
    assert case.exporter.export(ExportBatch("models", registration, deadline)) is Result.OK


def test_a_batch_that_only_carries_a_drop_report(case: Case) -> None:
    report = [
        {
            "model": "contract",
            "version": "1",
            "reason": "queue_full",
            "count": 3,
            "report_id": "r-contract",
        }
    ]
    res = case.exporter.export(ExportBatch("events", [], time.monotonic() + 10, dropped=report))
    sent, lost = settle(res, [])
    assert sent and lost == []


def test_force_flush_and_an_idempotent_shutdown(case: Case) -> None:
    assert case.exporter.force_flush(1.0) is True
    assert case.exporter.shutdown(1.0) is True
    assert case.exporter.shutdown(1.0) is True


def test_it_still_exports_after_a_fork_in_the_child(case: Case) -> None:
    """What the child does after ``os.fork()``: forget the parent's connections, export."""
    case.exporter.export(ExportBatch("events", events(1, "parent"), time.monotonic() + 10))
    case.exporter.after_fork()
    res = case.exporter.export(ExportBatch("events", events(3, "child"), time.monotonic() + 10))
    assert res is Result.OK
    wait_until(lambda: case.stored("child") == 3, timeout=15, what="the child's events")


def test_a_destination_that_is_down_never_raises_and_respects_the_deadline(case: Case) -> None:
    exporter = case.down()
    started = time.monotonic()
    res = exporter.export(ExportBatch("events", events(5, "down"), started + 1.5))
    elapsed = time.monotonic() - started
    _, lost = settle(res, events(5, "down"))
    assert sum(len(r) for _, r in lost) == 5
    assert all(fate in (Result.FAILED, Result.INTERRUPTED) for fate, _ in lost)
    assert elapsed < 6.0  # the deadline plus one attempt's timeout
    exporter.shutdown()


def test_an_interrupt_cuts_the_retries_short(case: Case) -> None:
    exporter = case.down()
    interrupt = threading.Event()
    threading.Timer(0.3, interrupt.set).start()
    started = time.monotonic()
    res = exporter.export(ExportBatch("events", events(2, "down"), started + 30, interrupt))
    assert time.monotonic() - started < 5.0
    assert isinstance(res, (Result, Partial)) and res is not Result.OK
    exporter.shutdown()


def test_the_suite_covers_every_exporter() -> None:
    """A new exporter in mlwatch.client must join this suite."""
    import importlib
    import inspect
    import pkgutil

    import mlwatch.client as pkg

    found = set()
    for info in pkgutil.iter_modules(pkg.__path__, "mlwatch.client."):
        module = importlib.import_module(info.name)
        for name, cls in inspect.getmembers(module, inspect.isclass):
            if (
                cls.__module__ == info.name
                and callable(getattr(cls, "export", None))
                and not getattr(cls, "_is_protocol", False)
            ):
                found.add(name)
    assert found == {"HttpExporter", "FluentExporter", "LocalExporter", "MemoryExporter"}
