"""The sidecar's Prometheus metrics, updated once per batch.

Names follow docs/contracts.md (base units, ``_total`` counters, ``model``, ``version`` and
``environment`` on every model metric). The environment is the event's; records that
carry none (feedback, registrations, drop reports) count in the sidecar's own. The per-model series are kept in plain dicts under one
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
from mlwatch.wire import DEFAULT_ENVIRONMENT

# 1 ms to 10 s, as the issue asks; seconds are the base unit.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Regression outputs without a model spec's value_buckets: symmetric, roughly logarithmic.
VALUE_BUCKETS = (-1000.0, -100.0, -10.0, -1.0, -0.1, 0.0, 0.1, 1.0, 10.0, 100.0, 1000.0)
MAX_CLASSES = 100  # per model and version; beyond it a class is counted as "__other__"
#: The labels of every model series, and a series' key in the counters below.
SERIES_LABELS = ("model", "version", "environment")
Series = tuple[str, str, str]


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
        environment: str = DEFAULT_ENVIRONMENT,
    ) -> None:
        self.environment = environment  # of feedback, registrations and drop reports
        self._task_of = task_of  # model name -> "classification" | "regression" | None
        self._buckets_of = buckets_of  # model name -> its value_buckets, None: VALUE_BUCKETS
        self._lock = threading.Lock()
        # keys start with (model, version, environment), the labels of every model metric
        self._predictions: dict[tuple[str, str, str, str], int] = defaultdict(int)
        self._latency: dict[Series, _Histogram] = {}
        self._values: dict[Series, _Histogram] = {}
        self._classes: dict[Series, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self._info: dict[tuple[str, str, str, str, str], int] = {}
        self._dropped: dict[tuple[str, str, str, str], int] = defaultdict(int)
        self._feedback: dict[tuple[str, str], int] = defaultdict(int)
        self._labelled: dict[tuple[str, str, str, str], int] = defaultdict(int)

    def observe_events(self, events: list[dict[str, Any]]) -> None:
        """Fold a batch of validated events into the metrics."""
        by_key: dict[Series, list[dict[str, Any]]] = defaultdict(list)
        for ev in events:
            by_key[(ev["model"], ev["version"], ev.get("environment") or self.environment)].append(
                ev
            )
        with self._lock:
            for key, evs in by_key.items():
                model, version, env = key
                hist = self._latency.get(key)
                if hist is None:
                    hist = self._latency[key] = _Histogram(LATENCY_BUCKETS)
                hist.observe_many(ev["latency_ms"] / 1000.0 for ev in evs)
                task = self._task_of(model)
                classes = self._classes[key]
                numeric: list[float] = []
                for ev in evs:
                    self._predictions[(model, version, env, ev["status"])] += 1
                    self._info[
                        (model, version, env, ev.get("code_version") or "", ev.get("run_id") or "")
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
        ``/metrics`` shows it rather than zeros. Latency and value histograms start empty.

        Only the sidecar's own environment's: the rows of another one (stored as
        ``default`` before the deployment set its environment, or a stray client's) would
        be counters that never move again, and ``MlwatchNoTraffic`` (by model and
        environment) would fire for that environment until retention purged its rows.
        Its events still count from zero when they come."""
        own = self.environment
        with self._lock:
            for key, n in totals.predictions.items():
                if key[2] == own:
                    self._predictions[key] += n
            for (model, version, env, name), n in sorted(
                totals.classes.items(), key=lambda kv: -kv[1]
            ):
                if env != own or self._task_of(model) == "regression":
                    continue
                classes = self._classes[(model, version, env)]
                if name not in classes and len(classes) >= MAX_CLASSES:
                    name = "__other__"
                classes[name] += n
            for model, n in totals.feedback.items():
                self._feedback[(model, self.environment)] += n
            for model, version, env, code, run in totals.info:
                if env in ("", own):  # "": a registration, the sidecar's own
                    self._info[(model, version, own, code, run)] = 1

    def observe_registration(self, reg: dict[str, Any]) -> None:
        with self._lock:
            self._info[
                (
                    reg["model"],
                    reg["version"],
                    self.environment,
                    reg.get("code_version") or "",
                    reg.get("run_id") or "",
                )
            ] = 1

    def observe_feedback(self, records: list[dict[str, Any]]) -> None:
        with self._lock:
            for rec in records:
                self._feedback[(rec["model"], self.environment)] += 1

    def observe_outcomes(self, series: Series, right: int, wrong: int) -> None:
        """Labelled predictions of one (model, version, environment) that were right or
        wrong (a quality SLO burns on these)."""
        with self._lock:
            self._labelled[(*series, "correct")] += right
            self._labelled[(*series, "wrong")] += wrong

    def observe_drops(self, drops: Iterable[tuple[str, str, str, int]]) -> None:
        with self._lock:
            for model, version, reason, count in drops:
                self._dropped[(model, version, self.environment, reason)] += count

    def collect(self) -> Iterator[Any]:
        with self._lock:
            yield _counter(
                "mlwatch_predictions",
                "Predictions recorded, by outcome.",
                "status",
                self._predictions,
            )
            yield _histograms(
                "mlwatch_prediction_latency_seconds",
                "Latency of the monitored call.",
                self._latency,
            )
            yield _histograms(
                "mlwatch_prediction_value",
                "Predicted values of regression models.",
                self._values,
                with_count=True,
            )
            classes = {
                (*series, name): n
                for series, counts in self._classes.items()
                for name, n in counts.items()
            }
            yield _counter(
                "mlwatch_predicted_class",
                "Predicted classes of classification models.",
                "class",
                classes,
            )
            info = GaugeMetricFamily(
                "mlwatch_model_info",
                "Model versions seen, with code version and run id.",
                labels=[*SERIES_LABELS, "code_version", "run_id"],
            )
            for info_key, one in sorted(self._info.items()):
                info.add_metric(list(info_key), one)
            yield info
            yield _counter(
                "mlwatch_events_dropped",
                "Events lost before the sidecar, by reason (reported by clients).",
                "reason",
                self._dropped,
            )
            feedback = CounterMetricFamily(
                "mlwatch_feedback",
                "Ground-truth records received.",
                labels=["model", "environment"],
            )
            for key, n in sorted(self._feedback.items()):
                feedback.add_metric(list(key), n)
            yield feedback
            yield _counter(
                "mlwatch_labelled_predictions",
                "Predictions joined to their ground truth, by outcome (correct or wrong).",
                "outcome",
                self._labelled,
            )


def _counter(
    name: str, doc: str, label: str, counts: dict[tuple[str, str, str, str], int]
) -> CounterMetricFamily:
    """A counter family of model series with one more label."""
    family = CounterMetricFamily(name, doc, labels=[*SERIES_LABELS, label])
    for key, n in sorted(counts.items()):
        family.add_metric(list(key), n)
    return family


def _histograms(
    name: str, doc: str, hists: dict[Series, _Histogram], *, with_count: bool = False
) -> HistogramMetricFamily:
    """A histogram family of model series. ``with_count``: prometheus_client leaves out
    _count/_sum when a bucket is negative (an OpenMetrics rule); the 0.0.4 text format we
    serve allows them, and regression outputs need both for rates and means."""
    family = HistogramMetricFamily(name, doc, labels=list(SERIES_LABELS))
    for series, hist in sorted(hists.items()):
        buckets = hist.family_buckets()
        family.add_metric(list(series), buckets, hist.sum)
        if with_count:
            labels = dict(zip(SERIES_LABELS, series, strict=True))
            family.samples.append(Sample(f"{name}_count", labels, buckets[-1][1]))
            family.samples.append(Sample(f"{name}_sum", labels, hist.sum))
    return family


class SidecarMetrics:
    """Everything the sidecar exports, on one registry."""

    def __init__(
        self,
        registry: CollectorRegistry,
        task_of: Callable[[str], str | None],
        buckets_of: Callable[[str], tuple[float, ...] | None] = lambda model: None,
        environment: str = DEFAULT_ENVIRONMENT,
    ) -> None:
        self.registry = registry
        self.models = ModelMetrics(task_of, buckets_of, environment)
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
