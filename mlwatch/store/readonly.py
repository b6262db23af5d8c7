"""An existing store opened for reading only, for looking at a data directory from outside
(``mlwatch status``, ``mlwatch events``), possibly while its sidecar writes to it.

Opening it creates nothing: not the directory, not an empty ``store.db``, not its tables.
A store without a ``-wal`` file has no writer and nothing waiting in a log, so it is read
as immutable: SQLite then creates no ``-wal`` or ``-shm`` beside it either, which would
belong to whoever ran the command and could keep a sidecar of another user from opening
its own store. With a ``-wal`` (a writer is running, or stopped without cleaning up) it is
read through that log, as any reader would.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from mlwatch.errors import StoreError
from mlwatch.store.database import Database
from mlwatch.store.embedded import EmbeddedStore
from mlwatch.store.schema import READABLE_VERSIONS
from mlwatch.wire import DEFAULT_ENVIRONMENT


def _environment_view(conn: sqlite3.Connection) -> None:
    """A file before schema version 4 (its sidecar not yet upgraded) has events without an
    environment, and a read-only file cannot gain the column: a temporary view of the same
    name, which SQLite finds before the file's table, gives its rows the default one."""
    try:
        columns = {row[1] for row in conn.execute("PRAGMA main.table_info(events)")}
        if columns and "environment" not in columns:
            conn.execute(
                "CREATE TEMP VIEW events AS SELECT *, "
                f"'{DEFAULT_ENVIRONMENT}' AS environment FROM main.events"
            )
    except sqlite3.Error:  # not a store at all: the version check says so
        return


class ReadOnlyStore(EmbeddedStore):
    """The reads of :class:`EmbeddedStore` on an existing file; every write fails."""

    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        if not path.is_file():
            raise StoreError(f"no mlwatch store at {path}")
        Database.__init__(self, path)  # not EmbeddedStore's: it would create the tables
        self.retention_days = 0.0
        self._check_version()

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                raise StoreError(f"{self.path}: store is closed")
            wal = self.path.with_name(self.path.name + "-wal")
            mode = "mode=ro" if wal.exists() else "mode=ro&immutable=1"
            try:
                conn = sqlite3.connect(
                    f"{self.path.resolve().as_uri()}?{mode}",
                    uri=True,
                    timeout=30.0,
                    isolation_level=None,
                    check_same_thread=False,
                )
            except sqlite3.Error as exc:
                raise StoreError(f"{self.path}: cannot open: {exc}") from None
            _environment_view(conn)
            self._local.conn = conn
            with self._connections_lock:
                self._connections.append(conn)
        return conn

    def _check_version(self) -> None:
        """Refuse a file that is not a store this mlwatch reads, before any query fails."""
        try:
            row = (
                self._conn()
                .execute("SELECT value FROM meta WHERE key = 'schema_version'")
                .fetchone()
            )
        except sqlite3.Error as exc:
            self.close()
            raise StoreError(f"{self.path}: not an mlwatch store ({exc})") from None
        if row is None or not str(row[0]).isdigit() or int(row[0]) not in READABLE_VERSIONS:
            self.close()
            version = "none" if row is None else row[0]
            readable = " or ".join(str(v) for v in READABLE_VERSIONS)
            raise StoreError(
                f"{self.path}: schema version {version}, this mlwatch reads {readable}"
            )
