"""The one contract every sink implements: the sidecar, the embedded store, memory.

As in OpenTelemetry's SDK, the shipper never calls ``export`` concurrently, and
the exporter owns its retries: it returns only when the records are delivered,
rejected, given up after ``deadline`` (``time.monotonic()`` seconds), or when
``interrupt`` is set (shutdown) while it waits to retry.
"""

from __future__ import annotations

import enum
import threading
from typing import Any, Protocol


class Result(enum.Enum):
    """What became of one export. Anything but OK maps to a drop reason."""

    OK = "ok"
    REJECTED = "rejected"  # 4xx other than 429: the data is bad, retrying will not help
    FAILED = "send_failed"  # retries exhausted (retry_timeout_s) or a non-retryable 5xx
    INTERRUPTED = "shutdown"  # shutdown began while waiting to retry


class Exporter(Protocol):
    """One sink. ``kind`` is "events", "feedback" or "models"; ``dropped`` is the drop
    report that travels with events (``X-Mlwatch-Dropped``)."""

    def export(self, kind: str, records: list[dict[str, Any]], *, deadline: float,
               interrupt: threading.Event, dropped: list[dict[str, Any]] | None = None
               ) -> Result: ...

    def after_fork(self) -> None: ...

    def close(self) -> None: ...
