"""What a store knows about its models: names by index skip, summaries, the message for an
unknown name, and a store opened read-only that creates nothing."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from mlwatch.store import EmbeddedStore, StoreError
from mlwatch.store.catalog import RECENT_EVENTS, unknown_model
from mlwatch.store.readonly import ReadOnlyStore
from mlwatch.wire import validate_event, validate_feedback, validate_registration


def ev(i: int, model: str = "iris", version: str = "1", **kw: Any) -> dict[str, Any]:
    ts = f"2026-01-01T00:{i // 60 % 60:02d}:{i % 60:02d}Z"
    return validate_event(
        {"model": model, "version": version, "latency_ms": 1.0, "request_id": f"r{i}", "ts": ts}
        | kw
    )


@pytest.fixture
def store(tmp_path: Path) -> Any:
    s = EmbeddedStore(tmp_path / "store.db", retention_days=0)
    s.insert_events([ev(0), ev(1, version="2"), ev(2, model="a.b:c-d")])
    s.insert_feedback([validate_feedback({"model": "churn", "request_id": "r1", "label": 1})])
    s.register_model(validate_registration({"model": "zeta", "version": "9"}))
    yield s
    s.close()


def test_models_are_the_names_with_events_feedback_or_a_registration(store: Any) -> None:
    assert store.models() == ["a.b:c-d", "churn", "iris", "zeta"]
    assert [store.has_model(m) for m in ("iris", "churn", "zeta", "iri", "irisx")] == [
        True,
        True,
        True,
        False,
        False,
    ]
    assert store.known_models(["configured", "iris"]) == [
        "a.b:c-d",
        "churn",
        "configured",
        "iris",
        "zeta",
    ]


def test_model_names_skip_through_the_index(store: Any) -> None:
    """One index seek per model, never a scan of the events (the check runs on every
    status and events request)."""
    from mlwatch.store.catalog import _MODEL_NAMES

    plan = " ".join(
        str(row[3]) for row in store._conn().execute("EXPLAIN QUERY PLAN " + _MODEL_NAMES)
    )
    assert "SCAN events " not in plan + " " and "SCAN feedback " not in plan + " ", plan
    assert "SEARCH events USING COVERING INDEX" in plan


def test_a_summary_has_counts_last_event_and_versions(store: Any) -> None:
    store.register_model(validate_registration({"model": "iris", "version": "3"}))
    assert store.model_summary("iris") == {
        "model": "iris",
        "events_stored": 2,
        "feedback_stored": 0,
        "last_event": "2026-01-01T00:00:01.000000Z",
        "versions": ["1", "2", "3"],
    }
    assert store.model_summary("nothing") == {
        "model": "nothing",
        "events_stored": 0,
        "feedback_stored": 0,
        "last_event": None,
        "versions": [],
    }


def test_versions_come_from_the_newest_events_only(tmp_path: Path) -> None:
    s = EmbeddedStore(tmp_path / "store.db", retention_days=0)
    s.insert_events([ev(0, version="old")])
    s.insert_events([ev(i, version="new") for i in range(1, RECENT_EVENTS + 1)])
    summary = s.model_summary("iris")
    assert summary["versions"] == ["new"] and summary["events_stored"] == RECENT_EVENTS + 1
    s.close()


def test_the_model_list_adds_configured_and_other_names(store: Any) -> None:
    listed = store.model_list(frozenset({"churn", "fresh"}), also={"inflight"})
    assert [(m["model"], m["configured"]) for m in listed] == [
        ("a.b:c-d", False),
        ("churn", True),
        ("fresh", True),
        ("inflight", False),
        ("iris", False),
        ("zeta", False),
    ]
    churn = next(m for m in listed if m["model"] == "churn")
    assert churn["feedback_stored"] == 1 and churn["events_stored"] == 0


def test_model_status_is_what_the_store_says(store: Any) -> None:
    status = store.model_status("iris")
    assert status["events_stored"] == 2 and status["feedback_stored"] == 0
    assert status["versions"] == [] and "sinks" not in status


def test_unknown_model_suggests_close_names_and_lists_known_ones() -> None:
    message = unknown_model("irsi", ["churn", "iris"])
    assert message.startswith("unknown model 'irsi' (no events, feedback or registration")
    assert "Did you mean 'iris'?" in message and "Known models: churn, iris." in message
    many = unknown_model("m", [f"m{i}" for i in range(9)])
    assert "Did you mean 'm8', 'm7' or 'm6'?" in many
    assert "Known models: m0, m1, m2, m3, m4 (and 4 more)." in many
    far = unknown_model("zzz", ["churn", "iris"])
    assert "Did you mean" not in far and "Known models: churn, iris." in far
    assert unknown_model("x", []).endswith("No model is known yet.")


def test_read_only_store_creates_nothing_where_there_is_no_store(tmp_path: Path) -> None:
    where = tmp_path / "absent" / "store.db"
    with pytest.raises(StoreError, match="no mlwatch store at"):
        ReadOnlyStore(where)
    assert not (tmp_path / "absent").exists()


def test_read_only_store_reads_a_closed_store_without_leaving_files(store: Any) -> None:
    path = store.path
    store.close()
    reader = ReadOnlyStore(path)
    assert reader.models() == ["a.b:c-d", "churn", "iris", "zeta"]
    assert reader.count_events("iris") == 2
    with pytest.raises(sqlite3.Error):
        reader.register_model(validate_registration({"model": "new", "version": "1"}))
    reader.close()
    assert sorted(p.name for p in path.parent.iterdir()) == ["store.db"]


def test_read_only_store_sees_what_a_running_writer_committed(store: Any) -> None:
    reader = ReadOnlyStore(store.path)  # the writer is open: the store has a -wal
    store.insert_events([ev(5, model="late")])
    assert reader.has_model("late") and reader.count_events("late") == 1
    reader.close()


@pytest.mark.parametrize(
    ("content", "needle"),
    [(b"not a database at all" * 100, "not an mlwatch store"), (b"", "not an mlwatch store")],
)
def test_read_only_store_refuses_other_files(tmp_path: Path, content: bytes, needle: str) -> None:
    path = tmp_path / "store.db"
    path.write_bytes(content)
    with pytest.raises(StoreError, match=needle):
        ReadOnlyStore(path)


def test_read_only_store_refuses_an_unknown_schema_version(store: Any) -> None:
    with store._write() as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match="schema version 99"):
        ReadOnlyStore(store.path)
