"""A bounded in-process queue and one daemon worker that ships it.

The design of OpenTelemetry's ``BatchProcessor``: the calling thread appends a tuple
to a ``collections.deque`` (atomic under the GIL, no lock) and wakes the worker only
when a batch is full; the worker also wakes every ``flush_interval_ms``. When the
queue is full the call is dropped and counted (reason ``queue_full``) — never
blocked. The worker builds events (:mod:`mlwatch.client.events`), registers new
model versions, and hands batches to one exporter; it is the only thread that
exports, so exporters need no locking.

Drop counts per (model, version, reason) travel in the ``X-Mlwatch-Dropped``
header of the next events request and are subtracted only after it succeeds.

The bound is checked before the append without a lock, so concurrent callers may
overshoot ``queue_size`` by at most the number of threads recording at that instant.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from mlwatch.client.drops import DropCounts
from mlwatch.client.events import Entry, Site, build
from mlwatch.client.exporter import Exporter, Result
from mlwatch.client.identity import Identity
from mlwatch.client.ratelimit import failures


def _pop(q: deque[Any], n: int) -> list[Any]:
    out = []
    popleft = q.popleft
    try:
        for _ in range(n):
            out.append(popleft())
    except IndexError:
        pass
    return out


class Shipper:
    """The queue, the worker and its lifecycle (flush, shutdown, fork)."""

    def __init__(self, exporter: Exporter, *, queue_size: int, batch_size: int,
                 flush_interval_s: float, retry_timeout_s: float,
                 identity_of: Callable[[Site], Identity],
                 registration_of: Callable[[Site], dict[str, Any]]) -> None:
        self.maxlen = queue_size
        self.batch_size = batch_size
        self.exporter = exporter
        self._interval = flush_interval_s
        self._retry_timeout = retry_timeout_s
        self._identity_of = identity_of
        self._registration_of = registration_of
        self._shutdown_started = False
        self._reset()

    def _reset(self) -> None:
        """Fresh state: at construction and in a forked child (the parent's queue stays behind)."""
        self.queue: deque[Entry] = deque()
        self.feedback: deque[dict[str, Any]] = deque()
        self.registrations: deque[dict[str, Any]] = deque()
        self.drops = DropCounts()
        self.wake = threading.Event()
        self._interrupt = threading.Event()
        self._lock = threading.Lock()
        self._waiters: list[threading.Event] = []
        self.thread: threading.Thread | None = None
        self._registered: set[tuple[str, str]] = set()
        self._closing = False
        self._deadline = float("inf")

    # -- calling thread ------------------------------------------------------
    def record(self, site: Site, lat_ns: int, inputs: Any, result: Any, rid: Any,
               err: str | None, rows: int) -> None:
        """The hot path: one bound check, one append, maybe one wake-up. Never blocks."""
        q = self.queue
        if len(q) < self.maxlen:
            q.append((site, time.time_ns(), lat_ns, inputs, result, rid, err, rows))
            if self.thread is None:
                self.start()
            elif len(q) >= self.batch_size and not self.wake.is_set():
                self.wake.set()
        else:
            self.drops.add(site, "queue_full", rows)

    def record_feedback(self, rec: dict[str, Any]) -> bool:
        if len(self.feedback) >= self.maxlen:
            failures.warning("feedback.queue_full", "mlwatch: feedback queue full (%d); dropping "
                             "feedback for request %s", self.maxlen, rec.get("request_id"))
            return False
        self.feedback.append(rec)
        if self.thread is None:
            self.start()
        return True

    def register(self, reg: dict[str, Any]) -> None:
        self.registrations.append(reg)
        if self.thread is None:
            self.start()

    def start(self) -> None:
        with self._lock:
            if self.thread is not None or self._closing:
                return
            thread = threading.Thread(target=self._run, name="mlwatch-shipper", daemon=True)
            try:
                thread.start()
            except RuntimeError as exc:  # e.g. "can't create new thread at interpreter shutdown"
                failures.error("shipper.start", "mlwatch: cannot start the worker: %s", exc)
                return
            self.thread = thread

    # -- worker ----------------------------------------------------------------
    def _run(self) -> None:
        while True:
            if not self._closing:
                self.wake.wait(self._interval)
                self.wake.clear()
            with self._lock:
                waiters, self._waiters = self._waiters, []
            try:
                self._drain()
            except Exception as exc:  # pragma: no cover - _drain guards its parts
                failures.error("shipper", "mlwatch: worker error: %r", exc, exc_info=True)
            for w in waiters:
                w.set()
            if self._closing:
                self._finish()
                return

    def _finish(self) -> None:
        """Last drain (what arrived meanwhile), count what is left, release the exporter."""
        try:
            self._drain()
            self._drop_leftovers()
        except Exception as exc:  # pragma: no cover - _drain guards its parts
            failures.error("shipper", "mlwatch: worker error: %r", exc, exc_info=True)
        finally:
            with contextlib.suppress(Exception):
                self.exporter.close()
            with self._lock:
                waiters, self._waiters = self._waiters, []
            for w in waiters:
                w.set()

    def _expired(self) -> bool:
        return time.monotonic() >= self._deadline

    def _export_deadline(self) -> float:
        return min(time.monotonic() + self._retry_timeout, self._deadline)

    def _drain(self) -> None:
        """Ship what is queued now (not what arrives meanwhile: flush must terminate)."""
        while self.registrations and not self._expired():
            regs = _pop(self.registrations, self.batch_size)
            res = self._send_registrations(regs)
            if res not in (Result.OK, Result.REJECTED):
                self.registrations.extendleft(reversed(regs))  # try again on the next drain
                break
        pending = len(self.queue)
        while pending > 0 and not self._expired():
            entries = _pop(self.queue, min(pending, self.batch_size))
            pending -= len(entries)
            events = build(entries, self._identity_of, self._on_build_error)
            for i in range(0, len(events), self.batch_size):
                self._ship_events(entries, events[i:i + self.batch_size])
        pending = len(self.feedback)
        while pending > 0 and not self._expired():
            recs = _pop(self.feedback, min(pending, self.batch_size))
            pending -= len(recs)
            res = self._export("feedback", recs)
            if res is not Result.OK:
                failures.warning("feedback." + res.value, "mlwatch: %d feedback records dropped "
                                 "(%s)", len(recs), res.value)

    def _export(self, kind: str, records: list[dict[str, Any]],
                dropped: list[dict[str, Any]] | None = None) -> Result:
        try:
            return self.exporter.export(kind, records, deadline=self._export_deadline(),
                                        interrupt=self._interrupt, dropped=dropped)
        except Exception as exc:
            failures.error("export." + kind, "mlwatch: exporting %s failed: %r", kind, exc,
                           exc_info=True)
            return Result.FAILED

    def _send_registrations(self, regs: list[dict[str, Any]]) -> Result:
        res = self._export("models", regs)
        if res in (Result.OK, Result.REJECTED):  # rejected: log once, do not loop on it
            self._registered.update((r["model"], r.get("version", "unknown")) for r in regs)
        return res

    def _ship_events(self, entries: list[Entry], events: list[dict[str, Any]]) -> None:
        new: dict[tuple[str, str], dict[str, Any]] = {}
        for entry in entries:
            site = entry[0]
            key = self._identity_of(site).key
            if key not in self._registered and key not in new:
                new[key] = self._registration_of(site)
        if new:
            self._send_registrations(list(new.values()))
        snap = self.drops.snapshot()
        report = DropCounts.report(snap, self._identity_of) if snap else None
        res = self._export("events", events, dropped=report or None)
        if res is Result.OK:
            if snap:
                self.drops.subtract(snap)
            return
        per_key: dict[tuple[str, str], int] = {}
        for ev in events:
            key = (ev["model"], ev["version"])
            per_key[key] = per_key.get(key, 0) + 1
        for key, n in per_key.items():
            self.drops.add(key, res.value, n)

    def _on_build_error(self, entry: Entry, exc: BaseException) -> None:
        failures.error("events.build", "mlwatch: building an event failed: %r", exc, exc_info=exc)
        self.drops.add(entry[0], "error", entry[7])

    def _drop_leftovers(self) -> None:
        left = _pop(self.queue, len(self.queue))
        for entry in left:
            self.drops.add(entry[0], "shutdown", entry[7])
        n = sum(e[7] for e in left)
        if n or self.feedback:
            failures.warning("shutdown.left", "mlwatch: shutdown deadline reached; %d events and "
                             "%d feedback records dropped", n, len(self.feedback))
            self.feedback.clear()

    # -- lifecycle ---------------------------------------------------------------
    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything queued before this call has been handled (sent or dropped)."""
        if not (self.queue or self.feedback or self.registrations):
            return True
        thread = self.thread
        if thread is None:
            self.start()
            thread = self.thread
        if thread is None or (self._closing and not thread.is_alive()):
            return False
        done = threading.Event()
        with self._lock:
            self._waiters.append(done)
        self.wake.set()
        return done.wait(timeout)

    def shutdown(self, timeout: float = 5.0) -> bool:
        """Send what is queued within ``timeout`` seconds, then stop. Idempotent."""
        deadline = time.monotonic() + timeout
        with self._lock:
            first = not self._shutdown_started
            self._shutdown_started = True
            if first:
                self._deadline = deadline
                self._closing = True
        if first:
            self._interrupt.set()  # stop waiting to retry: one attempt per remaining batch
            self.wake.set()
        thread = self.thread
        if thread is None:
            if first:  # the worker never ran (or could not start): ship from here
                self._finish()
        elif thread is not threading.current_thread():
            thread.join(max(0.0, self._deadline - time.monotonic()))
            return not thread.is_alive()
        return True

    def after_fork_in_child(self) -> None:
        """A forked child gets an empty queue, new locks and its own (lazy) worker."""
        self._reset()
        self._shutdown_started = False
        with contextlib.suppress(Exception):  # defensive: the child must come up
            self.exporter.after_fork()
