"""An exporter that keeps everything in lists: for testing code decorated with ``@monitor``.

``mlwatch.client.runtime.start(config, exporter=MemoryExporter())`` makes it the sink of
the current runtime; ``records`` holds what arrived by kind, and ``wait_for`` waits for
it without sleeping.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from mlwatch.client.exporter import ExportBatch, Partial, Result


class MemoryExporter:
    """Keeps exported records in lists; ``wait_for`` lets tests wait without sleeping.

    >>> exp = MemoryExporter()
    >>> exp.export(ExportBatch("events", [{"model": "m"}]))
    <Result.OK: 'ok'>
    >>> exp.wait_for("events", 1, timeout=0.1), len(exp.records["events"])
    (True, 1)
    """

    name = "memory"

    def __init__(self, result: Result = Result.OK) -> None:
        self.result = result
        self.records: dict[str, list[dict[str, Any]]] = {"events": [], "feedback": [], "models": []}
        self.dropped: list[list[dict[str, Any]]] = []
        self.calls = 0
        self.closed = False
        self.where = "memory"
        self.last_error: str | None = None
        self._cond = threading.Condition()

    def export(self, batch: ExportBatch) -> Result | Partial:
        with self._cond:
            self.calls += 1
            if self.result is Result.OK:
                self.records[batch.kind].extend(batch.records)
                if batch.dropped:
                    self.dropped.append(batch.dropped)
            self._cond.notify_all()
            return self.result

    def wait_for(self, kind: str, n: int, timeout: float = 5.0) -> bool:
        """Wait until at least ``n`` records of ``kind`` arrived."""
        end = time.monotonic() + timeout
        with self._cond:
            while len(self.records[kind]) < n:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def after_fork(self) -> None:
        self._cond = threading.Condition()

    def force_flush(self, timeout: float = 5.0) -> bool:
        return True

    def shutdown(self, timeout: float = 5.0) -> bool:
        self.closed = True
        return True
