"""What became of what the process recorded: the answer of ``flush()`` and ``shutdown()``,
a warning at the first loss, and a summary at exit.

Monitoring that goes quiet when it is misconfigured is worse than none: a wrong port,
token or URL must not look like success. So every record not delivered is counted
(events by their drop reason in :class:`~mlwatch.client.drops.DropCounts`; feedback and
registrations here), the first loss is logged at once with the exporter's last error,
and the process's total is logged when it shuts down. ``flush()`` and ``shutdown()``
answer True only when nothing was lost since the previous answer.
"""

from __future__ import annotations

import logging
import threading

from mlwatch.client.drops import DropCounts

log = logging.getLogger("mlwatch")


class Delivery:
    """Counts of delivered and lost records, and what flush() and shutdown() answer."""

    def __init__(self, drops: DropCounts, where: str) -> None:
        self.drops = drops
        self.where = where
        self.delivered = 0  # events acknowledged (worker only)
        self._other: dict[str, int] = {}  # feedback and registrations lost, by kind
        self._lock = threading.Lock()
        self._answered = 0  # lost() when flush() or shutdown() last answered
        self._warned = False

    def lost_other(self, kind: str, n: int) -> None:
        """Feedback or registrations not delivered (events are counted as drops)."""
        with self._lock:
            self._other[kind] = self._other.get(kind, 0) + n

    def lost(self) -> int:
        with self._lock:
            other = sum(self._other.values())
        return self.drops.total() + other

    def answer(self, done: bool) -> bool:
        """flush()'s or shutdown()'s answer: the wait ended in time (``done``) and no
        record was lost since the previous answer."""
        now = self.lost()
        with self._lock:
            clean, self._answered = now == self._answered, now
        return done and clean

    def check(self, cause: str | None) -> None:
        """Log the first loss at once (the worker calls this after each round)."""
        if self._warned or self.lost() == 0:
            return
        self._warned = True
        full = self.drops.totals().get("queue_full")
        log.warning(
            "mlwatch: records are not reaching %s: %s so far%s%s. Losses are counted "
            "(X-Mlwatch-Dropped, mlwatch_events_dropped_total) and summed up at exit.",
            self.where,
            self.describe(),
            f"; last error: {cause}" if cause else "",
            "; queue_full: calls come faster than they are shipped (raise queue_size, or "
            "lower sample_rate)"
            if full
            else "",
        )

    def summary(self, cause: str | None) -> None:
        """Log, at shutdown, how much of what the process recorded was never delivered."""
        if self.lost() == 0:
            return
        log.warning(
            "mlwatch: not delivered to %s during this process: %s (events delivered: %d)%s",
            self.where,
            self.describe(),
            self.delivered,
            f"; last error: {cause}" if cause else "",
        )

    def describe(self) -> str:
        """E.g. ``50 events (send_failed 48, shutdown 2), 1 feedback record``."""
        totals = self.drops.totals()
        with self._lock:
            other = dict(self._other)
        parts = []
        if totals:
            reasons = ", ".join(f"{r} {n}" for r, n in sorted(totals.items()))
            parts.append(f"{sum(totals.values())} events ({reasons})")
        names = {"feedback": "feedback record", "models": "model registration"}
        for kind, n in sorted(other.items()):
            parts.append(f"{n} {names.get(kind, kind)}{'s' if n != 1 else ''}")
        return ", ".join(parts)
