"""The embedded store: idempotent writes, joins, windows, retention."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlwatch.store import EmbeddedStore, StoreError
from mlwatch.wire import validate_event, validate_feedback


def ev(i: int, ts: str, **kw: object) -> dict:
    return validate_event({"model": "m", "version": "1", "latency_ms": 1.0, "request_id": f"r{i}",
                           "ts": ts, "event_id": f"id-{i}", **kw})


def test_idempotent_inserts_and_counts(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "s.db")
    batch = [ev(i, "2026-01-01T00:00:00Z") for i in range(5)]
    assert store.insert_events(batch) == 5
    assert store.insert_events(batch) == 0
    assert store.count_events("m") == 5 and store.count_events("m", version="2") == 0
    store.close()
    reopened = EmbeddedStore(tmp_path / "s.db")
    assert reopened.count_events("m") == 5


def test_join_with_late_and_missing_labels(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "s.db")
    store.insert_events([ev(i, f"2026-01-01T00:00:0{i}Z", prediction=i) for i in range(4)])
    store.insert_feedback([validate_feedback({"model": "m", "request_id": "r1", "label": 0,
                                              "ts": "2026-01-02T00:00:00Z"})])
    # a later label for the same request replaces it; an older one does not
    store.insert_feedback([validate_feedback({"model": "m", "request_id": "r1", "label": 1,
                                              "ts": "2026-01-03T00:00:00Z"})])
    store.insert_feedback([validate_feedback({"model": "m", "request_id": "r1", "label": 9,
                                              "ts": "2026-01-01T12:00:00Z"})])
    store.insert_feedback([validate_feedback({"model": "m", "request_id": "r3", "label": 3})])
    pairs = [(e["request_id"], label) for e, label in store.joined("m")]
    assert pairs == [("r0", None), ("r1", 1), ("r2", None), ("r3", 3)]
    window = [e["request_id"] for e, _ in store.joined(
        "m", since_us=1767225601000000, until_us=1767225603000000)]
    assert window == ["r1", "r2"]
    assert store.count_feedback("m") == 2


def test_retention(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "s.db", retention_days=1)
    store.insert_events([ev(0, "2026-01-01T00:00:00Z"), ev(1, "2026-01-03T00:00:00Z")])
    assert store.purge(now_us=1767225600000000 + 3 * 86_400_000_000 - 1) == 1
    assert [e["request_id"] for e in store.events("m")] == ["r1"]


def test_unreadable_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match=r"s\.db"):
        EmbeddedStore(path)
