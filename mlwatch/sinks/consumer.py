"""Feed every sink from the spool, one consumer thread per sink (see :mod:`.base`).

A failing sink is retried with capped, jittered backoff from its last committed
position and counted in ``mlwatch_sink_errors_total``; it never blocks ingest or the
other sinks — the spool absorbs the backlog up to its disk bound.

Health is about progress: a sink with records to deliver that has committed none for
longer than ``stall_s`` is stalled, whatever it is doing meanwhile (blocked in a write
that neither ends nor fails, such as SQLite waiting for a lock another process holds, or
backing off after errors). A slow sink that keeps committing, and an idle one, are not.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from mlwatch.errors import DeliveryError
from mlwatch.sinks.base import Batch, Sink
from mlwatch.store.spool import Record, Spool

log = logging.getLogger("mlwatch.sinks")

STALL_S = 10.0  # the default bound; the sidecar passes its own (setting sink_stall_s)


def chunks_by_bytes(records: list[Record], max_bytes: int) -> list[list[Record]]:
    """Consecutive groups of records whose payloads add up to at most ``max_bytes``
    (a single larger record forms a group of its own)."""
    groups: list[list[Record]] = []
    size = 0
    for record in records:
        if groups and size + len(record.payload) <= max_bytes:
            groups[-1].append(record)
            size += len(record.payload)
        else:
            groups.append([record])
            size = len(record.payload)
    return groups


class Consumer(threading.Thread):
    """Moves records from the spool into one sink, in order, until stopped.

    Any failure — reading the spool, exporting, writing the cursor — is retried with
    capped, jittered backoff from the sink's last committed position: a sink never
    stops for good while the sidecar runs, and never skips a record.
    """

    def __init__(
        self,
        spool: Spool,
        sink: Sink,
        *,
        on_error: Callable[[str, BaseException], None],
        stall_s: float | None = None,
    ) -> None:
        super().__init__(name=f"mlwatch-sink-{sink.name}", daemon=True)
        self.spool = spool
        self.sink = sink
        self.options = sink.options
        self.stall_s = STALL_S if stall_s is None else stall_s
        self._on_error = on_error
        self._stop_event = threading.Event()
        self._flushed = time.monotonic()
        self.healthy = True
        self.last_error: str | None = None
        self.busy_since: float | None = None  # monotonic start of the export in progress
        # monotonic time of the last commit, or of the last read that found nothing new
        self.progress_at = time.monotonic()

    def stop(self) -> None:
        self._stop_event.set()

    def state(self) -> dict[str, Any]:
        """Health as /readyz and the status endpoint show it: unhealthy after a failed
        export (until one succeeds), or when stalled (see the module docstring)."""
        now = time.monotonic()
        quiet = now - self.progress_at
        stalled = quiet > self.stall_s and self.spool.lag_bytes(self.sink.name) > 0
        error = self.last_error
        if stalled:
            busy = self.busy_since
            doing = f"export running for {now - busy:.0f} s" if busy is not None else None
            why = "; ".join(w for w in (doing, error) if w) or "waiting to retry"
            error = f"no progress for {quiet:.0f} s: {why}"
        return {
            "healthy": self.healthy and not stalled and self.is_alive(),
            "alive": self.is_alive(),
            "last_error": error,
        }

    def run(self) -> None:
        delay = 0.1
        while not self._stop_event.is_set():
            try:
                self._step()
            except Exception as exc:  # the spool keeps the data: go back and try again
                self.healthy = False
                self.last_error = f"{type(exc).__name__}: {exc}"
                self._on_error(self.sink.name, exc)
                with contextlib.suppress(Exception):
                    self.spool.rewind(self.sink.name)
                self._stop_event.wait(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, self.options.max_backoff_s)
            else:
                delay = 0.1

    def _read(self) -> list[Record]:
        """The next records, lingering up to ``linger_s`` to fill a batch."""
        opts = self.options
        records = self.spool.read(self.sink.name, opts.max_records, timeout=0.25)
        if records and opts.linger_s > 0:  # fill the batch a little longer (bulk efficiency)
            deadline = time.monotonic() + opts.linger_s
            while len(records) < opts.max_records and not self._stop_event.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                records += self.spool.read(
                    self.sink.name, opts.max_records - len(records), timeout=left
                )
        return records

    def _idle(self) -> None:
        """Nothing new in the spool: let a buffering sink write what it holds."""
        every = self.options.idle_flush_s
        if every is not None and time.monotonic() - self._flushed >= every:
            self._flushed = time.monotonic()
            self.sink.force_flush()

    def _step(self) -> None:
        records = self._read()
        if not records:
            self.progress_at = time.monotonic()  # caught up: nothing to deliver is progress
            self._idle()
            return
        for group in chunks_by_bytes(records, self.options.max_batch_bytes):
            if self._stop_event.is_set():
                return  # uncommitted records are read again at the next start
            batch = Batch()
            for record in group:
                batch.add(record.payload)
            self.busy_since = time.monotonic()
            try:
                result = self.sink.export(batch)
            finally:
                self.busy_since = None
            if not result.ok:  # the spool keeps the batch; run() backs off and retries
                raise DeliveryError(result.error or "not delivered")
            self.spool.commit(self.sink.name, group[-1])
            self.progress_at = time.monotonic()
            self.healthy = True
            self.last_error = None
