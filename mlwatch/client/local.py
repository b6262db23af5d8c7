"""Local mode: the client writes into the embedded SQLite store itself, no sidecar.

Local mode is what runs when no ``sidecar_url`` is set: a notebook or a single
machine gets monitoring without a sidecar. The worker validates each record with
the wire validators (the store trusts its input) and writes through
:class:`mlwatch.store.EmbeddedStore` at ``<data_dir>/store.db``. The store module
is imported on the worker's first export, not at ``import mlwatch``. There is no
sidecar to report drop counts to, so they are logged (rate-limited) instead.
Records the validators refuse are not stored and are counted as ``rejected``.
Retention (``retention_days``) is applied on export, at most once every
:data:`PURGE_EVERY_S` seconds (the first export purges at once).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlwatch.client.exporter import ExportBatch, Partial, Result
from mlwatch.client.memory import MemoryExporter  # where earlier versions had it
from mlwatch.errors import ValidationError
from mlwatch.logs import failures, logger
from mlwatch.settings import Config
from mlwatch.wire import validate_event, validate_feedback, validate_registration

__all__ = ["LocalExporter", "MemoryExporter"]

_VALIDATORS = {
    "events": validate_event,
    "feedback": validate_feedback,
    "models": validate_registration,
}
PURGE_EVERY_S = 3600.0  # retention runs at most once an hour


class LocalExporter:
    """Writes to the embedded store; opened lazily on the worker thread."""

    name = "local"

    def __init__(
        self,
        path: str | Path,
        *,
        retention_days: float = 30.0,
        config: Config | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = Path(path)
        self.where = str(self.path)
        self.last_error: str | None = None
        self.retention_days = retention_days
        self._config = config
        self._clock = clock
        self._purged_at: float | None = None
        self._store: Any = None
        self._redactor: Any = None
        self._announced = False

    def _open(self) -> Any:
        if self._store is None:
            from mlwatch.store import EmbeddedStore

            self._store = EmbeddedStore(self.path, retention_days=self.retention_days)
            if self._config is not None and self._config.models:
                # the same rules as the sidecar's ingest: sensitive features never stored raw
                from mlwatch.redact import Redactor, load_or_create_key

                self._redactor = Redactor(
                    self._config.models,
                    key=load_or_create_key(self._config.hash_key, self.path.parent),
                )
            if not self._announced:
                self._announced = True
                logger.info(
                    "mlwatch: no sidecar_url set; writing events to %s (local mode)",
                    self.path.resolve(),
                )
        return self._store

    def export(self, batch: ExportBatch) -> Result | Partial:
        kind, records, dropped = batch.kind, batch.records, batch.dropped
        if dropped:
            failures.warning("local.dropped", "mlwatch: events dropped: %s", dropped)
        validate = _VALIDATORS[kind]
        valid, stored, lost = [], [], []
        for i, rec in enumerate(records, 1):
            try:
                valid.append(validate(rec, line=i))
                stored.append(rec)
            except ValidationError as exc:
                lost.append(rec)
                self.last_error = f"invalid {kind} record: {exc}"
                failures.error(
                    f"local.invalid.{kind}", "mlwatch: invalid %s record not stored: %s", kind, exc
                )
        outcome = [(Result.REJECTED, lost)] if lost else []
        if valid:
            try:
                self._write(kind, valid)
            except Exception as exc:  # StoreError, sqlite3 errors, a full disk
                self.last_error = f"writing {kind} to {self.path} failed: {exc}"
                failures.error(
                    f"local.{kind}",
                    "mlwatch: writing %d %s to %s failed: %s",
                    len(valid),
                    kind,
                    self.path,
                    exc,
                )
                outcome.append((Result.FAILED, stored))
            else:
                self._purge(self._store)
        if not outcome:
            return Result.OK
        return Partial(lost=outcome, report_sent=True)  # the report went to the log

    def _write(self, kind: str, valid: list[dict[str, Any]]) -> None:
        store = self._open()
        if kind == "events":
            if self._redactor:
                for event in valid:
                    self._redactor.apply(event)
            store.insert_events(valid)
        elif kind == "feedback":
            store.insert_feedback(valid)
        else:
            for reg in valid:
                store.register_model(reg)

    def _purge(self, store: Any) -> None:
        """Apply the retention, at most once every PURGE_EVERY_S seconds."""
        now = self._clock()
        if self._purged_at is not None and now - self._purged_at < PURGE_EVERY_S:
            return
        self._purged_at = now
        try:
            removed = store.purge()
        except Exception as exc:  # a busy or full disk: try again in an hour
            failures.error(
                "local.purge", "mlwatch: applying the retention to %s failed: %s", self.path, exc
            )
            return
        if removed:
            logger.info(
                "mlwatch: retention: removed %d rows older than %s days from %s",
                removed,
                self.retention_days,
                self.path,
            )

    def after_fork(self) -> None:
        """SQLite connections must not cross a fork: the child opens its own."""
        self._store = None

    def force_flush(self, timeout: float = 5.0) -> bool:
        return True  # every export is a committed transaction

    def shutdown(self, timeout: float = 5.0) -> bool:
        store, self._store = self._store, None
        if store is not None:
            store.close()
        return True
