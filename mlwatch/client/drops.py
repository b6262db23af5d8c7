"""Counts of events that never reached the sidecar, per (model, version, reason).

Reasons: ``queue_full`` (the bound was hit on the calling thread), ``send_failed``
(given up after ``retry_timeout_s``), ``rejected`` (4xx other than 429, or one event
still too large for the sidecar), ``shutdown`` (left over at the shutdown deadline),
``error`` (an internal failure, or an event that cannot be encoded as JSON).
The counts travel as JSON in the ``X-Mlwatch-Dropped`` header of the next events
request (``wire.validate_drop_report``) and are subtracted — not cleared, since
more may have been counted meanwhile — only after that request succeeded.

A report carries a ``report_id`` in every object. :meth:`DropCounts.next_report`
gives the same report (same id, same counts) until :meth:`DropCounts.delivered` is
called — the sidecar applies an id once, so a request that is retried, or whose
answer was lost, is never counted twice — and then a new report (new id) of what
was counted since.

Resolving a site's identity for the report never raises: a site whose identity
fails is reported under :func:`~mlwatch.client.identity.fallback_key`.

>>> drops = DropCounts()
>>> drops.add(("iris", "3"), "queue_full", 2)
>>> snap = drops.snapshot()
>>> drops.add(("iris", "3"), "queue_full")
>>> DropCounts.report(snap, identity_of=None, report_id="r1")
[{'model': 'iris', 'version': '3', 'reason': 'queue_full', 'count': 2, 'report_id': 'r1'}]
>>> drops.subtract(snap); drops.snapshot()
{(('iris', '3'), 'queue_full'): 1}
>>> first = drops.next_report(None)
>>> drops.add(("iris", "3"), "error")
>>> drops.next_report(None) == first, first[0]["count"]  # resent as it was
(True, 1)
>>> drops.delivered(); [(r["reason"], r["count"]) for r in drops.next_report(None)]
[('error', 1)]
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any, cast

from mlwatch.client.identity import Identity, fallback_key
from mlwatch.client.site import Site
from mlwatch.ids import event_id

Snapshot = dict[tuple[Hashable, str], int]


class DropCounts:
    """Counts per (key, reason); a key is a Site (resolved later) or (model, version)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Snapshot = {}
        self._sent: tuple[Snapshot, list[dict[str, Any]]] | None = None  # not yet delivered
        #: Everything ever counted, per reason: never subtracted (what the process lost,
        #: for flush()'s answer and the summary at exit).
        self._totals: dict[str, int] = {}

    def add(self, key: Hashable, reason: str, n: int = 1) -> None:
        with self._lock:
            self._counts[(key, reason)] = self._counts.get((key, reason), 0) + n
            self._totals[reason] = self._totals.get(reason, 0) + n

    def totals(self) -> dict[str, int]:
        """Events counted as dropped since the start (reported or not), per reason."""
        with self._lock:
            return dict(self._totals)

    def total(self) -> int:
        with self._lock:
            return sum(self._totals.values())

    def add_events(self, events: list[dict[str, Any]], reason: str) -> None:
        """Count wire-format events by their (model, version)."""
        per_key: dict[tuple[str, str], int] = {}
        for ev in events:
            key = (ev.get("model") or "model", ev.get("version") or "unknown")
            per_key[key] = per_key.get(key, 0) + 1
        for key, n in per_key.items():
            self.add(key, reason, n)

    def snapshot(self) -> Snapshot:
        with self._lock:
            return dict(self._counts)

    def next_report(
        self, identity_of: Callable[[Site], Identity] | None
    ) -> list[dict[str, Any]] | None:
        """The header payload to send (worker only): the report not yet delivered, else
        the counts now under a new ``report_id``; None when there is nothing to report."""
        if self._sent is None:
            snap = self.snapshot()
            items = self.report(snap, identity_of, event_id()) if snap else []
            if not items:
                return None
            self._sent = (snap, items)
        return self._sent[1]

    def delivered(self) -> None:
        """A request carrying the report succeeded: subtract its counts."""
        if self._sent is not None:
            self.subtract(self._sent[0])
            self._sent = None

    def subtract(self, snap: Snapshot) -> None:
        with self._lock:
            for k, n in snap.items():
                left = self._counts.get(k, 0) - n
                if left > 0:
                    self._counts[k] = left
                else:
                    self._counts.pop(k, None)

    @staticmethod
    def report(
        snap: Snapshot, identity_of: Callable[[Site], Identity] | None, report_id: str | None = None
    ) -> list[dict[str, Any]]:
        """The header payload: ``[{"model", "version", "reason", "count"}]``, merged and
        sorted, with ``"report_id"`` in every object when given."""
        merged: dict[tuple[str, str, str], int] = {}
        for (key, reason), n in snap.items():
            if isinstance(key, Site):  # hot-path drops are keyed by site: resolve now
                try:
                    model, version = identity_of(key).key if identity_of else fallback_key(key)
                except Exception:  # one bad site must not block every later report
                    model, version = fallback_key(key)
            else:
                model, version = cast("tuple[str, str]", key)
            merged[(model, version, reason)] = merged.get((model, version, reason), 0) + n
        extra = {"report_id": report_id} if report_id else {}
        return [
            {"model": m, "version": v, "reason": r, "count": n, **extra}
            for (m, v, r), n in sorted(merged.items())
            if n > 0
        ]
