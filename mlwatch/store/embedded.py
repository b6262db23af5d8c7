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

The tables are in :mod:`mlwatch.store.schema`, the row form in :mod:`mlwatch.store.rows`.
Retention applies to events, feedback, slice profiles and results alike; reference
profiles stay.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mlwatch.errors import StoreError
from mlwatch.store import schema
from mlwatch.store.rows import EVENT_COLUMNS, dumps, event_row, feedback_row, loads, row_event
from mlwatch.times import format_us


def _window(
    prefix: str, model: str, since_us: int | None, until_us: int | None, version: str | None
) -> tuple[str, list[Any]]:
    """WHERE clause and arguments of a model's window: [since, until), optionally one version."""
    clauses: list[str] = [f"{prefix}model = ?"]
    args: list[Any] = [model]
    for clause, value in (
        ("ts_us >= ?", since_us),
        ("ts_us < ?", until_us),
        ("version = ?", version),
    ):
        if value is not None:
            clauses.append(prefix + clause)
            args.append(value)
    return " AND ".join(clauses), args


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
            with self._write_lock:
                schema.create(self._conn(), self.path)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: {exc}") from exc

    # -- connections -------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                raise StoreError(f"{self.path}: store is closed")
            conn = sqlite3.connect(
                self.path, timeout=30.0, isolation_level=None, check_same_thread=False
            )
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
        return self.insert_event_rows(dumps([event_row(e) for e in events]))

    def insert_event_rows(self, rows_json: str) -> int:
        """Insert a JSON array of :func:`event_row` rows; duplicates are ignored."""
        return self._insert_json(schema.INSERT_EVENTS, rows_json)

    def insert_feedback(self, feedback: Iterable[dict[str, Any]]) -> int:
        """Upsert validated feedback; for one request the newest label wins. Returns rows changed."""
        return self.insert_feedback_rows(dumps([feedback_row(f) for f in feedback]))

    def insert_feedback_rows(self, rows_json: str) -> int:
        """Upsert a JSON array of :func:`feedback_row` rows."""
        return self._insert_json(schema.INSERT_FEEDBACK, rows_json)

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
                (
                    reg["model"],
                    reg["version"],
                    reg.get("code_version") or "",
                    reg.get("run_id") or "",
                    reg.get("task"),
                    dumps(reg.get("params") or {}),
                    now,
                    now,
                ),
            )

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
            conn.execute("DELETE FROM profiles WHERE kind != 'reference' AND end_us < ?", (cutoff,))
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
        return int(
            self._conn()
            .execute("SELECT count(*) FROM feedback WHERE model = ?", (model,))
            .fetchone()[0]
        )

    def models(self) -> list[str]:
        """Every model name with events, feedback or a registration."""
        rows = (
            self._conn()
            .execute(
                "SELECT model FROM models UNION SELECT DISTINCT model FROM events "
                "UNION SELECT DISTINCT model FROM feedback ORDER BY 1"
            )
            .fetchall()
        )
        return [r[0] for r in rows]

    def registrations(self, model: str) -> list[dict[str, Any]]:
        cur = self._conn().execute(
            "SELECT model, version, code_version, run_id, task, params, first_seen_us, "
            "last_seen_us FROM models WHERE model = ? ORDER BY last_seen_us DESC",
            (model,),
        )
        out = []
        for row in cur.fetchall():
            item = dict(zip([c[0] for c in cur.description], row, strict=True))
            item["params"] = loads(item["params"])
            out.append(item)
        return out

    def events(
        self,
        model: str,
        *,
        since_us: int | None = None,
        until_us: int | None = None,
        version: str | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
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

    def joined(
        self,
        model: str,
        *,
        since_us: int | None = None,
        until_us: int | None = None,
        version: str | None = None,
    ) -> Iterator[tuple[dict[str, Any], Any]]:
        """Events of a window joined to their ground truth by request_id (label or None).

        Windows are by prediction time; a label that arrives late still joins its event.
        """
        where, args = _window("e.", model, since_us, until_us, version)
        sql = (
            f"SELECT {', '.join('e.' + c for c in EVENT_COLUMNS)}, f.label FROM events e "
            "LEFT JOIN feedback f ON f.model = e.model AND f.request_id = e.request_id "
            f"WHERE {where} ORDER BY e.ts_us, e.seq"
        )
        for row in self._conn().execute(sql, args):
            label = row[-1]
            yield row_event(row[:-1]), (None if label is None else loads(label))

    # -- profiles and results -------------------------------------------------
    def put_profile(
        self,
        model: str,
        version: str,
        kind: str,
        start_us: int,
        end_us: int,
        body: str,
        *,
        tag: str = "",
        now_us: int | None = None,
    ) -> None:
        """Store (or replace) one profile; ``body`` is its JSON, ``tag`` what it was built
        from (a reference's fingerprint)."""
        now_us = now_us if now_us is not None else int(time.time() * 1_000_000)
        with self._write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO profiles (model, version, kind, start_us, "
                "end_us, updated_us, tag, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (model, version, kind, start_us, end_us, now_us, tag, body),
            )

    def profile_tag(self, model: str, version: str, kind: str) -> str | None:
        """The tag of the newest profile of a kind (None when there is none)."""
        row = (
            self._conn()
            .execute(
                "SELECT tag FROM profiles WHERE model = ? AND version = ? AND kind = ? "
                "ORDER BY start_us DESC LIMIT 1",
                (model, version, kind),
            )
            .fetchone()
        )
        return None if row is None else str(row[0])

    def profiles(
        self,
        model: str,
        version: str,
        kind: str,
        *,
        since_us: int | None = None,
        until_us: int | None = None,
    ) -> list[tuple[int, int, str]]:
        """``(start_us, end_us, body)`` of the profiles of a kind whose window starts in
        ``[since_us, until_us)``, oldest first."""
        sql = (
            "SELECT start_us, end_us, body FROM profiles WHERE model = ? AND version = ? "
            "AND kind = ?"
        )
        args: list[Any] = [model, version, kind]
        if since_us is not None:
            sql += " AND start_us >= ?"
            args.append(since_us)
        if until_us is not None:
            sql += " AND start_us < ?"
            args.append(until_us)
        return [
            (int(a), int(b), str(c))
            for a, b, c in self._conn().execute(sql + " ORDER BY start_us", args)
        ]

    def put_result(
        self,
        model: str,
        version: str,
        kind: str,
        start_us: int,
        end_us: int,
        body: dict[str, Any],
        *,
        now_us: int | None = None,
    ) -> None:
        """Record a drift or KPI result of a window; a recomputed window replaces its row."""
        now_us = now_us if now_us is not None else int(time.time() * 1_000_000)
        with self._write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO results (model, version, kind, start_us, "
                "end_us, computed_us, body) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (model, version, kind, start_us, end_us, now_us, dumps(body)),
            )

    def latest_results(self, model: str) -> dict[str, dict[str, Any]]:
        """The newest result of each kind (and version) of a model: the window computed
        last, and among those the latest window. A KPI window that could not report (too
        few labels: its ``reason`` is set) is passed over, as the gauges pass it over."""
        sql = (
            "SELECT r.version, r.kind, r.start_us, r.end_us, r.computed_us, r.body "
            "FROM (SELECT version, kind, MAX(computed_us) AS c FROM results "
            "WHERE model = ? AND (kind != 'kpi' OR json_extract(body, '$.reason') IS NULL) "
            "GROUP BY version, kind) m JOIN results r ON r.model = ? "
            "AND r.version = m.version AND r.kind = m.kind AND r.computed_us = m.c "
            "AND (r.kind != 'kpi' OR json_extract(r.body, '$.reason') IS NULL) "
            "ORDER BY r.kind, r.version, r.start_us"
        )
        out: dict[str, dict[str, Any]] = {}
        rows = self._conn().execute(sql, (model, model))
        for version, kind, start_us, end_us, computed_us, body in rows:
            out.setdefault(kind, {})[version] = {
                "window": [format_us(start_us), format_us(end_us)],
                "computed": format_us(computed_us),
                **loads(body),
            }
        return out

    def joined_predictions(
        self,
        model: str,
        *,
        since_us: int | None = None,
        until_us: int | None = None,
        version: str | None = None,
    ) -> Iterator[tuple[dict[str, Any], Any]]:
        """What KPIs need of :meth:`joined`: ``ts_us``, ``status``, ``prediction`` and the
        label — without decoding features, so a window of millions stays cheap."""
        where, args = _window("e.", model, since_us, until_us, version)
        sql = (
            "SELECT e.ts_us, e.status, e.prediction, f.label FROM events e LEFT JOIN "
            "feedback f ON f.model = e.model AND f.request_id = e.request_id "
            f"WHERE {where}"
        )
        for ts_us, status, prediction, label in self._conn().execute(sql, args):
            yield (
                {
                    "ts_us": ts_us,
                    "status": status,
                    "prediction": None if prediction is None else loads(prediction),
                },
                None if label is None else loads(label),
            )

    def versions(
        self, model: str, *, since_us: int | None = None, until_us: int | None = None
    ) -> list[str]:
        """Versions of a model with events in a window."""
        where, args = _window("", model, since_us, until_us, None)
        sql = f"SELECT DISTINCT version FROM events WHERE {where} ORDER BY version"
        return [str(r[0]) for r in self._conn().execute(sql, args)]

    def count_with_features(
        self,
        model: str,
        *,
        since_us: int | None = None,
        until_us: int | None = None,
        version: str | None = None,
    ) -> int:
        """Events of a window that carry features (what a window profile summarises)."""
        where, args = _window("", model, since_us, until_us, version)
        sql = f"SELECT COUNT(*) FROM events WHERE {where} AND features IS NOT NULL"
        return int(self._conn().execute(sql, args).fetchone()[0])

    def feature_columns(
        self,
        model: str,
        names: Sequence[str],
        *,
        since_us: int | None = None,
        until_us: int | None = None,
        version: str | None = None,
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
            f"SELECT {picks} FROM events WHERE {where} AND features IS NOT NULL", [*paths, *args]
        )
        lists = [columns[n] for n in names]
        for row in rows:
            for target, value in zip(lists, row, strict=True):
                target.append(value)
        return columns
