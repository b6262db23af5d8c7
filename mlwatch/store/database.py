"""One SQLite file in WAL mode, a connection per thread, one writer at a time.

The base of :class:`~mlwatch.store.embedded.EmbeddedStore` and its query groups. SQLite
connections are not shared across threads; writes are serialised by a lock so that
concurrent writers never see ``database is locked``. ``synchronous=FULL`` because the
spool deletes what the store has committed: a committed transaction must survive power
loss too.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mlwatch.errors import StoreError


def window_clause(
    prefix: str,
    model: str,
    since_us: int | None,
    until_us: int | None,
    version: str | None,
    environment: str | None = None,
) -> tuple[str, list[Any]]:
    """WHERE clause and arguments of a model's window: [since, until), optionally one
    version and one environment."""
    clauses: list[str] = [f"{prefix}model = ?"]
    args: list[Any] = [model]
    for clause, value in (
        ("ts_us >= ?", since_us),
        ("ts_us < ?", until_us),
        ("version = ?", version),
        ("environment = ?", environment),
    ):
        if value is not None:
            clauses.append(prefix + clause)
            args.append(value)
    return " AND ".join(clauses), args


class Database:
    """Connections to one SQLite file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._closed = False

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

    def _insert_json(self, sql: str, rows_json: str) -> int:
        if rows_json == "[]":
            return 0
        conn = self._conn()
        with self._write_lock:  # one statement is one transaction: no BEGIN/COMMIT calls
            before = conn.total_changes
            conn.execute(sql, (rows_json,))
            return conn.total_changes - before
