"""The embedded store as a spool sink: rows inserted as they were spooled, idempotently;
the predictions a batch joins to their ground truth are handed to ``on_joined`` (the
labelled-prediction counters)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from mlwatch.sinks.base import Batch, ConsumerOptions, ExportResult
from mlwatch.store import EmbeddedStore

log = logging.getLogger("mlwatch.sidecar")
Joined = list[tuple[str, str, dict[str, Any], Any]]


class StoreSink:
    """Writes each batch into the sidecar's embedded store (which the sidecar owns and
    closes once every sink has shut down)."""

    name = "store"

    def __init__(
        self, store: EmbeddedStore, on_joined: Callable[[Joined], None] | None = None
    ) -> None:
        self.store = store
        self.options = ConsumerOptions()
        self.on_joined = on_joined

    def export(self, batch: Batch) -> ExportResult:
        for reg in batch.registrations:
            self.store.register_model(reg)
        events, feedback = batch.event_rows_json(), batch.feedback_rows_json()
        counting = self.on_joined is not None and (events != "[]" or feedback != "[]")
        before = self._joined(events, feedback) if counting else None
        self.store.insert_event_rows(events)
        self.store.insert_feedback_rows(feedback)
        if counting and before is not None and self.on_joined is not None:
            try:
                self.on_joined(self.store.joined_by_rows(events, feedback, before=before))
            except Exception as exc:  # a count, never a reason to redeliver the batch
                log.warning("counting labelled predictions failed: %s", exc)
        return ExportResult.SUCCESS

    def _joined(self, events: str, feedback: str) -> set[tuple[str, str]] | None:
        try:
            return self.store.joined_keys(events, feedback)
        except Exception as exc:  # a count, never a reason to redeliver the batch
            log.warning("counting labelled predictions failed: %s", exc)
            return None

    def force_flush(self, timeout: float = 10.0) -> bool:
        return True  # every export is a committed transaction

    def shutdown(self, timeout: float = 10.0) -> bool:
        return True
