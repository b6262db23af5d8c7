"""The bounded, asynchronous capture of proxied calls.

The forward path only appends an exchange to a bounded queue (:meth:`Recorder.submit`:
no lock held, no I/O, never raises); one daemon thread reads the queued calls, turns
them into events and appends them to the sidecar's spool in one durable write per
batch, through the same ``accept`` as every other input. A full queue, a full spool or
a call that cannot be read is counted in ``mlwatch_proxy_capture_failures_total``,
never passed on to the caller.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable
from typing import Any

from mlwatch import wire
from mlwatch.errors import CaptureError, IngestError, ValidationError
from mlwatch.logs import RateLimitedLog
from mlwatch.proxy.events import Reader
from mlwatch.proxy.exchange import Exchange
from mlwatch.proxy.metrics import ProxyMetrics

log = logging.getLogger("mlwatch.proxy")
BATCH_CALLS = 500  # exchanges per durable append, at most
# The thread looks at the queue this often, or at once when a batch is waiting: woken for
# every call, it would take the GIL from the forwarding loop for every call, and append
# batches of one.
FLUSH_S = 0.05


class Recorder:
    """Owns the queue and the thread that records what it holds."""

    def __init__(
        self,
        reader: Reader,
        accept: Callable[[list[dict[str, Any]]], Any],
        metrics: ProxyMetrics,
        queue_size: int,
        max_events: int = 10_000,
    ) -> None:
        self._reader = reader
        self._max_events = max_events  # per append: the sidecar's max_events_per_request
        self._accept = accept
        self._metrics = metrics
        self._max = queue_size
        self._queue: collections.deque[Exchange] = collections.deque()
        self._wake = threading.Event()
        self._stopping = False
        self._failures = RateLimitedLog(log)
        self._thread = threading.Thread(
            target=self._run, name="mlwatch-proxy-recorder", daemon=True
        )

    def submit(self, ex: Exchange) -> None:
        """Queue a call to record, or count it when the queue is full (never blocks)."""
        if len(self._queue) >= self._max:
            self._metrics.failures["queue_full"].inc()
            return
        self._queue.append(ex)
        if len(self._queue) >= BATCH_CALLS and not self._wake.is_set():
            self._wake.set()

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Record what is queued, then end the thread (idempotent)."""
        self._stopping = True
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        queue = self._queue
        while True:
            self._wake.wait(FLUSH_S)
            self._wake.clear()
            while queue:
                batch = [queue.popleft() for _ in range(min(len(queue), BATCH_CALLS))]
                self._metrics.queued.set(len(queue))
                try:
                    self._record(batch)
                except Exception as exc:  # a bug must not end the thread
                    self._metrics.failures["internal"].inc(len(batch))
                    self._failures.warning("internal", "proxy capture failed: %r", exc)
            self._metrics.queued.set(0)
            if self._stopping and not queue:
                return

    def _record(self, batch: list[Exchange]) -> None:
        """Append the batch's events in as few durable writes as ``max_events`` allows."""
        calls: list[list[dict[str, Any]]] = []
        for ex in batch:
            events = self._events(ex)
            if events:
                calls.append(events)
        group: list[list[dict[str, Any]]] = []
        size = 0
        for events in calls:
            if group and size + len(events) > self._max_events:
                self._append(group)
                group, size = [], 0
            group.append(events)
            size += len(events)
        if group:
            self._append(group)

    def _events(self, ex: Exchange) -> list[dict[str, Any]]:
        """One call's events; what is missing or unreadable is counted."""
        failures = self._metrics.failures
        try:
            events, misses = self._reader.events(ex)
        except CaptureError as exc:
            failures[exc.reason].inc()
            self._failures.info(
                exc.reason, "proxy: %s %s not recorded: %s", ex.method, ex.path, exc
            )
            return []
        for reason in set(misses):
            failures[reason].inc()
        return events

    def _append(self, calls: list[list[dict[str, Any]]]) -> None:
        """One durable append of the calls' events. The sidecar validates them; when one
        breaks the wire format, the calls are checked one by one and the rest appended."""
        try:
            self._accept([ev for events in calls for ev in events])
            return
        except IngestError as exc:
            if exc.status != 422:
                self._refused(exc, len(calls))
                return
        valid = [events for events in calls if self._valid(events)]
        if valid:
            try:
                self._accept([ev for events in valid for ev in events])
            except IngestError as exc:
                self._refused(exc, len(valid))

    def _valid(self, events: list[dict[str, Any]]) -> bool:
        try:
            for line, ev in enumerate(events, 1):
                wire.validate_event(ev, line=line)
        except ValidationError as exc:
            self._metrics.failures["invalid"].inc()
            self._failures.info("invalid", "proxy: a call not recorded: %s", exc)
            return False
        return True

    def _refused(self, exc: IngestError, calls: int) -> None:
        reason = (
            "spool_full"
            if exc.message.startswith("spool is full")
            else "spool_unavailable"
            if exc.status == 503
            else "invalid"
        )
        self._metrics.failures[reason].inc(calls)
        self._failures.warning(reason, "proxy: %d calls not recorded: %s", calls, exc)
