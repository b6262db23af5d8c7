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
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mlwatch.errors import StoreError
from mlwatch.store import schema
from mlwatch.store.catalog import Catalog
from mlwatch.store.database import window_clause
from mlwatch.store.outbox import Outbox
from mlwatch.store.report_reads import ReportReads
from mlwatch.store.results import ProfilesAndResults
from mlwatch.store.rows import EVENT_COLUMNS, dumps, event_row, feedback_row, loads, row_event
from mlwatch.store.totals import Totals
from mlwatch.store.window_reads import WindowReads


class EmbeddedStore(WindowReads, ProfilesAndResults, Catalog, Totals, Outbox, ReportReads):
    """Events, feedback, model registrations, profiles and results in one SQLite file
    (connections: :mod:`.database`; window reads: :mod:`.window_reads`; profiles and
    results: :mod:`.results`; model names and summaries: :mod:`.catalog`).

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
        super().__init__(path)
        self.retention_days = retention_days
        try:
            with self._write_lock:
                schema.create(self._conn(), self.path)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: {exc}") from exc

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
    def count_events(
        self, model: str, *, version: str | None = None, environment: str | None = None
    ) -> int:
        where, args = window_clause("", model, None, None, version, environment)
        return int(
            self._conn().execute(f"SELECT count(*) FROM events WHERE {where}", args).fetchone()[0]
        )

    def count_feedback(self, model: str) -> int:
        return int(
            self._conn()
            .execute("SELECT count(*) FROM feedback WHERE model = ?", (model,))
            .fetchone()[0]
        )

    def model_status(self, model: str, *, environment: str | None = None) -> dict[str, Any]:
        """What the store says about one model: counts, registered versions and the newest
        drift and KPI results (the sidecar's status adds its sinks' lag to it). With an
        environment, the events counted are that environment's; feedback, registrations
        and results carry none, so they stay the model's."""
        return {
            "model": model,
            "events_stored": self.count_events(model, environment=environment),
            "feedback_stored": self.count_feedback(model),
            "versions": self.registrations(model),
            **self.latest_results(model),  # "drift" and "kpi", newest per version
        }

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
        environment: str | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Stored events of one model, newest first, in the wire format."""
        where, args = window_clause("", model, since_us, until_us, version, environment)
        sql = f"SELECT {', '.join(EVENT_COLUMNS)} FROM events WHERE {where}"
        sql += " ORDER BY ts_us DESC, seq DESC LIMIT ?"
        args.append(limit)
        out = []
        for row in self._conn().execute(sql, args):
            event = row_event(row)
            del event["ts_us"]  # internal: the wire format carries ts
            out.append(event)
        return out
