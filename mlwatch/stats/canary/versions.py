"""Compare a candidate version with a baseline: :func:`compare_versions`.

Every KPI that is a mean of per-row values (:mod:`.samples`), the error ratio and the
latency quantiles get a difference ``candidate - baseline``, an anytime-valid confidence
sequence (:mod:`.sequences`, :mod:`.quantiles`), the fixed-sample interval for reference
and a verdict (:mod:`.verdicts`). The overall verdict is over the *gated* KPIs; their
sequences are at ``alpha / m`` for ``m`` gated KPIs (Bonferroni), so that the chance of
any false ``better`` or ``worse`` overall stays at most ``alpha``. The predictions'
distributions are compared with the drift statistics (:mod:`mlwatch.stats.drift`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlwatch.stats.canary.quantiles import quantile_difference
from mlwatch.stats.canary.results import Comparison, Difference
from mlwatch.stats.canary.samples import (
    ERROR_RATIO,
    LATENCY_QUANTILES,
    MEAN_KPIS,
    Sample,
    kpis_of,
    row_values,
)
from mlwatch.stats.canary.sequences import difference_interval, proportion_stats
from mlwatch.stats.canary.verdicts import NOT_ENOUGH_DATA, overall, verdict


@dataclass(frozen=True)
class CompareOptions:
    """The decision rules: ``alpha`` (overall error rate of the verdict), ``margins`` per
    KPI (``delta``, in the KPI's units; 0 when absent), ``min_samples`` per group,
    ``tune_n`` (per-group sample size where the sequence is tightest) and ``gate``, the
    KPIs of the overall verdict (None: the task's per-row KPIs and the error ratio)."""

    alpha: float = 0.05
    margins: Mapping[str, float] = field(default_factory=dict)
    min_samples: int = 100
    tune_n: int = 1000
    gate: Sequence[str] | None = None

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha!r}")
        if self.min_samples < 1 or self.tune_n < 1:
            raise ValueError("min_samples and tune_n must be positive")
        if self.gate is not None and not list(self.gate):
            raise ValueError("gate: expected at least one KPI (None for the default gate)")
        known = [*MEAN_KPIS, ERROR_RATIO, *LATENCY_QUANTILES]
        for kpi, margin in self.margins.items():
            if kpi not in known:
                raise ValueError(f"margin of {kpi}: no such KPI; the KPIs are {', '.join(known)}")
            if not (isinstance(margin, (int, float)) and margin >= 0 and math.isfinite(margin)):
                raise ValueError(f"margin of {kpi} must be a number >= 0, got {margin!r}")


def compare_versions(
    baseline: Sample,
    candidate: Sample,
    options: CompareOptions | None = None,
    *,
    names: tuple[str, str] = ("baseline", "candidate"),
) -> Comparison:
    """Compare ``candidate`` (B) with ``baseline`` (A); see the module docstring."""
    opts = options or CompareOptions()
    if baseline.task != candidate.task:
        raise ValueError(f"cannot compare a {baseline.task} sample with a {candidate.task} one")
    has_proba = baseline.proba is not None and candidate.proba is not None
    kpis = [*kpis_of(baseline.task, has_proba), ERROR_RATIO, *LATENCY_QUANTILES]
    gate = list(opts.gate) if opts.gate is not None else kpis[:-2]
    unknown = [k for k in gate if k not in kpis]
    if unknown:
        raise ValueError(f"cannot gate on {', '.join(unknown)}: the KPIs are {', '.join(kpis)}")
    gated_alpha = opts.alpha / max(1, len(gate))
    diffs: dict[str, Difference] = {}
    for kpi in kpis:
        alpha = gated_alpha if kpi in gate else opts.alpha
        diffs[kpi] = _difference(kpi, baseline, candidate, opts, alpha, kpi in gate)
    return Comparison(
        baseline=names[0],
        candidate=names[1],
        task=baseline.task,
        verdict=overall(d.verdict for d in diffs.values() if d.gated),
        differences=diffs,
        prediction_drift=_prediction_drift(baseline, candidate, opts.alpha),
        counts={
            side: {"events": s.n_events, "errors": s.n_errors, "labelled": s.n_labelled}
            for side, s in (("baseline", baseline), ("candidate", candidate))
        },
        method={
            "sequence": "gaussian-mixture",
            "alpha": opts.alpha,
            "gated_alpha": gated_alpha,
            "tune_n": opts.tune_n,
            "min_samples": opts.min_samples,
        },
    )


def _difference(
    kpi: str, a: Sample, b: Sample, opts: CompareOptions, alpha: float, gated: bool
) -> Difference:
    margin = float(opts.margins.get(kpi, 0.0))
    if kpi in LATENCY_QUANTILES:
        return _quantile(
            kpi, _finite(a.latency_ms), _finite(b.latency_ms), margin, alpha, opts, gated
        )
    if kpi == ERROR_RATIO:
        stats_a = proportion_stats(a.n_errors, a.n_events)
        stats_b = proportion_stats(b.n_errors, b.n_events)
        higher = False
    else:
        stats_a = _mean_var(row_values(kpi, a), kpi == "accuracy")
        stats_b = _mean_var(row_values(kpi, b), kpi == "accuracy")
        higher = MEAN_KPIS[kpi][1]
    return _mean_difference(kpi, higher, stats_a, stats_b, margin, alpha, opts, gated)


def _finite(values: np.ndarray | None) -> np.ndarray:
    """The latencies an event has (NaN, missing, would shift every order statistic)."""
    if values is None:
        return np.zeros(0)
    x = np.asarray(values, dtype=np.float64)
    return x[np.isfinite(x)]


def _mean_var(values: np.ndarray, indicator: bool) -> tuple[int, float, float]:
    """``(n, mean, variance of one value)``; an indicator's variance is smoothed."""
    n = len(values)
    if n == 0:
        return 0, math.nan, math.nan
    if indicator:
        return proportion_stats(int(values.sum()), n)
    return n, float(values.mean()), float(values.var(ddof=1)) if n > 1 else 0.0


def _mean_difference(
    kpi: str,
    higher: bool,
    a: tuple[int, float, float],
    b: tuple[int, float, float],
    margin: float,
    alpha: float,
    opts: CompareOptions,
    gated: bool,
) -> Difference:
    (na, ma, _), (nb, mb, _) = a, b
    if min(na, nb) < opts.min_samples:
        return _too_few(kpi, higher, a, b, margin, alpha, opts, gated)
    diff, (lo, hi), (flo, fhi) = difference_interval(a, b, alpha=alpha, tune_n=opts.tune_n)
    return Difference(
        kpi, higher, ma, mb, diff, lo, hi, flo, fhi, na, nb, margin, alpha,
        verdict(lo, hi, margin, higher_is_better=higher), gated,
    )  # fmt: skip


def _too_few(
    kpi: str,
    higher: bool,
    a: tuple[int, float, float],
    b: tuple[int, float, float],
    margin: float,
    alpha: float,
    opts: CompareOptions,
    gated: bool,
) -> Difference:
    (na, ma, _), (nb, mb, _) = a, b
    diff = mb - ma if na and nb else None
    return Difference(
        kpi, higher, ma if na else None, mb if nb else None, diff, None, None, None, None, na, nb,
        margin, alpha, NOT_ENOUGH_DATA, gated,
        f"{min(na, nb)} rows in the smaller group, fewer than min_samples={opts.min_samples}",
    )  # fmt: skip


def _quantile(
    kpi: str,
    xa: np.ndarray,
    xb: np.ndarray,
    margin: float,
    alpha: float,
    opts: CompareOptions,
    gated: bool,
) -> Difference:
    q = LATENCY_QUANTILES[kpi]
    na, nb = len(xa), len(xb)
    if min(na, nb) < opts.min_samples:
        va = float(np.quantile(xa, q)) if na else math.nan
        vb = float(np.quantile(xb, q)) if nb else math.nan
        return _too_few(kpi, False, (na, va, 0.0), (nb, vb, 0.0), margin, alpha, opts, gated)
    est, (lo, hi), (flo, fhi) = quantile_difference(xa, xb, q, alpha, tune_n=opts.tune_n)
    va = float(np.quantile(xa, q))
    return Difference(
        kpi, False, va, va + est, est, lo, hi, flo, fhi, na, nb, margin, alpha,
        verdict(lo, hi, margin, higher_is_better=False), gated,
    )  # fmt: skip


def _prediction_drift(a: Sample, b: Sample, alpha: float) -> dict[str, Any] | None:
    """The drift of the candidate's predictions from the baseline's (the drift report's
    feature entry of column ``prediction``), None without predictions on a side."""
    from mlwatch.stats.drift import compare

    pa, pb = a.predicted_values(), b.predicted_values()
    if not len(pa) or not len(pb):
        return None
    kind = "numeric" if a.task == "regression" else "categorical"
    report = compare(
        {"prediction": pa}, {"prediction": pb}, types={"prediction": kind}, alpha=alpha
    )
    feature: dict[str, Any] = report.to_dict()["features"][0]
    return feature
