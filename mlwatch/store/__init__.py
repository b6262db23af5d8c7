"""Where data sits on disk: the embedded SQLite store, the spool, and their row forms.

- :mod:`.embedded` — :class:`EmbeddedStore`, events, feedback, registrations, profiles
  and results in one SQLite file (standard library only: the client's local mode uses it);
- :mod:`.schema` and :mod:`.rows` — its tables and the row form records travel in;
- :mod:`.spool` (with :mod:`.segments`) — the sidecar's durable append-only log, and
  :mod:`.payloads` — what its records hold.
"""

from mlwatch.errors import StoreError
from mlwatch.store.embedded import EmbeddedStore
from mlwatch.store.rows import EVENT_COLUMNS, FEEDBACK_COLUMNS, event_row, feedback_row, row_event

__all__ = [
    "EVENT_COLUMNS",
    "FEEDBACK_COLUMNS",
    "EmbeddedStore",
    "StoreError",
    "event_row",
    "feedback_row",
    "row_event",
]
