"""The embedded store: SQLite in WAL mode, one file, standard library only.

Why SQLite (and not DuckDB): it ships with Python, so the client's local mode and
the sidecar write the same file with no dependency; WAL mode lets the API and the
scheduler read while the sidecar's single writer appends; row inserts in large
transactions are fast (the sidecar's ingest benchmark sustains its target), and
window queries by model and time use a plain index. Analytical scans (drift over a
window) read only the columns they need.

Writes are idempotent: an event is keyed by its ``event_id`` and feedback by
``(model, request_id)`` (the newest label wins), so a replay from the spool after
a crash never duplicates anything.

Schema version 2 (table ``meta`` holds it; version 1 files gain the new tables):

- ``events``: one row per prediction; ``features``, ``prediction`` and ``labels`` as JSON.
- ``feedback``: ground truth by ``(model, request_id)``.
- ``models``: registrations ``(model, version, code_version, run_id)`` with ``params``.
- ``profiles``: summaries by ``(model, version, kind, start)``: the reference (kind
  ``reference``, ``tag`` = a fingerprint of its source) and per-slice profiles, as JSON
  (:mod:`mlwatch.stats`).
- ``results``: drift and KPI results by ``(model, version, kind, window start)``; a
  recomputed window (late labels) replaces its row.

Retention applies to events, feedback, slice profiles and results alike; reference
profiles stay.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mlwatch.wire import format_ts

try:  # faster when present (it is, with mlwatch[sidecar]); the client works without it
    import orjson

    def _dumps(value: Any) -> str:
        return orjson.dumps(value).decode()

    def _loads(text: str | bytes) -> Any:
        return orjson.loads(text)
except ImportError:  # pragma: no cover - depends on the install
    def _dumps(value: Any) -> str:
        return json.dumps(value, separators=(",", ":"), allow_nan=False)

    def _loads(text: str | bytes) -> Any:
        return json.loads(text)

SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)  # 1 -> 2 only added tables

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    ts TEXT NOT NULL,
    ts_us INTEGER NOT NULL,
    model TEXT NOT NULL,
    version TEXT NOT NULL,
    request_id TEXT,
    status TEXT NOT NULL,
    error TEXT,
    latency_ms REAL NOT NULL,
    features TEXT,
    prediction TEXT,
    code_version TEXT,
    run_id TEXT,
    labels TEXT,
    batch_size INTEGER
);
CREATE INDEX IF NOT EXISTS events_model_ts ON events (model, ts_us);
CREATE INDEX IF NOT EXISTS events_model_request ON events (model, request_id);
CREATE TABLE IF NOT EXISTS feedback (
    model TEXT NOT NULL,
    request_id TEXT NOT NULL,
    feedback_id TEXT NOT NULL,
    label TEXT,
    ts TEXT NOT NULL,
    ts_us INTEGER NOT NULL,
    PRIMARY KEY (model, request_id)
);
CREATE INDEX IF NOT EXISTS feedback_model_ts ON feedback (model, ts_us);
CREATE TABLE IF NOT EXISTS models (
    model TEXT NOT NULL,
    version TEXT NOT NULL,
    code_version TEXT NOT NULL DEFAULT '',
    run_id TEXT NOT NULL DEFAULT '',
    task TEXT,
    params TEXT NOT NULL DEFAULT '{}',
    first_seen_us INTEGER NOT NULL,
    last_seen_us INTEGER NOT NULL,
    PRIMARY KEY (model, version, code_version, run_id)
);
CREATE TABLE IF NOT EXISTS profiles (
    model TEXT NOT NULL,
    version TEXT NOT NULL,
    kind TEXT NOT NULL,
    start_us INTEGER NOT NULL,
    end_us INTEGER NOT NULL,
    updated_us INTEGER NOT NULL,
    tag TEXT NOT NULL DEFAULT '',
    body TEXT NOT NULL,
    PRIMARY KEY (model, version, kind, start_us)
);
CREATE TABLE IF NOT EXISTS results (
    model TEXT NOT NULL,
    version TEXT NOT NULL,
    kind TEXT NOT NULL,
    start_us INTEGER NOT NULL,
    end_us INTEGER NOT NULL,
    computed_us INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (model, version, kind, start_us)
);
CREATE INDEX IF NOT EXISTS results_latest ON results (model, version, kind, computed_us);
"""

EVENT_COLUMNS = ("event_id", "ts", "ts_us", "model", "version", "request_id", "status", "error",
                 "latency_ms", "features", "prediction", "code_version", "run_id", "labels",
                 "batch_size")
FEEDBACK_COLUMNS = ("model", "request_id", "feedback_id", "label", "ts", "ts_us")


def _from_json_rows(columns: tuple[str, ...]) -> str:
    # One statement unpacks a whole JSON array of rows inside SQLite: Python makes a
    # single call (one GIL hand-off) instead of one per row, and the parsing and
    # B-tree work run in C without the GIL. json_extract works on SQLite >= 3.9.
    picks = ", ".join(f"json_extract(value, '$[{i}]')" for i in range(len(columns)))
    return f"SELECT {picks} FROM json_each(?) WHERE true"


_INSERT_EVENTS = (f"INSERT OR IGNORE INTO events ({', '.join(EVENT_COLUMNS)}) "
                  + _from_json_rows(EVENT_COLUMNS))
_INSERT_FEEDBACK = (
    f"INSERT INTO feedback ({', '.join(FEEDBACK_COLUMNS)}) {_from_json_rows(FEEDBACK_COLUMNS)} "
    "ON CONFLICT (model, request_id) DO UPDATE SET "
    "feedback_id = excluded.feedback_id, label = excluded.label, ts = excluded.ts, "
    "ts_us = excluded.ts_us WHERE excluded.ts_us >= feedback.ts_us")
_JSON_COLUMNS = ("features", "prediction", "labels")


def event_row(e: dict[str, Any]) -> tuple[Any, ...]:
    """A validated event as a row in ``EVENT_COLUMNS`` order, JSON columns as text.

    The sidecar spools events in this form, so the store's consumer inserts them
    without rebuilding nested objects.
    """
    features, prediction, labels = e.get("features"), e.get("prediction"), e.get("labels")
    return (e["event_id"], e["ts"], e["ts_us"], e["model"], e["version"], e.get("request_id"),
            e["status"], e.get("error"), e["latency_ms"],
            None if features is None else _dumps(features),
            None if prediction is None else _dumps(prediction),
            e.get("code_version"), e.get("run_id"),
            None if labels is None else _dumps(labels), e.get("batch_size"))


def feedback_row(f: dict[str, Any]) -> tuple[Any, ...]:
    """A validated feedback record as a row in ``FEEDBACK_COLUMNS`` order, label as JSON."""
    return (f["model"], f["request_id"], f["feedback_id"], _dumps(f["label"]), f["ts"], f["ts_us"])


def _window(prefix: str, model: str, since_us: int | None, until_us: int | None,
            version: str | None) -> tuple[str, list[Any]]:
    """WHERE clause and arguments of a model's window: [since, until), optionally one version."""
    clauses: list[str] = [f"{prefix}model = ?"]
    args: list[Any] = [model]
    for clause, value in (("ts_us >= ?", since_us), ("ts_us < ?", until_us),
                          ("version = ?", version)):
        if value is not None:
            clauses.append(prefix + clause)
            args.append(value)
    return " AND ".join(clauses), args


def row_event(row: Sequence[Any]) -> dict[str, Any]:
    """The inverse of :func:`event_row`: a row back to a wire-format event."""
    item = dict(zip(EVENT_COLUMNS, row, strict=True))
    for key in _JSON_COLUMNS:
        if item[key] is not None:
            item[key] = _loads(item[key])
    return item


def _iso(us: int) -> str:
    return format_ts(us * 1000)


class StoreError(Exception):
    """The store file cannot be opened or has an unknown schema."""


class EmbeddedStore:
    """Events, feedback and model registrations in one SQLite file.

    One connection per thread (SQLite connections are not shared across threads);
    writes are serialised by a lock so that concurrent writers never see
    ``database is locked``. ``synchronous=FULL`` because the spool deletes what the
    store has committed: a committed transaction must survive power loss too.

    >>> import tempfile, os
    >>> store = EmbeddedStore(os.path.join(tempfile.mkdtemp(), "store.db"))
    >>> from mlwatch.wire import validate_event
    >>> ev = validate_event({"model": "m", "latency_ms": 1.0, "request_id": "r1"})
    >>> store.insert_events([ev, ev])
    1
    >>> store.count_events("m")
    1
    >>> store.close()
    """

    def __init__(self, path: str | Path, *, retention_days: float = 30.0) -> None:
        self.path = Path(path)
        self.retention_days = retention_days
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._closed = False
        try:
            conn = self._conn()
            with self._write_lock, conn:
                conn.executescript(_SCHEMA)
                row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
                if row is None:
                    conn.execute("INSERT INTO meta VALUES ('schema_version', ?)",
                                 (str(SCHEMA_VERSION),))
                elif int(row[0]) not in READABLE_VERSIONS:
                    raise StoreError(f"{self.path}: schema version {row[0]}, this mlwatch "
                                     f"reads {SCHEMA_VERSION}")
                elif int(row[0]) != SCHEMA_VERSION:
                    conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'",
                                 (str(SCHEMA_VERSION),))
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: {exc}") from exc

    # -- connections -------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                raise StoreError(f"{self.path}: store is closed")
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None,
                                   check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
            with self._connections_lock:
                self._connections.append(conn)
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        with self._write_lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def close(self) -> None:
        """Close every connection this store opened (idempotent).

        Callers stop the threads that use the store first; the write lock at least keeps
        a write in progress from losing its connection mid-statement.
        """
        self._closed = True
        with self._write_lock, self._connections_lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()

    # -- writes ------------------------------------------------------------
    def insert_events(self, events: Iterable[dict[str, Any]]) -> int:
        """Insert validated events (``wire.validate_event``); duplicates are ignored.

        Returns the number of new rows.
        """
        return self.insert_event_rows(_dumps([event_row(e) for e in events]))

    def insert_event_rows(self, rows_json: str) -> int:
        """Insert a JSON array of :func:`event_row` rows; duplicates are ignored."""
        return self._insert_json(_INSERT_EVENTS, rows_json)

    def insert_feedback(self, feedback: Iterable[dict[str, Any]]) -> int:
        """Upsert validated feedback; for one request the newest label wins. Returns rows changed."""
        return self.insert_feedback_rows(_dumps([feedback_row(f) for f in feedback]))

    def insert_feedback_rows(self, rows_json: str) -> int:
        """Upsert a JSON array of :func:`feedback_row` rows."""
        return self._insert_json(_INSERT_FEEDBACK, rows_json)

    def _insert_json(self, sql: str, rows_json: str) -> int:
        if rows_json == "[]":
            return 0
        conn = self._conn()
        with self._write_lock:  # one statement is one transaction: no BEGIN/COMMIT calls
            before = conn.total_changes
            conn.execute(sql, (rows_json,))
            return conn.total_changes - before

    def register_model(self, reg: dict[str, Any], *, now_us: int | None = None) -> None:
        """Record a model version's identity and experiment parameters (idempotent)."""
        now = now_us if now_us is not None else time.time_ns() // 1000
        with self._write() as conn:
            conn.execute(
                "INSERT INTO models (model, version, code_version, run_id, task, params, "
                "first_seen_us, last_seen_us) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (model, version, code_version, run_id) DO UPDATE SET "
                "task = coalesce(excluded.task, models.task), params = excluded.params, "
                "last_seen_us = excluded.last_seen_us",
                (reg["model"], reg["version"], reg.get("code_version") or "",
                 reg.get("run_id") or "", reg.get("task"), _dumps(reg.get("params") or {}),
                 now, now))

    def purge(self, *, now_us: int | None = None) -> int:
        """Delete events, feedback, slice profiles and results older than the retention.
        Returns rows deleted."""
        if not self.retention_days:
            return 0
        now = now_us if now_us is not None else time.time_ns() // 1000
        cutoff = now - int(self.retention_days * 86_400 * 1_000_000)
        with self._write() as conn:
            before = conn.total_changes
            conn.execute("DELETE FROM events WHERE ts_us < ?", (cutoff,))
            conn.execute("DELETE FROM feedback WHERE ts_us < ?", (cutoff,))
            conn.execute("DELETE FROM profiles WHERE kind != 'reference' AND end_us < ?",
                         (cutoff,))
            conn.execute("DELETE FROM results WHERE end_us < ?", (cutoff,))
            return conn.total_changes - before

    # -- reads -------------------------------------------------------------
    def count_events(self, model: str, *, version: str | None = None) -> int:
        sql, args = "SELECT count(*) FROM events WHERE model = ?", [model]
        if version is not None:
            sql += " AND version = ?"
            args.append(version)
        return int(self._conn().execute(sql, args).fetchone()[0])

    def count_feedback(self, model: str) -> int:
        return int(self._conn().execute("SELECT count(*) FROM feedback WHERE model = ?",
                                        (model,)).fetchone()[0])

    def models(self) -> list[str]:
        """Every model name with events, feedback or a registration."""
        rows = self._conn().execute(
            "SELECT model FROM models UNION SELECT DISTINCT model FROM events "
            "UNION SELECT DISTINCT model FROM feedback ORDER BY 1").fetchall()
        return [r[0] for r in rows]

    def registrations(self, model: str) -> list[dict[str, Any]]:
        cur = self._conn().execute(
            "SELECT model, version, code_version, run_id, task, params, first_seen_us, "
            "last_seen_us FROM models WHERE model = ? ORDER BY last_seen_us DESC", (model,))
        out = []
        for row in cur.fetchall():
            item = dict(zip([c[0] for c in cur.description], row, strict=True))
            item["params"] = _loads(item["params"])
            out.append(item)
        return out

    def events(self, model: str, *, since_us: int | None = None, until_us: int | None = None,
               version: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Stored events of one model, newest first, in the wire format."""
        where, args = _window("", model, since_us, until_us, version)
        sql = f"SELECT {', '.join(EVENT_COLUMNS)} FROM events WHERE {where}"
        sql += " ORDER BY ts_us DESC, seq DESC LIMIT ?"
        args.append(limit)
        out = []
        for row in self._conn().execute(sql, args):
            event = row_event(row)
            del event["ts_us"]  # internal: the wire format carries ts
            out.append(event)
        return out

    def joined(self, model: str, *, since_us: int | None = None, until_us: int | None = None,
               version: str | None = None) -> Iterator[tuple[dict[str, Any], Any]]:
        """Events of a window joined to their ground truth by request_id (label or None).

        Windows are by prediction time; a label that arrives late still joins its event.
        """
        where, args = _window("e.", model, since_us, until_us, version)
        sql = (f"SELECT {', '.join('e.' + c for c in EVENT_COLUMNS)}, f.label FROM events e "
               "LEFT JOIN feedback f ON f.model = e.model AND f.request_id = e.request_id "
               f"WHERE {where} ORDER BY e.ts_us, e.seq")
        for row in self._conn().execute(sql, args):
            label = row[-1]
            yield row_event(row[:-1]), (None if label is None else _loads(label))

    # -- profiles and results -------------------------------------------------
    def put_profile(self, model: str, version: str, kind: str, start_us: int, end_us: int,
                    body: str, *, tag: str = "", now_us: int | None = None) -> None:
        """Store (or replace) one profile; ``body`` is its JSON, ``tag`` what it was built
        from (a reference's fingerprint)."""
        now_us = now_us if now_us is not None else int(time.time() * 1_000_000)
        with self._write() as conn:
            conn.execute("INSERT OR REPLACE INTO profiles (model, version, kind, start_us, "
                         "end_us, updated_us, tag, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                         (model, version, kind, start_us, end_us, now_us, tag, body))

    def profile_tag(self, model: str, version: str, kind: str) -> str | None:
        """The tag of the newest profile of a kind (None when there is none)."""
        row = self._conn().execute(
            "SELECT tag FROM profiles WHERE model = ? AND version = ? AND kind = ? "
            "ORDER BY start_us DESC LIMIT 1", (model, version, kind)).fetchone()
        return None if row is None else str(row[0])

    def profiles(self, model: str, version: str, kind: str, *, since_us: int | None = None,
                 until_us: int | None = None) -> list[tuple[int, int, str]]:
        """``(start_us, end_us, body)`` of the profiles of a kind whose window starts in
        ``[since_us, until_us)``, oldest first."""
        sql = ("SELECT start_us, end_us, body FROM profiles WHERE model = ? AND version = ? "
               "AND kind = ?")
        args: list[Any] = [model, version, kind]
        if since_us is not None:
            sql += " AND start_us >= ?"
            args.append(since_us)
        if until_us is not None:
            sql += " AND start_us < ?"
            args.append(until_us)
        return [(int(a), int(b), str(c))
                for a, b, c in self._conn().execute(sql + " ORDER BY start_us", args)]

    def put_result(self, model: str, version: str, kind: str, start_us: int, end_us: int,
                   body: dict[str, Any], *, now_us: int | None = None) -> None:
        """Record a drift or KPI result of a window; a recomputed window replaces its row."""
        now_us = now_us if now_us is not None else int(time.time() * 1_000_000)
        with self._write() as conn:
            conn.execute("INSERT OR REPLACE INTO results (model, version, kind, start_us, "
                         "end_us, computed_us, body) VALUES (?, ?, ?, ?, ?, ?, ?)",
                         (model, version, kind, start_us, end_us, now_us, _dumps(body)))

    def latest_results(self, model: str) -> dict[str, dict[str, Any]]:
        """The newest result of each kind (and version) of a model: the window computed
        last, and among those the latest window. A KPI window that could not report (too
        few labels: its ``reason`` is set) is passed over, as the gauges pass it over."""
        sql = ("SELECT r.version, r.kind, r.start_us, r.end_us, r.computed_us, r.body "
               "FROM (SELECT version, kind, MAX(computed_us) AS c FROM results "
               "WHERE model = ? AND (kind != 'kpi' OR json_extract(body, '$.reason') IS NULL) "
               "GROUP BY version, kind) m JOIN results r ON r.model = ? "
               "AND r.version = m.version AND r.kind = m.kind AND r.computed_us = m.c "
               "AND (r.kind != 'kpi' OR json_extract(r.body, '$.reason') IS NULL) "
               "ORDER BY r.kind, r.version, r.start_us")
        out: dict[str, dict[str, Any]] = {}
        rows = self._conn().execute(sql, (model, model))
        for version, kind, start_us, end_us, computed_us, body in rows:
            out.setdefault(kind, {})[version] = {
                "window": [_iso(start_us), _iso(end_us)], "computed": _iso(computed_us),
                **_loads(body)}
        return out

    def joined_predictions(self, model: str, *, since_us: int | None = None,
                           until_us: int | None = None, version: str | None = None
                           ) -> Iterator[tuple[dict[str, Any], Any]]:
        """What KPIs need of :meth:`joined`: ``ts_us``, ``status``, ``prediction`` and the
        label — without decoding features, so a window of millions stays cheap."""
        where, args = _window("e.", model, since_us, until_us, version)
        sql = ("SELECT e.ts_us, e.status, e.prediction, f.label FROM events e LEFT JOIN "
               "feedback f ON f.model = e.model AND f.request_id = e.request_id "
               f"WHERE {where}")
        for ts_us, status, prediction, label in self._conn().execute(sql, args):
            yield ({"ts_us": ts_us, "status": status,
                    "prediction": None if prediction is None else _loads(prediction)},
                   None if label is None else _loads(label))

    def versions(self, model: str, *, since_us: int | None = None,
                 until_us: int | None = None) -> list[str]:
        """Versions of a model with events in a window."""
        where, args = _window("", model, since_us, until_us, None)
        sql = f"SELECT DISTINCT version FROM events WHERE {where} ORDER BY version"
        return [str(r[0]) for r in self._conn().execute(sql, args)]

    def count_with_features(self, model: str, *, since_us: int | None = None,
                            until_us: int | None = None, version: str | None = None) -> int:
        """Events of a window that carry features (what a window profile summarises)."""
        where, args = _window("", model, since_us, until_us, version)
        sql = f"SELECT COUNT(*) FROM events WHERE {where} AND features IS NOT NULL"
        return int(self._conn().execute(sql, args).fetchone()[0])

    def feature_columns(self, model: str, names: Sequence[str], *, since_us: int | None = None,
                        until_us: int | None = None, version: str | None = None
                        ) -> dict[str, list[Any]]:
        """Feature values of a window as columns (a missing feature is None). SQLite
        extracts them in C, so a window of a million events does not build a million
        Python dicts."""
        where, args = _window("", model, since_us, until_us, version)
        columns: dict[str, list[Any]] = {n: [] for n in names}
        if not names:
            return columns
        # JSON paths as parameters; a name with a double quote has no SQLite path (None)
        paths = ['$."' + n + '"' if '"' not in n else "$.__unreachable__" for n in names]
        picks = ", ".join("json_extract(features, ?)" for _ in names)
        rows = self._conn().execute(
            f"SELECT {picks} FROM events WHERE {where} AND features IS NOT NULL", [*paths, *args])
        lists = [columns[n] for n in names]
        for row in rows:
            for target, value in zip(lists, row, strict=True):
                target.append(value)
        return columns
