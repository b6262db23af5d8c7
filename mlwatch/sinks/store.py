"""The embedded store as a spool sink: rows inserted as they were spooled, idempotently."""

from __future__ import annotations

from mlwatch.sinks.base import Batch, ConsumerOptions, ExportResult
from mlwatch.store import EmbeddedStore


class StoreSink:
    """Writes each batch into the sidecar's embedded store (which the sidecar owns and
    closes once every sink has shut down)."""

    name = "store"

    def __init__(self, store: EmbeddedStore) -> None:
        self.store = store
        self.options = ConsumerOptions()

    def export(self, batch: Batch) -> ExportResult:
        for reg in batch.registrations:
            self.store.register_model(reg)
        self.store.insert_event_rows(batch.event_rows_json())
        self.store.insert_feedback_rows(batch.feedback_rows_json())
        return ExportResult.SUCCESS

    def force_flush(self, timeout: float = 10.0) -> bool:
        return True  # every export is a committed transaction

    def shutdown(self, timeout: float = 10.0) -> bool:
        return True
