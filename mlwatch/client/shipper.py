"""A bounded in-process queue and one daemon worker that ships it.

The design of OpenTelemetry's ``BatchProcessor``: the calling thread appends a tuple
to a ``collections.deque`` (atomic under the GIL, no lock) and wakes the worker only
when a batch is full; the worker also wakes every ``flush_interval_ms``. When the
queue is full the call is dropped and counted (reason ``queue_full``) — never
blocked. The worker builds events (:mod:`mlwatch.client.events`), registers new
model versions, and hands batches to one exporter; it is the only thread that
exports, so exporters need no locking.

The bound (``queue_size``) counts rows, not calls: a batch call of n rows takes n
slots, and one that alone exceeds the bound is dropped. It is checked before the
append without a lock on the single-event path, so concurrent callers may overshoot
it by at most the number of threads recording at that instant.

Drop counts per (model, version, reason) travel in the ``X-Mlwatch-Dropped``
header of an events request, as a report with a ``report_id`` that is resent as it
was until a request carrying it succeeds (:mod:`mlwatch.client.drops`). At shutdown,
counts still unreported go out in a last request with no events.

A failure inside the worker costs at most the calls it was handling, which are
counted as dropped (reason ``error``): one bad call site never stops the others.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from mlwatch.client.delivery import Delivery
from mlwatch.client.drops import DropCounts
from mlwatch.client.events import Entry, build
from mlwatch.client.exporter import ExportBatch, Exporter, Partial, Result, settle
from mlwatch.client.identity import Identity, fallback_key
from mlwatch.client.site import Site
from mlwatch.logs import failures

_RETRY = (Result.FAILED, Result.INTERRUPTED)  # registrations worth sending again
SHUTDOWN_MARGIN_S = 0.25  # at most: the worker's time to stop after its last export


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

    def __init__(
        self,
        exporter: Exporter,
        *,
        queue_size: int,
        batch_size: int,
        flush_interval_s: float,
        retry_timeout_s: float,
        identity_of: Callable[[Site], Identity],
        registration_of: Callable[[Site], dict[str, Any]],
    ) -> None:
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
        #: Rows queued beyond one per entry (batch calls). Rows queued = len(queue) + this.
        #: Only batch calls and the worker change it, both under ``_lock``: ``+=`` on an
        #: attribute is a read-modify-write the GIL may interleave between threads, and
        #: ``itertools.count`` adds one per ``next()`` (O(rows) per batch call). The
        #: single-event path, which ``len(queue)`` already counts, never touches it, so
        #: it stays lock-free; a batch call costs far more than an uncontended lock.
        self.extra_rows = 0
        self.feedback: deque[dict[str, Any]] = deque()
        self.registrations: deque[dict[str, Any]] = deque()
        self.drops = DropCounts()
        self.delivery = Delivery(self.drops, self.exporter.where)
        self.wake = threading.Event()
        self._interrupt = threading.Event()
        self._lock = threading.Lock()
        self._waiters: list[threading.Event] = []
        self.thread: threading.Thread | None = None
        self._registered: set[tuple[str, str]] = set()
        self._closing = False
        self._draining = False  # the worker holds records it took off the queues
        self._deadline = float("inf")
        #: When exports must end at shutdown: a little before ``_deadline``, so that the
        #: worker can still count what is left and stop by the deadline itself.
        self._send_by = float("inf")
        self._inflight: ExportBatch | None = None  # the export running now (its deadline)

    # -- calling thread ------------------------------------------------------
    def record(
        self, site: Site, lat_ns: int, inputs: Any, result: Any, rid: Any, err: str | None
    ) -> None:
        """The hot path: one bound check, one append, maybe one wake-up. Never blocks."""
        q = self.queue
        if len(q) + self.extra_rows < self.maxlen:
            q.append((site, time.time_ns(), lat_ns, inputs, result, rid, err, 1))
            if self.thread is None:
                self.start()
            elif len(q) >= self.batch_size and not self.wake.is_set():
                self.wake.set()
        else:
            self.drops.add(site, "queue_full")

    def record_rows(
        self,
        site: Site,
        lat_ns: int,
        inputs: Any,
        result: Any,
        rid: Any,
        err: str | None,
        rows: int,
    ) -> None:
        """A batch call: ``rows`` slots of the bound (one at least), or dropped whole."""
        slots = max(rows, 1)
        entry = (site, time.time_ns(), lat_ns, inputs, result, rid, err, rows)
        with self._lock:
            room = len(self.queue) + self.extra_rows + slots <= self.maxlen
            if room:
                self.queue.append(entry)
                self.extra_rows += slots - 1
        if not room:
            if rows:
                self.drops.add(site, "queue_full", rows)
        elif self.thread is None:
            self.start()
        elif len(self.queue) + self.extra_rows >= self.batch_size and not self.wake.is_set():
            self.wake.set()

    def record_feedback(self, rec: dict[str, Any]) -> bool:
        if len(self.feedback) >= self.maxlen:
            self.delivery.lost_other("feedback", 1)
            failures.warning(
                "feedback.queue_full",
                "mlwatch: feedback queue full (%d); dropping feedback for request %s",
                self.maxlen,
                rec.get("request_id"),
            )
            return False
        self.feedback.append(rec)
        if self.thread is None:
            self.start()
        return True

    def register(self, reg: dict[str, Any]) -> None:
        self.registrations.append(reg)
        if self.thread is None:
            self.start()

    def hurried(self) -> bool:
        """Whether the worker should wait for nothing optional (MLflow's first answer): the
        queue is past half its bound, or shutdown has begun."""
        return self._closing or len(self.queue) + self.extra_rows > self.maxlen // 2

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
            self.delivery.check(self._last_error())
            for w in waiters:
                w.set()
            if self._closing:
                self._finish()
                return

    def _finish(self) -> None:
        """Last drain (what arrived meanwhile), count what is left, send the last drop
        report, release the exporter."""
        try:
            self._drain()
            self._drop_leftovers()
            self._final_report()
            self.delivery.summary(self._last_error())
        except Exception as exc:  # pragma: no cover - _drain guards its parts
            failures.error("shipper", "mlwatch: worker error: %r", exc, exc_info=True)
        finally:
            with contextlib.suppress(Exception):
                self.exporter.shutdown(max(0.0, self._deadline - time.monotonic()))
            with self._lock:
                waiters, self._waiters = self._waiters, []
            for w in waiters:
                w.set()

    def _expired(self) -> bool:
        return time.monotonic() >= self._deadline

    def _export_deadline(self) -> float:
        return min(time.monotonic() + self._retry_timeout, self._send_by)

    def _take(self, n: int) -> list[Entry]:
        """Up to ``n`` entries off the queue, their rows given back to the bound."""
        entries = _pop(self.queue, n)
        extra = sum(e[7] - 1 for e in entries if e[7] > 1)
        if extra:
            with self._lock:
                self.extra_rows -= extra
        return entries

    def _drain(self) -> None:
        """Ship what is queued now (not what arrives meanwhile: flush must terminate)."""
        self._draining = True
        try:
            while self.registrations and not self._expired():
                retry = self._send_registrations(_pop(self.registrations, self.batch_size))
                if retry:
                    self.registrations.extendleft(reversed(retry))  # on the next drain
                    break
            pending = len(self.queue)
            while pending > 0 and not self._expired():
                entries = self._take(min(pending, self.batch_size))
                pending -= len(entries)
                self._ship_entries(entries)
            pending = len(self.feedback)
            while pending > 0 and not self._expired():
                recs = _pop(self.feedback, min(pending, self.batch_size))
                pending -= len(recs)
                for res, lost in settle(self._export("feedback", recs), recs)[1]:
                    self.delivery.lost_other("feedback", len(lost))
                    failures.warning(
                        "feedback." + res.value,
                        "mlwatch: %d feedback records dropped (%s)",
                        len(lost),
                        res.value,
                    )
        finally:
            self._draining = False

    def _last_error(self) -> str | None:
        """What the exporter last failed with, in its own words (None when unknown)."""
        error = self.exporter.last_error
        return error if isinstance(error, str) else None  # a test double may hold anything

    def _export(
        self, kind: str, records: list[dict[str, Any]], dropped: list[dict[str, Any]] | None = None
    ) -> Result | Partial:
        batch = ExportBatch(kind, records, self._export_deadline(), self._interrupt, dropped)
        self._inflight = batch
        batch.deadline = min(batch.deadline, self._send_by)  # a shutdown begun meanwhile
        try:
            return self.exporter.export(batch)
        except Exception as exc:
            failures.error(
                "export." + kind, "mlwatch: exporting %s failed: %r", kind, exc, exc_info=True
            )
            return Result.FAILED
        finally:
            self._inflight = None

    def _send_registrations(self, regs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Send; return those worth sending again. Rejected ones are logged once and
        marked registered, so that they do not loop."""
        lost = settle(self._export("models", regs), regs)[1]
        retry = [r for res, recs in lost if res in _RETRY for r in recs]
        rejected = sum(len(recs) for res, recs in lost if res not in _RETRY)
        if rejected:
            self.delivery.lost_other("models", rejected)
        again = {id(r) for r in retry}
        self._registered.update(
            (r["model"], r.get("version", "unknown")) for r in regs if id(r) not in again
        )
        return retry

    def _key(self, site: Site) -> tuple[str, str]:
        try:
            return self._identity_of(site).key
        except Exception:  # never let one site's identity stop the batch
            return fallback_key(site)

    def _ship_entries(self, entries: list[Entry]) -> None:
        """Build and export the events of ``entries``. Whatever fails here is counted
        as dropped (``error``), never lost silently."""
        events: list[dict[str, Any]] | None = None
        done = 0  # events handed to the exporter (and accounted for)
        try:
            self._register_new(entries)
            events = build(entries, self._identity_of, self._on_build_error)
            for i in range(0, len(events), self.batch_size):
                chunk = events[i : i + self.batch_size]
                self._ship_events(chunk)
                done = i + len(chunk)
        except Exception as exc:
            failures.error(
                "shipper", "mlwatch: shipping %d calls failed: %r", len(entries), exc, exc_info=True
            )
            if events is None:
                for entry in entries:
                    self.drops.add(entry[0], "error", entry[7])
            else:
                self.drops.add_events(events[done:], "error")

    def _register_new(self, entries: list[Entry]) -> None:
        new: dict[tuple[str, str], dict[str, Any]] = {}
        for entry in entries:
            site = entry[0]
            key = self._key(site)
            if key not in self._registered and key not in new:
                try:
                    new[key] = self._registration_of(site)
                except Exception as exc:
                    failures.error(
                        "registration",
                        "mlwatch: the registration of %s/%s failed: %r",
                        key[0],
                        key[1],
                        exc,
                    )
        if new:  # those worth sending again go with the next drain (or count at shutdown)
            self.registrations.extend(self._send_registrations(list(new.values())))

    def _ship_events(self, events: list[dict[str, Any]]) -> None:
        report = self.drops.next_report(self._identity_of)
        sent, lost = settle(self._export("events", events, dropped=report), events)
        if sent and report:
            self.drops.delivered()
        for res, recs in lost:
            self.drops.add_events(recs, res.value)
        self.delivery.delivered += len(events) - sum(len(recs) for _, recs in lost)

    def _on_build_error(self, entry: Entry, exc: BaseException) -> None:
        failures.error("events.build", "mlwatch: building an event failed: %r", exc, exc_info=exc)
        self.drops.add(entry[0], "error", entry[7])

    def _drop_leftovers(self) -> None:
        left = self._take(len(self.queue))
        for entry in left:
            self.drops.add(entry[0], "shutdown", entry[7])
        n = sum(e[7] for e in left)
        if self.feedback:
            self.delivery.lost_other("feedback", len(self.feedback))
        if self.registrations:
            self.delivery.lost_other("models", len(self.registrations))
        if n or self.feedback:
            failures.warning(
                "shutdown.left",
                "mlwatch: shutdown deadline reached; %d events and %d feedback records dropped",
                n,
                len(self.feedback),
            )
            self.feedback.clear()
        self.registrations.clear()

    def _final_report(self) -> None:
        """At shutdown, drop counts not yet reported go out in a request with no events
        (one attempt each: the unacknowledged report, then the counts made since)."""
        for _ in range(2):
            report = self.drops.next_report(self._identity_of)
            if report is None or not settle(self._export("events", [], dropped=report), [])[0]:
                return
            self.drops.delivered()

    # -- lifecycle ---------------------------------------------------------------
    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything queued before this call has been handled (sent or
        dropped) — including a batch the worker is exporting right now.

        True when that happened within ``timeout`` and no record was lost (dropped,
        rejected, given up) since the previous ``flush()`` or ``shutdown()`` answered."""
        if not (self.queue or self.feedback or self.registrations or self._draining):
            return self.delivery.answer(True)
        thread = self.thread
        if thread is None:
            self.start()
            thread = self.thread
        if thread is None or (self._closing and not thread.is_alive()):
            return self.delivery.answer(False)
        done = threading.Event()
        with self._lock:
            self._waiters.append(done)
        self.wake.set()  # the worker sets ``done`` after its next complete drain
        return self.delivery.answer(done.wait(timeout))

    def shutdown(self, timeout: float = 5.0) -> bool:
        """Send what is queued within ``timeout`` seconds, then stop. Idempotent.

        True when the worker stopped in time and no record was lost since the previous
        ``flush()`` or ``shutdown()`` answered."""
        deadline = time.monotonic() + timeout
        with self._lock:
            first = not self._shutdown_started
            self._shutdown_started = True
            if first:
                self._deadline = deadline
                self._send_by = deadline - min(SHUTDOWN_MARGIN_S, timeout / 4)
                self._closing = True
        if first:
            self._interrupt.set()  # stop waiting to retry: one attempt per remaining batch
            inflight = self._inflight
            if inflight is not None:  # a send in progress ends by the shutdown deadline
                inflight.deadline = min(inflight.deadline, self._send_by)
            self.wake.set()
        thread = self.thread
        if thread is None:
            if first:  # the worker never ran (or could not start): ship from here
                self._finish()
        elif thread is not threading.current_thread():
            thread.join(max(0.0, self._deadline - time.monotonic()))
            return self.delivery.answer(not thread.is_alive())
        return self.delivery.answer(True)

    def after_fork_in_child(self) -> None:
        """A forked child gets an empty queue, new locks and its own (lazy) worker."""
        self._reset()
        self._shutdown_started = False
        with contextlib.suppress(Exception):  # defensive: the child must come up
            self.exporter.after_fork()
