"""Storage of events, feedback and model registrations."""

from mlwatch.store.sqlite import (
    EVENT_COLUMNS,
    FEEDBACK_COLUMNS,
    EmbeddedStore,
    StoreError,
    event_row,
    feedback_row,
    row_event,
)

__all__ = ["EVENT_COLUMNS", "FEEDBACK_COLUMNS", "EmbeddedStore", "StoreError", "event_row",
           "feedback_row", "row_event"]
