"""The embedded store's SQLite schema, its version, and opening a file with it.

Schema version 4 (table ``meta`` holds it; older files gain the new tables and columns):

- ``events``: one row per prediction; ``features``, ``prediction`` and ``labels`` as JSON.
- ``feedback``: ground truth by ``(model, request_id)``.
- ``models``: registrations ``(model, version, code_version, run_id)`` with ``params``.
- ``profiles``: summaries by ``(model, version, kind, start)``: the reference (kind
  ``reference``, ``tag`` = a fingerprint of its source) and per-slice profiles, as JSON
  (:mod:`mlwatch.stats`).
- ``results``: drift and KPI results by ``(model, version, kind, window start)``; a
  recomputed window (late labels) replaces its row.
- ``triggers`` (version 3): retraining triggers, the outbox they are sent from, and
  ``trigger_attempts`` for each attempt; ``causes``: per model and cause, whether the
  condition is active (and which of its instances: alerts by fingerprint, versions) and
  when it last triggered (cooldown, hysteresis, storm guard).
- ``events.environment`` (version 4): the environment an event was served in. Rows of
  older files read as ``default`` (:data:`~mlwatch.wire.DEFAULT_ENVIRONMENT`), the
  environment of a deployment that never set one. Profiles and results stay without an
  environment: they are the scheduler's, which computes over its own environment only.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from mlwatch.errors import StoreError
from mlwatch.store.rows import EVENT_COLUMNS, FEEDBACK_COLUMNS
from mlwatch.wire import DEFAULT_ENVIRONMENT

SCHEMA_VERSION = 4
#: The version key of a profile shared by every version of a model (a reference).
ANY_VERSION = "*"
READABLE_VERSIONS = (1, 2, 3, 4)  # 1 -> 2 -> 3 added tables, 4 a column of events

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
    batch_size INTEGER,
    environment TEXT NOT NULL DEFAULT 'default'
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
CREATE TABLE IF NOT EXISTS triggers (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    cause TEXT NOT NULL,
    target TEXT NOT NULL,
    state TEXT NOT NULL,
    body TEXT NOT NULL,
    created_us INTEGER NOT NULL,
    updated_us INTEGER NOT NULL,
    next_us INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    detail TEXT,
    reference TEXT
);
CREATE INDEX IF NOT EXISTS triggers_model ON triggers (model, created_us);
CREATE INDEX IF NOT EXISTS triggers_due ON triggers (state, next_us);
CREATE TABLE IF NOT EXISTS trigger_attempts (
    key TEXT NOT NULL,
    n INTEGER NOT NULL,
    at_us INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    status INTEGER,
    detail TEXT,
    PRIMARY KEY (key, n)
);
CREATE TABLE IF NOT EXISTS causes (
    model TEXT NOT NULL,
    cause TEXT NOT NULL,
    active INTEGER NOT NULL,
    changed_us INTEGER NOT NULL,
    last_trigger_us INTEGER,
    instances TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (model, cause)
);
"""


def _from_json_rows(columns: tuple[str, ...], defaults: dict[str, str] | None = None) -> str:
    # One statement unpacks a whole JSON array of rows inside SQLite: Python makes a
    # single call (one GIL hand-off) instead of one per row, and the parsing and
    # B-tree work run in C without the GIL. json_extract works on SQLite >= 3.9.
    # A column with a default takes it where the row is short (spooled by an older
    # mlwatch) or null, instead of failing NOT NULL (which OR IGNORE would skip silently).
    defaults = defaults or {}
    picks = ", ".join(
        f"coalesce(json_extract(value, '$[{i}]'), '{defaults[c]}')"
        if c in defaults
        else f"json_extract(value, '$[{i}]')"
        for i, c in enumerate(columns)
    )
    return f"SELECT {picks} FROM json_each(?) WHERE true"


INSERT_EVENTS = f"INSERT OR IGNORE INTO events ({', '.join(EVENT_COLUMNS)}) " + _from_json_rows(
    EVENT_COLUMNS, {"environment": DEFAULT_ENVIRONMENT}
)
INSERT_FEEDBACK = (
    f"INSERT INTO feedback ({', '.join(FEEDBACK_COLUMNS)}) {_from_json_rows(FEEDBACK_COLUMNS)} "
    "ON CONFLICT (model, request_id) DO UPDATE SET "
    "feedback_id = excluded.feedback_id, label = excluded.label, ts = excluded.ts, "
    "ts_us = excluded.ts_us WHERE excluded.ts_us >= feedback.ts_us"
)


def create(conn: sqlite3.Connection, path: Path) -> None:
    """Create the tables (idempotent) and record or upgrade the schema version; a file
    of an unknown version is refused.

    One ``BEGIN IMMEDIATE`` transaction (``conn`` in autocommit mode, as the store opens
    it): a sidecar and a scheduler opening an old file at once take turns, so the second
    sees the columns the first added instead of adding them again (``duplicate column
    name``), and a crash midway leaves the file as it was."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        for statement in _SCHEMA.split(";"):  # not executescript: it would COMMIT first
            if statement.strip():
                conn.execute(statement)
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None:
            conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        elif int(row[0]) not in READABLE_VERSIONS:
            raise StoreError(
                f"{path}: schema version {row[0]}, this mlwatch reads {SCHEMA_VERSION}"
            )
        elif int(row[0]) != SCHEMA_VERSION:
            conn.execute(
                "UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),)
            )
        _add_cause_instances(conn)
        _add_event_environment(conn)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _add_event_environment(conn: sqlite3.Connection) -> None:
    """Files before version 4 have events without ``environment``: add it, so that their
    rows read as the default environment (one ALTER, no rewrite of the rows)."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(events)")}
    if "environment" not in columns:
        conn.execute(
            "ALTER TABLE events ADD COLUMN environment TEXT NOT NULL "
            f"DEFAULT '{DEFAULT_ENVIRONMENT}'"
        )


def _add_cause_instances(conn: sqlite3.Connection) -> None:
    """Early version-3 files have ``causes`` without ``instances``: add the column."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(causes)")}
    if "instances" not in columns:
        conn.execute("ALTER TABLE causes ADD COLUMN instances TEXT NOT NULL DEFAULT '[]'")
