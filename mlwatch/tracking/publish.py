"""Monitoring results back to MLflow: each window's drift and KPIs as metrics of a
monitoring run, so MLflow's UI shows production next to training.

One monitoring run per (model, version), found or made by :mod:`.runs`: a child of the
version's training run when it is known, tagged ``mlwatch.model``, ``mlwatch.version``
and ``mlwatch.source_run``. The run stays RUNNING: it stands for monitoring that goes on
while the version serves, and it gains points at any time; marking it FINISHED after
each batch would cost a call per batch and show as finished a run that is still written
to. A metric's step is its window's end in Unix seconds, its
timestamp the same instant in ms, so a window's points line up across keys and runs, and
logging a point again (a retry after a lost answer, a window recomputed after a restart)
adds nothing: MLflow's SQL store keeps one row per key, step, timestamp and value. A
window whose value changed has two points at its step; MLflow orders those by value, so
the run's "latest" value of a revised newest window is the larger of the two.

:meth:`Publisher.drift` and :meth:`Publisher.kpis` only turn a report into metrics
(:mod:`.metrics_of`) and append them to a bounded queue: they never block, never raise,
and drop (counted) when the queue is full. A window recomputed with the values already
queued is skipped; one whose values changed (late labels) is logged again at its step.
One daemon thread ships the queue with ``log_batch`` (at most 1000 metrics, one call per
``min_interval_s``) and, when MLflow fails, keeps the entries and retries with
exponential backoff up to ``retry_max_s``, logging once when it starts failing and once
when it recovers.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from itertools import islice
from typing import Any, NamedTuple

from mlwatch.errors import ConfigError
from mlwatch.tracking.metrics_of import drift_metrics, kpi_metrics
from mlwatch.tracking.runs import MonitoringRuns, RunKey, error_code
from mlwatch.tracking.uris import mask

log = logging.getLogger("mlwatch.tracking")

MAX_BATCH = 1000  # MLflow's MAX_METRICS_PER_BATCH
REMEMBERED_WINDOWS = 100_000  # windows whose logged values are remembered, newest kept
_PERMANENT = {"INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST", "INVALID_STATE"}


class Entry(NamedTuple):
    """One metric value waiting for MLflow."""

    run: RunKey
    key: str
    value: float
    timestamp_ms: int
    step: int


class Publisher:
    """Logs drift and KPI reports to MLflow from a background thread (module docstring).

    ``published`` counts metric values logged, ``dropped`` values dropped (queue full, or
    still queued when :meth:`close` gave up), ``failures`` failed MLflow calls (retried);
    ``last_error`` is the last failure, credentials masked.
    """

    def __init__(
        self,
        tracking_uri: str | None,
        *,
        experiment: str = "mlwatch-monitoring",
        max_queue: int = 10_000,
        min_interval_s: float = 1.0,
        retry_max_s: float = 300.0,
        timeout_s: float = 10.0,
    ) -> None:
        if not experiment:
            raise ConfigError("experiment", "must not be empty")
        for key, value, low in (("max_queue", max_queue, 1), ("timeout_s", timeout_s, 1e-3)):
            if value < low:
                raise ConfigError(key, f"must be at least {low:g}, got {value}")
        for key, value in (("min_interval_s", min_interval_s), ("retry_max_s", retry_max_s)):
            if not value >= 0:
                raise ConfigError(key, f"must be 0 or more, got {value}")
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.max_queue = max_queue
        self.min_interval_s = min_interval_s
        self.retry_max_s = retry_max_s
        self.timeout_s = timeout_s
        self.published = 0
        self.dropped = 0
        self.failures = 0
        self.last_error: str | None = None
        self._where = mask(tracking_uri or "MLflow's default tracking URI")
        self._cond = threading.Condition()
        self._queue: deque[Entry] = deque()
        self._queued: OrderedDict[tuple[Any, ...], int] = OrderedDict()
        self._thread: threading.Thread | None = None
        self._closing = False
        self._deadline = math.inf
        self._flushing = 0
        self._dropping = False
        self._told: set[str] = set()
        # the worker's own state
        self._runs = MonitoringRuns(tracking_uri, experiment, timeout_s, self._tell)
        self._last_call = -math.inf
        self._tries = 0  # consecutive failed calls
        self._strikes = 0  # consecutive refusals of the batch at the queue's head

    def drift(
        self,
        model: str,
        version: str,
        window: tuple[int, int],
        report: dict[str, Any],
        source_run: str | None = None,
    ) -> None:
        """Queue a window's drift report (``DriftReport.to_dict()``); ``window`` is
        ``(start_us, end_us)``. Never blocks, never raises."""
        self._offer("drift", model, version, window, report, source_run, drift_metrics)

    def kpis(
        self,
        model: str,
        version: str,
        window: tuple[int, int],
        report: dict[str, Any],
        source_run: str | None = None,
    ) -> None:
        """Queue a window's KPI report (``KPIReport.to_dict()``). Never blocks, never raises."""
        self._offer("kpi", model, version, window, report, source_run, kpi_metrics)

    def _offer(
        self,
        kind: str,
        model: str,
        version: str,
        window: tuple[int, int],
        report: Any,
        source_run: str | None,
        convert: Callable[[Mapping[str, Any]], dict[str, float]],
    ) -> None:
        try:
            if hasattr(report, "to_dict"):
                report = report.to_dict()
            values = convert(report)
            end_us = int(window[1])
        except Exception as exc:  # a malformed report is the caller's bug, not a crash
            self._tell(f"bad {kind}", "MLflow results: cannot read a %s report: %r", kind, exc)
            return
        run: RunKey = (str(model), str(version), source_run or None)
        remembered = (*run, kind, end_us)
        digest = hash(tuple(sorted(values.items())))
        step, timestamp = end_us // 1_000_000, end_us // 1000
        with self._cond:
            if not values or self._queued.get(remembered) == digest:
                return
            if self._closing or len(self._queue) + len(values) > self.max_queue:
                self.dropped += len(values)
                first, self._dropping = not self._dropping, True
            else:
                self._queue.extend(Entry(run, k, v, timestamp, step) for k, v in values.items())
                self._remember(remembered, digest)
                self._dropping = first = False
                self._start()
                self._cond.notify_all()
        if first:
            log.warning(
                "MLflow results: the queue to %s is full (%d values) or closed; dropping results",
                self._where,
                self.max_queue,
            )

    def _remember(self, key: tuple[Any, ...], digest: int) -> None:
        self._queued[key] = digest
        self._queued.move_to_end(key)
        if len(self._queued) > REMEMBERED_WINDOWS:
            self._queued.popitem(last=False)

    def _tell(self, what: str, msg: str, *args: Any) -> None:
        """Log ``msg`` at WARNING the first time ``what`` happens."""
        if what not in self._told:
            self._told.add(what)
            log.warning(msg, *args)

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._work, name="mlwatch-mlflow-results", daemon=True
            )
            self._thread.start()

    def flush(self, timeout: float) -> bool:
        """Ship what is queued now, skipping the rate limit; True when the queue drained
        (everything logged) within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._flushing += 1
            self._cond.notify_all()
            try:
                while self._queue and self._thread is not None and self._thread.is_alive():
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                return not self._queue
            finally:
                self._flushing -= 1

    def close(self, timeout: float = 10.0) -> bool:
        """Ship what is queued within ``timeout`` seconds, then stop; True when nothing
        was left behind. Later reports are dropped. Idempotent."""
        with self._cond:
            if not self._closing:
                self._closing = True
                self._deadline = time.monotonic() + timeout
                self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(max(0.0, self._deadline - time.monotonic()))
        with self._cond:
            return not self._queue

    # the worker thread

    def _work(self) -> None:
        while True:
            with self._cond:
                batch = self._next_batch()
                if batch is None:
                    left, self._queue = len(self._queue), deque()
                    self.dropped += left
                    self._cond.notify_all()
                    break
            self._ship(batch)
        if left:
            log.warning("MLflow results: %d values not logged to %s at close", left, self._where)

    def _next_batch(self) -> list[Entry] | None:
        """Wait (holding the condition) until a batch may go; None when closed."""
        while True:
            now = time.monotonic()
            if self._closing and (not self._queue or now >= self._deadline):
                return None
            if not self._queue:
                self._cond.wait()
                continue
            hurry = self._closing or self._flushing > 0
            if self._tries == 0:
                gap = 0.0 if hurry else self.min_interval_s
            else:
                gap = self._backoff()
                gap = min(gap, max(self.min_interval_s, 0.5)) if hurry else gap
            wait = self._last_call + gap - now
            if wait <= 0:
                run = self._queue[0].run
                return list(islice((e for e in self._queue if e.run == run), MAX_BATCH))
            self._cond.wait(min(wait, max(0.0, self._deadline - now)))

    def _backoff(self) -> float:
        """Seconds to wait after ``_tries`` failures in a row: 1, 2, 4, … up to retry_max_s."""
        return min(self.retry_max_s, 2.0 ** min(self._tries - 1, 30))

    def _ship(self, batch: list[Entry]) -> None:
        self._last_call = time.monotonic()
        try:
            from mlflow.entities import Metric

            run_id = self._runs.run_id(batch[0].run)
            metrics = [Metric(e.key, e.value, e.timestamp_ms, e.step) for e in batch]
            self._runs.client().log_batch(run_id, metrics=metrics)
        except Exception as exc:
            self._failed(batch, exc)
            return
        recovered = self._tries > 0
        self._tries = self._strikes = 0
        self._last_call = time.monotonic()
        self._done(batch, published=True)
        if recovered:
            log.warning("MLflow results: %s answers again; logging resumed", self._where)

    def _done(self, batch: list[Entry], *, published: bool) -> None:
        """Take ``batch`` off the queue: logged, or given up on."""
        ids = {id(e) for e in batch}
        with self._cond:
            self._queue = deque(e for e in self._queue if id(e) not in ids)
            if published:
                self.published += len(batch)
            else:
                self.dropped += len(batch)
            self._cond.notify_all()

    def _failed(self, batch: list[Entry], exc: BaseException) -> None:
        """Count and keep the batch for a retry; MLflow refusing it twice (a bad value, a
        run deleted meanwhile, even after a new run was made) drops it instead."""
        self.failures += 1
        self.last_error = mask(" ".join(f"{type(exc).__name__}: {exc}".split()))[:500]
        self._tries += 1
        self._last_call = time.monotonic() + self._backoff() * (random.random() * 0.2 - 0.1)
        if self._tries == 1:
            log.warning(
                "MLflow results: %s failed (%s); retrying for as long as the queue holds",
                self._where,
                self.last_error,
            )
        if error_code(exc) in _PERMANENT:
            self._runs.forget(batch[0].run)  # the run may be gone: find or make it again
            self._strikes += 1
            if self._strikes >= 2:
                self._strikes = 0
                self._done(batch, published=False)
                log.warning(
                    "MLflow results: %s refused %d values of %s %s; dropped: %s",
                    self._where,
                    len(batch),
                    *batch[0].run[:2],
                    self.last_error,
                )
