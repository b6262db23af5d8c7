"""Events and feedback as rows: the store's column order, shared by the spool and sinks.

The sidecar spools validated events in this form (JSON columns as text), the store
inserts them as they are, and the Elasticsearch documents are built from them, so a
record is encoded once on its way in. Standard library only (orjson when present).

>>> row = event_row({"event_id": "e1", "ts": "2026-01-01T00:00:00.000000Z", "ts_us": 1,
...                  "model": "m", "version": "1", "status": "ok", "latency_ms": 2.0,
...                  "features": {"x": 1}})
>>> row_event(row)["features"], len(row) == len(EVENT_COLUMNS)
({'x': 1}, True)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from mlwatch.wire import DEFAULT_ENVIRONMENT

try:  # faster when present (it is, with mlwatch[sidecar]); the client works without it
    import orjson

    def dumpb(value: Any) -> bytes:
        """Compact JSON as bytes (the spool's form)."""
        return orjson.dumps(value)

    def loads(text: str | bytes) -> Any:
        return orjson.loads(text)
except ImportError:  # pragma: no cover - depends on the install

    def dumpb(value: Any) -> bytes:
        return json.dumps(
            value, separators=(",", ":"), allow_nan=False, ensure_ascii=False
        ).encode()

    def loads(text: str | bytes) -> Any:
        return json.loads(text)


def dumps(value: Any) -> str:
    """Compact JSON as text (the store's JSON columns)."""
    return dumpb(value).decode()


EVENT_COLUMNS = (
    "event_id",
    "ts",
    "ts_us",
    "model",
    "version",
    "request_id",
    "status",
    "error",
    "latency_ms",
    "features",
    "prediction",
    "code_version",
    "run_id",
    "labels",
    "batch_size",
    "environment",  # last: rows spooled before it (15 columns) read it as null
)
FEEDBACK_COLUMNS = ("model", "request_id", "feedback_id", "label", "ts", "ts_us")
JSON_COLUMNS = ("features", "prediction", "labels")


def event_row(e: dict[str, Any]) -> tuple[Any, ...]:
    """A validated event as a row in ``EVENT_COLUMNS`` order, JSON columns as text.

    The sidecar spools events in this form, so the store's consumer inserts them
    without rebuilding nested objects.
    """
    features, prediction, labels = e.get("features"), e.get("prediction"), e.get("labels")
    return (
        e["event_id"],
        e["ts"],
        e["ts_us"],
        e["model"],
        e["version"],
        e.get("request_id"),
        e["status"],
        e.get("error"),
        e["latency_ms"],
        None if features is None else dumps(features),
        None if prediction is None else dumps(prediction),
        e.get("code_version"),
        e.get("run_id"),
        None if labels is None else dumps(labels),
        e.get("batch_size"),
        e.get("environment") or DEFAULT_ENVIRONMENT,
    )


def feedback_row(f: dict[str, Any]) -> tuple[Any, ...]:
    """A validated feedback record as a row in ``FEEDBACK_COLUMNS`` order, label as JSON."""
    return (f["model"], f["request_id"], f["feedback_id"], dumps(f["label"]), f["ts"], f["ts_us"])


def row_event(row: Sequence[Any]) -> dict[str, Any]:
    """The inverse of :func:`event_row`: a row back to a wire-format event. A row spooled
    before there were environments is one column short: its environment is the default."""
    item = dict(zip(EVENT_COLUMNS, row, strict=False))
    item["environment"] = item.get("environment") or DEFAULT_ENVIRONMENT
    for key in JSON_COLUMNS:
        if item[key] is not None:
            item[key] = loads(item[key])
    return item
