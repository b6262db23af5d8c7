"""A model spec's ``alerts`` section: the thresholds and objectives the Prometheus rules
are generated from (``mlwatch alerts build``, docs/alerting.md).

Every key is optional; a model without the section gets no rules. ::

    alerts:
      for: 10m                  # how long a threshold must be crossed before it fires
      drift: {for: 30m, share: 0.3}           # or false
      kpis: {accuracy: 0.85, log_loss: 0.45}  # below for scores, above for error KPIs
      min_samples: 200          # KPI alerts need this many labelled predictions
      no_traffic: 15m           # or false
      error_ratio: 0.05         # or false
      latency: {quantile: 0.99, threshold: 500ms}
      slo:
        availability: {objective: 0.999}
        latency: {objective: 0.99, threshold: 250ms}   # a histogram bucket bound
        quality: {objective: 0.95, tolerance: 5.0}     # tolerance: regression only
      retrain_on: [drift, quality]
      job_stale_periods: 3

The checks here need no other part of the config; those that need the model's task or
monitoring section (a KPI of the other task, a tolerance on a classifier) are made when the
rules are built, with the same kind of error naming the key.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from mlwatch.errors import ConfigError, did_you_mean
from mlwatch.settings.durations import parse_duration

#: The upper bounds of ``mlwatch_prediction_latency_seconds`` (the sidecar's
#: ``LATENCY_BUCKETS``; a test keeps them equal): a latency SLO counts the requests under
#: one of them, so its threshold must be one.
LATENCY_BOUNDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: KPIs where a larger value is worse: their alerts fire above the threshold.
ERROR_KPIS = frozenset({"log_loss", "brier", "ece", "mae", "rmse", "mape"})
#: Every KPI the scheduler exports (mlwatch.stats.kpi; a test keeps them equal).
KPI_NAMES = frozenset(
    {
        "accuracy",
        "precision_macro",
        "recall_macro",
        "f1_macro",
        "precision_weighted",
        "recall_weighted",
        "f1_weighted",
        "roc_auc",
        "r2",
        *ERROR_KPIS,
    }
)
RETRAIN_CATEGORIES = ("drift", "quality")
SLO_NAMES = ("availability", "latency", "quality")
KEYS = frozenset(
    {
        "for",
        "drift",
        "kpis",
        "min_samples",
        "no_traffic",
        "error_ratio",
        "latency",
        "slo",
        "retrain_on",
        "job_stale_periods",
    }
)


@dataclass(frozen=True)
class SLOSpec:
    """One service-level objective over a 30-day period: the share of good events."""

    name: str  # availability, latency or quality
    objective: float  # e.g. 0.999; the error budget is 1 - objective
    threshold_s: float | None = None  # latency: a good request is at most this slow


@dataclass(frozen=True)
class AlertSpec:
    """Thresholds and service-level objectives of one model's alerts."""

    for_s: float = 600.0
    drift: bool = True
    drift_for_s: float = 1800.0
    drift_share: float | None = None  # None: the monitoring section's drift_share
    kpis: tuple[tuple[str, float], ...] = ()  # (kpi, threshold), sorted by name
    min_samples: int | None = None  # None: the monitoring section's kpi.min_samples
    no_traffic_s: float | None = 900.0
    error_ratio: float | None = 0.05
    latency_quantile: float = 0.99
    latency_threshold_s: float | None = None  # None: no latency threshold alert
    slos: tuple[SLOSpec, ...] = ()
    #: Regression: a labelled prediction within this absolute distance of its label is
    #: "correct" in ``mlwatch_labelled_predictions_total{outcome}``, the sidecar reads it.
    quality_tolerance: float | None = None
    retrain_on: tuple[str, ...] = RETRAIN_CATEGORIES  # alerts labelled retrain="true"
    job_stale_periods: float = 3.0

    def slo(self, name: str) -> SLOSpec | None:
        """The objective called ``name``, if the section sets one."""
        return next((s for s in self.slos if s.name == name), None)


def parse_alerts(raw: Any, at: str, source: str) -> AlertSpec:
    """``models[i].alerts``; every error names the key."""
    sub = _mapping(raw, KEYS, at, source)
    values: dict[str, Any] = {}
    if "for" in sub:
        values["for_s"] = _duration(sub["for"], f"{at}.for", source, zero=True)
    values.update(_drift(sub.get("drift", True), f"{at}.drift", source))
    if "kpis" in sub:
        values["kpis"] = _kpis(sub["kpis"], f"{at}.kpis", source)
    if "min_samples" in sub:
        values["min_samples"] = _count(sub["min_samples"], f"{at}.min_samples", source)
    for key, field in (("no_traffic", "no_traffic_s"), ("error_ratio", "error_ratio")):
        if key in sub and sub[key] is False:
            values[field] = None
        elif key == "no_traffic" and key in sub:
            values[field] = _duration(sub[key], f"{at}.{key}", source)
        elif key in sub:
            values[field] = _ratio(sub[key], f"{at}.{key}", source)
    if "latency" in sub:
        values.update(_latency(sub["latency"], f"{at}.latency", source))
    if "slo" in sub:
        values.update(_slos(sub["slo"], f"{at}.slo", source))
    if "retrain_on" in sub:
        values["retrain_on"] = _retrain_on(sub["retrain_on"], f"{at}.retrain_on", source)
    if "job_stale_periods" in sub:
        values["job_stale_periods"] = _number(
            sub["job_stale_periods"], f"{at}.job_stale_periods", source, lo=1.0
        )
    return AlertSpec(**values)


def _mapping(raw: Any, keys: frozenset[str], at: str, source: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ConfigError(at, "expected a mapping", source=source)
    if unknown := set(raw) - keys:
        key = sorted(map(str, unknown))[0]
        raise ConfigError(f"{at}.{key}", f"unknown key{did_you_mean(key, keys)}", source=source)
    return raw


def _duration(raw: Any, at: str, source: str, *, zero: bool = False) -> float:
    """Seconds, as every duration of the config file is read; ``zero``: 0 is allowed too
    (a ``for`` of 0 fires at the first evaluation)."""
    if zero and not isinstance(raw, bool) and raw in (0, "0", "0s", "0m"):
        return 0.0
    seconds = parse_duration(raw, at, source)
    if not math.isfinite(seconds):
        raise ConfigError(at, f"expected a finite duration, got {raw!r}", source=source)
    return seconds


def _number(raw: Any, at: str, source: str, *, lo: float = 0.0) -> float:
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not math.isfinite(raw):
        raise ConfigError(at, f"expected a number, got {raw!r}", source=source)
    if raw < lo:
        raise ConfigError(at, f"must be at least {lo:g}, got {raw!r}", source=source)
    return float(raw)


def _ratio(raw: Any, at: str, source: str) -> float:
    """A share strictly between 0 and 1."""
    value = _number(raw, at, source)
    if not 0.0 < value < 1.0:
        raise ConfigError(at, f"expected a number between 0 and 1, got {raw!r}", source=source)
    return value


def _count(raw: Any, at: str, source: str) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 1:
        raise ConfigError(at, f"expected a positive integer, got {raw!r}", source=source)
    return raw


def _drift(raw: Any, at: str, source: str) -> dict[str, Any]:
    """``drift: false`` turns the drift alerts off; a mapping sets ``for`` and ``share``."""
    if raw is False:
        return {"drift": False}
    if raw is True:
        return {}
    sub = _mapping(raw, frozenset({"for", "share"}), at, source)
    values: dict[str, Any] = {}
    if "for" in sub:
        values["drift_for_s"] = _duration(sub["for"], f"{at}.for", source, zero=True)
    if "share" in sub:
        share = _number(sub["share"], f"{at}.share", source)
        if not 0.0 < share <= 1.0:
            raise ConfigError(
                f"{at}.share", f"expected a number in (0, 1], got {sub['share']!r}", source=source
            )
        values["drift_share"] = share
    return values


def _kpis(raw: Any, at: str, source: str) -> tuple[tuple[str, float], ...]:
    """``{kpi: threshold}``: the direction follows from the KPI (see :data:`ERROR_KPIS`)."""
    sub = _mapping(raw, KPI_NAMES, at, source)
    out = []
    for name in sorted(sub):
        threshold = _number(sub[name], f"{at}.{name}", source, lo=-math.inf)
        if name != "r2" and threshold < 0:
            raise ConfigError(
                f"{at}.{name}", f"must be at least 0, got {threshold!r}", source=source
            )
        out.append((name, threshold))
    return tuple(out)


def _latency(raw: Any, at: str, source: str) -> dict[str, Any]:
    sub = _mapping(raw, frozenset({"quantile", "threshold"}), at, source)
    if "threshold" not in sub:
        raise ConfigError(f"{at}.threshold", "a latency alert needs a threshold", source=source)
    values = {"latency_threshold_s": _duration(sub["threshold"], f"{at}.threshold", source)}
    if "quantile" in sub:
        values["latency_quantile"] = _ratio(sub["quantile"], f"{at}.quantile", source)
    return values


def _slos(raw: Any, at: str, source: str) -> dict[str, Any]:
    sub = _mapping(raw, frozenset(SLO_NAMES), at, source)
    slos, tolerance = [], None
    for name in SLO_NAMES:
        if name not in sub:
            continue
        keys = {"availability": {"objective"}, "latency": {"objective", "threshold"}}
        item = _mapping(
            sub[name], frozenset(keys.get(name, {"objective", "tolerance"})), f"{at}.{name}", source
        )
        if "objective" not in item:
            raise ConfigError(f"{at}.{name}.objective", "an SLO needs an objective", source=source)
        objective = _ratio(item["objective"], f"{at}.{name}.objective", source)
        threshold = None
        if name == "latency":
            threshold = _bucket(item.get("threshold"), f"{at}.latency.threshold", source)
        if "tolerance" in item:
            tolerance = _number(item["tolerance"], f"{at}.quality.tolerance", source)
        slos.append(SLOSpec(name, objective, threshold))
    return {"slos": tuple(slos), "quality_tolerance": tolerance}


def _bucket(raw: Any, at: str, source: str) -> float:
    """A latency SLO's threshold: it must be a bucket bound, since the share of requests
    under any other value cannot be read from the histogram."""
    if raw is None:
        raise ConfigError(at, "a latency SLO needs a threshold", source=source)
    seconds = _duration(raw, at, source)
    for bound in LATENCY_BOUNDS:
        if math.isclose(seconds, bound, rel_tol=1e-9):
            return bound
    bounds = ", ".join(f"{b:g}" for b in LATENCY_BOUNDS)
    raise ConfigError(
        at,
        f"must be one of the latency histogram's bucket bounds (seconds: {bounds}), got {raw!r}",
        source=source,
    )


def _retrain_on(raw: Any, at: str, source: str) -> tuple[str, ...]:
    if not isinstance(raw, list) or any(item not in RETRAIN_CATEGORIES for item in raw):
        raise ConfigError(
            at,
            f"expected a list of {' and '.join(RETRAIN_CATEGORIES)} (or []), got {raw!r}",
            source=source,
        )
    return tuple(c for c in RETRAIN_CATEGORIES if c in raw)
