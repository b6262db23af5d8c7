"""What a spool record holds: two bytes of kind and format version, then a JSON array.

``E1``: events as rows in the store's column order (:data:`mlwatch.store.rows.EVENT_COLUMNS`)
with features, prediction and labels as JSON text — decoding rows of scalars is several
times cheaper than rebuilding nested objects, and the store inserts them as they are.
``F1``: feedback rows (:data:`~mlwatch.store.rows.FEEDBACK_COLUMNS`); ``M1``: model
registrations (wire-format objects). A reader meets an unknown kind (written by a newer
mlwatch) by skipping it, never by stopping.

>>> payload = encode(MODELS, [{"model": "m", "version": "1"}])
>>> payload[:2], kind_of(payload), body_of(payload)
(b'M1', b'M1', b'[{"model":"m","version":"1"}]')
"""

from __future__ import annotations

from typing import Any

from mlwatch.store.rows import dumpb, event_row, feedback_row

EVENTS, FEEDBACK, MODELS = b"E1", b"F1", b"M1"
KINDS = {"events": EVENTS, "feedback": FEEDBACK, "models": MODELS}


def encode(kind: bytes, items: list[dict[str, Any]]) -> bytes:
    """One spool record of validated records of one kind."""
    if kind == EVENTS:
        return kind + dumpb([event_row(e) for e in items])
    if kind == FEEDBACK:
        return kind + dumpb([feedback_row(f) for f in items])
    return kind + dumpb(items)


def kind_of(payload: bytes) -> bytes:
    return payload[:2]


def body_of(payload: bytes) -> bytes:
    return payload[2:]
