"""The jobs' results as Prometheus gauges, and the retirement of series no run writes.

Names as docs/contracts.md lists them (``mlwatch_feature_drift_score{feature,method}``,
``mlwatch_feature_drift_detected{feature}``, ``mlwatch_dataset_drift_share``,
``mlwatch_dataset_drift``, ``mlwatch_model_kpi{kpi}`` with its interval and samples, and
``mlwatch_label_delay_seconds{quantile}`` of the labels behind the KPIs), with
``model``, ``version`` and ``environment`` on each: the jobs compute over the events of the
scheduler's environment only, so that is the one the gauges name. A series a run did not write — a version no longer
served, a method the auto rule no longer picks — is removed at the end of the model's
run, so a stale ``1`` never keeps an alert firing.
"""

from __future__ import annotations

import math
import threading
from typing import Any

from prometheus_client import CollectorRegistry, Gauge

from mlwatch.wire import DEFAULT_ENVIRONMENT


class ResultMetrics:
    """The result gauges of one registry."""

    def __init__(self, registry: CollectorRegistry, environment: str = DEFAULT_ENVIRONMENT) -> None:
        self.environment = environment
        self.drift_score = Gauge(
            "mlwatch_feature_drift_score",
            "Drift score of a feature in the last window (method-specific; see mlwatch.stats)",
            ["model", "environment", "version", "feature", "method"],
            registry=registry,
        )
        self.drift_detected = Gauge(
            "mlwatch_feature_drift_detected",
            "1 when the feature drifted in the last window",
            ["model", "environment", "version", "feature"],
            registry=registry,
        )
        self.drift_share = Gauge(
            "mlwatch_dataset_drift_share",
            "Share of drifted features in the last window",
            ["model", "environment", "version"],
            registry=registry,
        )
        self.dataset_drift = Gauge(
            "mlwatch_dataset_drift",
            "1 when the share of drifted features reached the model's drift_share",
            ["model", "environment", "version"],
            registry=registry,
        )
        self.kpi = Gauge(
            "mlwatch_model_kpi",
            "Model KPI of the newest window with enough labels",
            ["model", "environment", "version", "kpi"],
            registry=registry,
        )
        self.kpi_bound = Gauge(
            "mlwatch_model_kpi_interval",
            "Confidence interval of a KPI (bound lower or upper)",
            ["model", "environment", "version", "kpi", "bound"],
            registry=registry,
        )
        self.kpi_samples = Gauge(
            "mlwatch_model_kpi_samples",
            "Labelled predictions behind the KPIs",
            ["model", "environment", "version"],
            registry=registry,
        )
        self.quality = Gauge(
            "mlwatch_feature_quality_ratio",
            "Share of a feature's values in the last drift window that were missing, "
            "non-finite (NaN is missing; +-inf here), invalid (wrong type) or, for a "
            "categorical feature, categories the reference never had",
            ["model", "environment", "version", "feature", "kind"],
            registry=registry,
        )
        self.label_delay = Gauge(
            "mlwatch_label_delay_seconds",
            "Time from a prediction to its label, over the labelled predictions behind the "
            "KPIs, by quantile",
            ["model", "environment", "version", "quantile"],
            registry=registry,
        )
        self.compare_verdict = Gauge(
            "mlwatch_compare_verdict",
            "Verdict of the candidate against the baseline, per KPI and overall (kpi "
            '"overall"): -1 worse, 0 not enough data, 1 no difference, 2 better',
            ["model", "environment", "baseline", "candidate", "kpi"],
            registry=registry,
        )
        self.compare_difference = Gauge(
            "mlwatch_compare_difference",
            "Difference candidate - baseline of a KPI (bound estimate) and its anytime-valid "
            "confidence sequence (bound lower or upper)",
            ["model", "environment", "baseline", "candidate", "kpi", "bound"],
            registry=registry,
        )
        # series set by the run in progress, by (gauge, model): the drift and KPI jobs of
        # several models run at once on the scheduler's threads, each retires only its own
        self._written: dict[tuple[int, str], set[tuple[str, ...]]] = {}
        self._series: dict[int, set[tuple[str, ...]]] = {}  # every series set so far
        self._lock = threading.Lock()

    def drift(self, model: str, version: str, report: dict[str, Any]) -> None:
        """Set the drift gauges of one version from a report (``DriftReport.to_dict()``)."""
        for feature in report["features"]:
            score = feature["score"]
            self._set(
                self.drift_score,
                (model, version, feature["name"], feature["method"]),
                math.nan if score is None else score,
            )
            self._set(
                self.drift_detected,
                (model, version, feature["name"]),
                1 if feature["drifted"] else 0,
            )
        for feature in report["features"]:
            for kind, share in quality_shares(feature).items():
                self._set(self.quality, (model, version, feature["name"], kind), share)
        self._set(self.drift_share, (model, version), report["drift_share"])
        self._set(self.dataset_drift, (model, version), 1 if report["dataset_drift"] else 0)

    def kpis(self, model: str, version: str, report: Any) -> None:
        """Set the KPI gauges of one version from a ``KPIReport``."""
        for name, kpi in report.kpis.items():
            if kpi.value is None:
                continue
            self._set(self.kpi, (model, version, name), kpi.value)
            for bound in ("lower", "upper"):
                if getattr(kpi, bound) is not None:
                    self._set(self.kpi_bound, (model, version, name, bound), getattr(kpi, bound))
        self._set(self.kpi_samples, (model, version), report.n_used)

    def label_delays(self, model: str, version: str, quantiles: dict[str, float]) -> None:
        """Set the label-delay gauges of one version (quantile → seconds)."""
        for quantile, seconds in quantiles.items():
            self._set(self.label_delay, (model, version, quantile), seconds)

    def comparison(self, model: str, result: dict[str, Any]) -> None:
        """Set the compare gauges from a comparison (``Comparison.to_dict()``)."""
        from mlwatch.stats.canary import VERDICT_CODES

        pair = (model, result["baseline"], result["candidate"])
        self._set(self.compare_verdict, (*pair, "overall"), VERDICT_CODES[result["verdict"]])
        for kpi in result["kpis"]:
            self._set(self.compare_verdict, (*pair, kpi["kpi"]), VERDICT_CODES[kpi["verdict"]])
            for bound, key in (("estimate", "difference"), ("lower", "lower"), ("upper", "upper")):
                if kpi[key] is not None:
                    self._set(self.compare_difference, (*pair, kpi["kpi"], bound), kpi[key])

    def retire_compare(self, model: str) -> None:
        self._retire(model, (self.compare_verdict, self.compare_difference))

    def retire_drift(self, model: str) -> None:
        self._retire(
            model,
            (
                self.drift_score,
                self.drift_detected,
                self.drift_share,
                self.dataset_drift,
                self.quality,
            ),
        )

    def retire_kpis(self, model: str) -> None:
        self._retire(model, (self.kpi, self.kpi_bound, self.kpi_samples, self.label_delay))

    def _set(self, gauge: Gauge, labels: tuple[str, ...], value: float) -> None:
        labels = (labels[0], self.environment, *labels[1:])  # the model first, for _retire
        gauge.labels(*labels).set(value)
        with self._lock:
            self._written.setdefault((id(gauge), labels[0]), set()).add(labels)

    def _retire(self, model: str, gauges: tuple[Gauge, ...]) -> None:
        """Remove the model's series of ``gauges`` this run did not write."""
        with self._lock:
            for gauge in gauges:
                written = self._written.pop((id(gauge), model), set())
                series = self._series.setdefault(id(gauge), set())
                for labels in [s for s in series if s[0] == model and s not in written]:
                    gauge.remove(*labels)
                    series.discard(labels)
                series.update(written)


def quality_shares(feature: dict[str, Any]) -> dict[str, float]:
    """The data-quality shares of one feature of a drift report (``FeatureDrift.to_dict``)
    in its current window; none for a window without values.

    >>> quality_shares({"quality": {"current": {"count": 8, "missing": 2, "posinf": 1,
    ...     "neginf": 1, "invalid": 0}}, "unseen_count": 1})
    {'missing': 0.25, 'nonfinite': 0.25, 'invalid': 0.0, 'unseen': 0.125}
    """
    current = feature.get("quality", {}).get("current", {})
    count = current.get("count", 0)
    if not count:
        return {}
    out = {
        "missing": current["missing"] / count,
        "nonfinite": (current["posinf"] + current["neginf"]) / count,
        "invalid": current["invalid"] / count,
    }
    if "unseen_count" in feature:
        out["unseen"] = feature["unseen_count"] / count
    return out
