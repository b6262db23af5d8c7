"""The embedded store: idempotent writes, joins, windows, retention."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mlwatch.store import EmbeddedStore, StoreError
from mlwatch.wire import validate_event, validate_feedback


def ev(i: int, ts: str, **kw: object) -> dict:
    return validate_event(
        {
            "model": "m",
            "version": "1",
            "latency_ms": 1.0,
            "request_id": f"r{i}",
            "ts": ts,
            "event_id": f"id-{i}",
            **kw,
        }
    )


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
    store.insert_feedback(
        [
            validate_feedback(
                {"model": "m", "request_id": "r1", "label": 0, "ts": "2026-01-02T00:00:00Z"}
            )
        ]
    )
    # a later label for the same request replaces it; an older one does not
    store.insert_feedback(
        [
            validate_feedback(
                {"model": "m", "request_id": "r1", "label": 1, "ts": "2026-01-03T00:00:00Z"}
            )
        ]
    )
    store.insert_feedback(
        [
            validate_feedback(
                {"model": "m", "request_id": "r1", "label": 9, "ts": "2026-01-01T12:00:00Z"}
            )
        ]
    )
    store.insert_feedback([validate_feedback({"model": "m", "request_id": "r3", "label": 3})])
    pairs = [(e["request_id"], label) for e, label in store.joined("m")]
    assert pairs == [("r0", None), ("r1", 1), ("r2", None), ("r3", 3)]
    window = [
        e["request_id"]
        for e, _ in store.joined("m", since_us=1767225601000000, until_us=1767225603000000)
    ]
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


def test_profiles_and_results(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "s.db")
    store.put_profile("m", "1", "reference", 0, 10, '{"v": 1}')
    store.put_profile("m", "1", "reference", 0, 10, '{"v": 2}')  # replaced, not added
    store.put_profile("m", "1", "window", 3_600_000_000, 7_200_000_000, '{"w": 1}')
    assert store.profiles("m", "1", "reference") == [(0, 10, '{"v": 2}')]
    assert store.profiles("m", "1", "window", since_us=3_600_000_000) == [
        (3_600_000_000, 7_200_000_000, '{"w": 1}')
    ]
    assert store.profiles("m", "1", "window", until_us=3_600_000_000) == []
    store.put_result("m", "1", "drift", 0, 10, {"drift_share": 0.1}, now_us=100)
    store.put_result("m", "1", "drift", 10, 20, {"drift_share": 0.5}, now_us=200)
    store.put_result("m", "2", "kpi", 0, 10, {"accuracy": 0.9}, now_us=300)
    latest = store.latest_results("m")
    assert latest["drift"]["1"]["drift_share"] == 0.5
    assert latest["drift"]["1"]["window"] == [
        "1970-01-01T00:00:00.000010Z",
        "1970-01-01T00:00:00.000020Z",
    ]
    assert latest["kpi"]["2"]["accuracy"] == 0.9
    assert store.latest_results("other") == {}


def test_feature_columns_of_a_window(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "s.db")
    store.insert_events(
        [
            ev(1, "2026-01-01T00:00:00Z", features={"x": 1.5, "c": "a"}),
            ev(2, "2026-01-01T00:00:01Z", features={"x": None}),
            ev(3, "2026-01-01T00:00:02Z"),  # no features (sampled out)
            ev(4, "2026-01-01T01:00:00Z", features={"x": 4, "c": "b"}),
        ]
    )
    cols = store.feature_columns("m", ["x", "c", 'we"ird'], until_us=1767229200000000)
    assert cols == {"x": [1.5, None], "c": ["a", None], 'we"ird': [None, None]}
    assert store.feature_columns("m", ["x"])["x"] == [1.5, None, 4]


def test_an_older_store_is_upgraded_in_place(tmp_path: Path) -> None:
    import sqlite3

    store = EmbeddedStore(tmp_path / "s.db")
    store.insert_events([ev(1, "2026-01-01T00:00:00Z")])
    store.close()
    with sqlite3.connect(tmp_path / "s.db") as conn:
        conn.execute("DROP TABLE profiles")
        conn.execute("DROP TABLE results")
        for table in ("triggers", "trigger_attempts", "causes"):  # version 3's
            conn.execute(f"DROP TABLE {table}")
        conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    upgraded = EmbeddedStore(tmp_path / "s.db")
    assert upgraded.count_events("m") == 1
    upgraded.put_result("m", "1", "drift", 0, 1, {})
    assert upgraded.has_triggers() and upgraded.triggers("m") == []
    with sqlite3.connect(tmp_path / "s.db") as conn:
        assert conn.execute("SELECT value FROM meta").fetchone() == ("4",)


def test_results_are_replaced_per_window_and_purged_with_slices(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "s.db", retention_days=1)
    day = 86_400_000_000
    now = 10 * day
    store.put_result("m", "1", "kpi", 0, day, {"accuracy": 0.5}, now_us=now - day)
    store.put_result("m", "1", "kpi", 0, day, {"accuracy": 0.7}, now_us=now)  # late labels
    store.put_result("m", "1", "kpi", now - day, now, {"accuracy": 0.9}, now_us=now - 5)
    assert store.latest_results("m")["kpi"]["1"]["accuracy"] == 0.7  # computed last
    store.put_result("m", "1", "kpi", day, 2 * day, {"reason": "too few labels"}, now_us=now)
    assert store.latest_results("m")["kpi"]["1"]["accuracy"] == 0.7  # not the empty one
    store.put_profile("m", "*", "reference", 0, 0, "{}", tag="abc")
    store.put_profile("m", "1", "slice", 0, 60_000_000, "{}")
    store.put_profile("m", "1", "slice", now - 60_000_000, now, "{}")
    assert store.profile_tag("m", "*", "reference") == "abc"
    assert store.profile_tag("m", "*", "other") is None
    store.purge(now_us=now)
    assert store.profiles("m", "*", "reference") == [(0, 0, "{}")]  # references stay
    assert [p[0] for p in store.profiles("m", "1", "slice")] == [now - 60_000_000]
    assert store.latest_results("m")["kpi"]["1"]["accuracy"] == 0.9


def test_an_early_version_3_causes_table_gains_its_instances_column(tmp_path: Path) -> None:
    import sqlite3

    EmbeddedStore(tmp_path / "s.db").close()
    with sqlite3.connect(tmp_path / "s.db") as conn:
        conn.execute("DROP TABLE causes")
        conn.execute(
            "CREATE TABLE causes (model TEXT NOT NULL, cause TEXT NOT NULL, active INTEGER "
            "NOT NULL, changed_us INTEGER NOT NULL, last_trigger_us INTEGER, suppressed "
            "INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (model, cause))"
        )
        conn.execute("INSERT INTO causes VALUES ('m', 'drift', 1, 5, 5, 0)")
    store = EmbeddedStore(tmp_path / "s.db")
    assert store.clear_cause("m", "drift", None, 10) is True
    assert store.clear_cause("m", "drift", None, 11) is False


#: The events table of schema version 3, as files written before environments hold it.
_V3_EVENTS = (
    "CREATE TABLE events (seq INTEGER PRIMARY KEY, event_id TEXT NOT NULL UNIQUE, "
    "ts TEXT NOT NULL, ts_us INTEGER NOT NULL, model TEXT NOT NULL, version TEXT NOT NULL, "
    "request_id TEXT, status TEXT NOT NULL, error TEXT, latency_ms REAL NOT NULL, "
    "features TEXT, prediction TEXT, code_version TEXT, run_id TEXT, labels TEXT, "
    "batch_size INTEGER)"
)


def _version_3_file(path: Path) -> None:
    """A store as version 3 wrote it, with one event."""
    import sqlite3

    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        conn.execute("INSERT INTO meta VALUES ('schema_version', '3')")
        conn.execute(_V3_EVENTS)
        conn.execute(
            "INSERT INTO events (event_id, ts, ts_us, model, version, status, latency_ms) "
            "VALUES ('old-1', '2026-01-01T00:00:00.000000Z', 1767225600000000, 'm', '1', "
            "'ok', 1.0)"
        )
    conn.close()


def test_a_version_3_store_gains_environments_and_keeps_its_rows(tmp_path: Path) -> None:
    import sqlite3

    _version_3_file(tmp_path / "s.db")
    store = EmbeddedStore(tmp_path / "s.db")
    try:
        (old,) = store.events("m")
        assert (old["event_id"], old["environment"]) == ("old-1", "default")
        store.insert_events([ev(2, "2026-01-02T00:00:00Z", environment="qa")])
        assert store.count_events("m") == 2
        assert [e["event_id"] for e in store.events("m", environment="default")] == ["old-1"]
        assert [e["event_id"] for e in store.events("m", environment="qa")] == ["id-2"]
        assert store.count_events("m", environment="qa") == 1
    finally:
        store.close()
    with sqlite3.connect(tmp_path / "s.db") as conn:
        assert conn.execute("SELECT value FROM meta").fetchone() == ("4",)
    conn.close()


def test_rows_spooled_before_environments_are_stored_as_the_default(tmp_path: Path) -> None:
    from mlwatch.store.rows import dumps, event_row

    store = EmbeddedStore(tmp_path / "s.db")
    try:
        row = event_row(ev(1, "2026-01-01T00:00:00Z", environment="prod"))
        assert row[-1] == "prod"
        assert store.insert_event_rows(dumps([row[:-1]])) == 1  # 15 columns, as spooled before
        assert store.events("m")[0]["environment"] == "default"
    finally:
        store.close()


def test_a_version_3_store_reads_as_the_default_environment_read_only(tmp_path: Path) -> None:
    import sqlite3

    from mlwatch.store.readonly import ReadOnlyStore

    store = EmbeddedStore(tmp_path / "s.db")
    store.insert_events([ev(1, "2026-01-01T00:00:00Z")])
    store.close()
    with sqlite3.connect(tmp_path / "s.db") as conn:  # as a sidecar not yet upgraded has it
        conn.execute("ALTER TABLE events DROP COLUMN environment")
        conn.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
    conn.close()
    seen = ReadOnlyStore(tmp_path / "s.db")
    try:
        assert [e["environment"] for e in seen.events("m")] == ["default"]
        assert seen.count_events("m", environment="default") == 1
        assert seen.count_events("m", environment="prod") == 0
    finally:
        seen.close()
    with sqlite3.connect(tmp_path / "s.db") as conn:  # and the file is unchanged
        assert "environment" not in {r[1] for r in conn.execute("PRAGMA table_info(events)")}
    conn.close()


def test_two_openers_of_a_version_3_file_do_not_race_on_its_migration(tmp_path: Path) -> None:
    """A sidecar and a standalone scheduler started together on an old file: the other
    one migrates the file between this one's look at the columns and its ALTER TABLE.
    This one must then wait for it, or find the column added; never fail on it
    ("duplicate column name: environment", seen with six processes opening one file)."""
    import sqlite3

    from mlwatch.store import schema

    path = tmp_path / "s.db"
    _version_3_file(path)
    with sqlite3.connect(path) as wal:
        wal.execute("PRAGMA journal_mode=WAL")
    wal.close()
    others: list[str] = []

    class Interleaved(sqlite3.Connection):
        def execute(self, sql: str, *args: Any) -> Any:
            if not sql.startswith("PRAGMA table_info(events)") or others:
                return super().execute(sql, *args)
            rows = super().execute(sql, *args).fetchall()  # what this one saw
            other = sqlite3.connect(path, timeout=0.2, isolation_level=None)
            try:  # the other process, between this one's check and its ALTER
                schema.create(other, path)
                others.append("migrated")
            except sqlite3.OperationalError as exc:
                others.append(str(exc))  # kept out: this one holds the write lock
            finally:
                other.close()
            return iter(rows)

    conn = sqlite3.connect(path, isolation_level=None, factory=Interleaved)
    try:
        schema.create(conn, path)
        columns = [row[1] for row in conn.execute("PRAGMA table_info(events)")]
    finally:
        conn.close()
    assert columns.count("environment") == 1
    assert others in (["migrated"], ["database is locked"])
    store = EmbeddedStore(path)
    try:
        assert [e["environment"] for e in store.events("m")] == ["default"]
    finally:
        store.close()
