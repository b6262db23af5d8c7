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
WAKE_S = 0.5


class Recorder:
    """Owns the queue and the thread that records what it holds."""

    def __init__(
        self,
        reader: Reader,
        accept: Callable[[list[dict[str, Any]]], Any],
        metrics: ProxyMetrics,
        queue_size: int,
    ) -> None:
        self._reader = reader
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
        if not self._wake.is_set():
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
            self._wake.wait(WAKE_S)
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
        events: list[dict[str, Any]] = []
        calls = 0
        for ex in batch:
            mine = self._events(ex)
            if mine:
                events.extend(mine)
                calls += 1
        if events:
            self._append(events, calls)

    def _events(self, ex: Exchange) -> list[dict[str, Any]]:
        """One call's valid events; what is missing or refused is counted."""
        failures = self._metrics.failures
        try:
            events, misses = self._reader.events(ex)
            for line, ev in enumerate(events, 1):
                wire.validate_event(ev, line=line)
        except (CaptureError, ValidationError) as exc:
            reason = exc.reason if isinstance(exc, CaptureError) else "invalid"
            failures[reason].inc()
            self._failures.info(reason, "proxy: %s %s not recorded: %s", ex.method, ex.path, exc)
            return []
        for reason in set(misses):
            failures[reason].inc()
        return events

    def _append(self, events: list[dict[str, Any]], calls: int) -> None:
        try:
            self._accept(events)
        except IngestError as exc:
            reason = (
                "spool_full"
                if exc.message.startswith("spool is full")
                else "spool_unavailable"
                if exc.status == 503
                else "invalid"
            )
            self._metrics.failures[reason].inc(calls)
            self._failures.warning(reason, "proxy: %d calls not recorded: %s", calls, exc)
