"""The sidecar's Prometheus metrics, updated once per batch.

Names follow docs/contracts.md (base units, ``_total`` counters, ``model`` and ``version``
on every model metric). The per-model series are kept in plain dicts under one
lock and exposed through a custom collector, because the sidecar counts tens of
thousands of events a second: a batch is folded into the counters with one lock
acquisition instead of one ``observe()`` per event.

The registry is injectable so tests build their own.
"""

from __future__ import annotations

import bisect
import math
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from mlwatch.store.totals import StoreTotals

# 1 ms to 10 s, as the issue asks; seconds are the base unit.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Regression outputs without a model spec's value_buckets: symmetric, roughly logarithmic.
VALUE_BUCKETS = (-1000.0, -100.0, -10.0, -1.0, -0.1, 0.0, 0.1, 1.0, 10.0, 100.0, 1000.0)
MAX_CLASSES = 100  # per model and version; beyond it a class is counted as "__other__"


class _Histogram:
    __slots__ = ("buckets", "counts", "sum")

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.sum = 0.0

    def observe_many(self, values: Iterable[float]) -> None:
        buckets, counts = self.buckets, self.counts
        total = 0.0
        for v in values:
            counts[bisect.bisect_left(buckets, v)] += 1
            total += v
        self.sum += total

    def family_buckets(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip((*self.buckets, math.inf), self.counts, strict=True):
            running += count
            out.append(("+Inf" if bound == math.inf else repr(bound), running))
        return out


class ModelMetrics(Collector):
    """Per-model counters and histograms, folded in by batch."""

    def __init__(
        self,
        task_of: Callable[[str], str | None],
        buckets_of: Callable[[str], tuple[float, ...] | None] = lambda model: None,
    ) -> None:
        self._task_of = task_of  # model name -> "classification" | "regression" | None
        self._buckets_of = buckets_of  # model name -> its value_buckets, None: VALUE_BUCKETS
        self._lock = threading.Lock()
        self._predictions: dict[tuple[str, str, str], int] = defaultdict(int)
        self._latency: dict[tuple[str, str], _Histogram] = {}
        self._values: dict[tuple[str, str], _Histogram] = {}
        self._classes: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self._info: dict[tuple[str, str, str, str], int] = {}
        self._dropped: dict[tuple[str, str, str], int] = defaultdict(int)
        self._feedback: dict[str, int] = defaultdict(int)
        self._labelled: dict[tuple[str, str, str], int] = defaultdict(int)

    def observe_events(self, events: list[dict[str, Any]]) -> None:
        """Fold a batch of validated events into the metrics."""
        by_key: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        for ev in events:
            by_key[(ev["model"], ev["version"])].append(ev)
        with self._lock:
            for key, evs in by_key.items():
                model, version = key
                hist = self._latency.get(key)
                if hist is None:
                    hist = self._latency[key] = _Histogram(LATENCY_BUCKETS)
                hist.observe_many(ev["latency_ms"] / 1000.0 for ev in evs)
                task = self._task_of(model)
                classes = self._classes[key]
                numeric: list[float] = []
                for ev in evs:
                    self._predictions[(model, version, ev["status"])] += 1
                    self._info[
                        (model, version, ev.get("code_version") or "", ev.get("run_id") or "")
                    ] = 1
                    pred = ev.get("prediction")
                    if ev["status"] != "ok" or pred is None or isinstance(pred, (list, dict)):
                        continue
                    if task == "regression" or (task is None and type(pred) is float):
                        if isinstance(pred, (int, float)) and not isinstance(pred, bool):
                            numeric.append(float(pred))
                    else:
                        name = str(pred).lower() if isinstance(pred, bool) else str(pred)
                        if name not in classes and len(classes) >= MAX_CLASSES:
                            name = "__other__"
                        classes[name] += 1
                if numeric:
                    values = self._values.get(key)
                    if values is None:
                        buckets = self._buckets_of(model) or VALUE_BUCKETS
                        values = self._values[key] = _Histogram(buckets)
                    values.observe_many(numeric)

    def restore(self, totals: StoreTotals) -> None:
        """Start the counters from what the store holds (a restarted sidecar), so that
        ``/metrics`` shows it rather than zeros. Latency and value histograms start empty."""
        with self._lock:
            for key, n in totals.predictions.items():
                self._predictions[key] += n
            for (model, version, name), n in sorted(totals.classes.items(), key=lambda kv: -kv[1]):
                if self._task_of(model) == "regression":
                    continue
                classes = self._classes[(model, version)]
                if name not in classes and len(classes) >= MAX_CLASSES:
                    name = "__other__"
                classes[name] += n
            for model, n in totals.feedback.items():
                self._feedback[model] += n
            for info in totals.info:
                self._info[info] = 1

    def observe_registration(self, reg: dict[str, Any]) -> None:
        with self._lock:
            self._info[
                (
                    reg["model"],
                    reg["version"],
                    reg.get("code_version") or "",
                    reg.get("run_id") or "",
                )
            ] = 1

    def observe_feedback(self, records: list[dict[str, Any]]) -> None:
        with self._lock:
            for rec in records:
                self._feedback[rec["model"]] += 1

    def observe_outcomes(self, model: str, version: str, right: int, wrong: int) -> None:
        """Labelled predictions that were right or wrong (a quality SLO burns on these)."""
        with self._lock:
            self._labelled[(model, version, "correct")] += right
            self._labelled[(model, version, "wrong")] += wrong

    def observe_drops(self, drops: Iterable[tuple[str, str, str, int]]) -> None:
        with self._lock:
            for model, version, reason, count in drops:
                self._dropped[(model, version, reason)] += count

    def collect(self) -> Iterator[Any]:
        with self._lock:
            predictions = CounterMetricFamily(
                "mlwatch_predictions",
                "Predictions recorded, by outcome.",
                labels=["model", "version", "status"],
            )
            for (model, version, status), n in sorted(self._predictions.items()):
                predictions.add_metric([model, version, status], n)
            latency = HistogramMetricFamily(
                "mlwatch_prediction_latency_seconds",
                "Latency of the monitored call.",
                labels=["model", "version"],
            )
            for (model, version), hist in sorted(self._latency.items()):
                latency.add_metric([model, version], hist.family_buckets(), hist.sum)
            values = HistogramMetricFamily(
                "mlwatch_prediction_value",
                "Predicted values of regression models.",
                labels=["model", "version"],
            )
            for (model, version), hist in sorted(self._values.items()):
                buckets = hist.family_buckets()
                values.add_metric([model, version], buckets, hist.sum)
                # prometheus_client leaves out _count/_sum when a bucket is negative
                # (an OpenMetrics rule); the 0.0.4 text format we serve allows them, and
                # regression outputs need both for rates and means.
                labels = {"model": model, "version": version}
                values.samples.append(
                    Sample("mlwatch_prediction_value_count", labels, buckets[-1][1])
                )
                values.samples.append(Sample("mlwatch_prediction_value_sum", labels, hist.sum))
            classes = CounterMetricFamily(
                "mlwatch_predicted_class",
                "Predicted classes of classification models.",
                labels=["model", "version", "class"],
            )
            for (model, version), counts in sorted(self._classes.items()):
                for name, n in sorted(counts.items()):
                    classes.add_metric([model, version, name], n)
            info = GaugeMetricFamily(
                "mlwatch_model_info",
                "Model versions seen, with code version and run id.",
                labels=["model", "version", "code_version", "run_id"],
            )
            for info_key, one in sorted(self._info.items()):
                info.add_metric(list(info_key), one)
            dropped = CounterMetricFamily(
                "mlwatch_events_dropped",
                "Events lost before the sidecar, by reason (reported by clients).",
                labels=["model", "version", "reason"],
            )
            for labels3, n in sorted(self._dropped.items()):
                dropped.add_metric(list(labels3), n)
            feedback = CounterMetricFamily(
                "mlwatch_feedback", "Ground-truth records received.", labels=["model"]
            )
            for model, n in sorted(self._feedback.items()):
                feedback.add_metric([model], n)
            labelled = CounterMetricFamily(
                "mlwatch_labelled_predictions",
                "Predictions joined to their ground truth, by outcome (correct or wrong).",
                labels=["model", "version", "outcome"],
            )
            for labels3, n in sorted(self._labelled.items()):
                labelled.add_metric(list(labels3), n)
        yield from (predictions, latency, values, classes, info, dropped, feedback, labelled)


class SidecarMetrics:
    """Everything the sidecar exports, on one registry."""

    def __init__(
        self,
        registry: CollectorRegistry,
        task_of: Callable[[str], str | None],
        buckets_of: Callable[[str], tuple[float, ...] | None] = lambda model: None,
    ) -> None:
        self.registry = registry
        self.models = ModelMetrics(task_of, buckets_of)
        registry.register(self.models)
        self.spool_bytes = Gauge(
            "mlwatch_spool_bytes", "Bytes of spool segments on disk.", registry=registry
        )
        self.spool_corrupt = Counter(
            "mlwatch_spool_corrupt_records",
            "Torn or corrupt spool records found at recovery.",
            registry=registry,
        )
        self.sink_errors = Counter(
            "mlwatch_sink_errors",
            "Failed deliveries to a sink (retried).",
            ["sink"],
            registry=registry,
        )
        self.sink_lag = Gauge(
            "mlwatch_sink_lag_bytes",
            "Spool bytes a sink has not consumed.",
            ["sink"],
            registry=registry,
        )
        self.rejected = Counter(
            "mlwatch_requests_rejected",
            "Requests refused, by HTTP status.",
            ["status"],
            registry=registry,
        )
        self.aborted = Counter(
            "mlwatch_requests_aborted",
            "Requests whose client went away before its body was read whole.",
            registry=registry,
        )
