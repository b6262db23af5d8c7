"""Counts of events that never reached the sidecar, per (model, version, reason).

Reasons: ``queue_full`` (the bound was hit on the calling thread), ``send_failed``
(given up after ``retry_timeout_s``), ``rejected`` (4xx other than 429),
``shutdown`` (left over at the shutdown deadline), ``error`` (an internal failure).
The counts travel as JSON in the ``X-Mlwatch-Dropped`` header of the next events
request (``wire.validate_drop_report``) and are subtracted — not cleared, since
more may have been counted meanwhile — only after that request succeeded.

>>> drops = DropCounts()
>>> drops.add(("iris", "3"), "queue_full", 2)
>>> snap = drops.snapshot()
>>> drops.add(("iris", "3"), "queue_full")
>>> DropCounts.report(snap, identity_of=None)
[{'model': 'iris', 'version': '3', 'reason': 'queue_full', 'count': 2}]
>>> drops.subtract(snap); drops.snapshot()
{(('iris', '3'), 'queue_full'): 1}
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any

from mlwatch.client.events import Site
from mlwatch.client.identity import Identity


class DropCounts:
    """Counts per (key, reason); a key is a Site (resolved later) or (model, version)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[Hashable, str], int] = {}

    def add(self, key: Hashable, reason: str, n: int = 1) -> None:
        with self._lock:
            self._counts[(key, reason)] = self._counts.get((key, reason), 0) + n

    def snapshot(self) -> dict[tuple[Hashable, str], int]:
        with self._lock:
            return dict(self._counts)

    def subtract(self, snap: dict[tuple[Hashable, str], int]) -> None:
        with self._lock:
            for k, n in snap.items():
                left = self._counts.get(k, 0) - n
                if left > 0:
                    self._counts[k] = left
                else:
                    self._counts.pop(k, None)

    @staticmethod
    def report(snap: dict[tuple[Hashable, str], int],
               identity_of: Callable[[Site], Identity] | None) -> list[dict[str, Any]]:
        """The header payload: ``[{"model", "version", "reason", "count"}]``, merged and sorted."""
        merged: dict[tuple[str, str, str], int] = {}
        for (key, reason), n in snap.items():
            if isinstance(key, Site) and identity_of is not None:
                ident = identity_of(key).key  # hot-path drops are keyed by site: resolve now
            else:
                ident = key  # type: ignore[assignment]
            model, version = ident
            merged[(model, version, reason)] = merged.get((model, version, reason), 0) + n
        return [{"model": m, "version": v, "reason": r, "count": n}
                for (m, v, r), n in sorted(merged.items()) if n > 0]
