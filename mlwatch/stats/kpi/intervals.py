"""Confidence intervals of the KPIs (``confidence=0.95`` by default).

- ``accuracy`` is a proportion: **Wilson score interval**, which keeps its coverage for
  small n and for accuracies near 0 or 1, where the normal approximation fails.
- every other KPI: **percentile bootstrap** over resamples drawn by :mod:`.estimates`.
  A sample of n rows larger than ``max_boot_n`` is resampled with m = ``max_boot_n``
  draws (an m-out-of-n bootstrap) and the deviations from the estimate v are scaled by
  ``s = sqrt(m / n)``: ``[v + s (q_lo - v), v + s (q_hi - v)]``, the plain percentile
  interval when ``m = n``. Resamples where the KPI is undefined (one class for ROC AUC,
  constant labels for R^2) are left out; with fewer than half of them defined there is
  no interval. Bounds are clipped to the KPI's range.
- ``ece`` is biased upwards, most for a well-calibrated model, where the percentile
  interval would lie above the estimate and exclude the true 0: it takes the reflected
  (basic) bootstrap interval, which corrects the bias, widened to contain the estimate.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

from mlwatch.stats.kpi.kernels import FloatArray
from mlwatch.stats.kpi.results import CLASSIFICATION_KPIS

# Natural range of every KPI: bootstrap bounds are clipped to it.
_BOUNDS: dict[str, tuple[float, float]] = {
    **{name: (0.0, 1.0) for name in CLASSIFICATION_KPIS},
    "log_loss": (0.0, math.inf),
    "brier": (0.0, 2.0),
    "mae": (0.0, math.inf),
    "rmse": (0.0, math.inf),
    "mape": (0.0, math.inf),
    "r2": (-math.inf, 1.0),
}


def _z(confidence: float) -> float:
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``successes / n``.

    Chosen for accuracy because it keeps its coverage for small windows and for
    proportions near 0 or 1, where the normal (Wald) interval collapses to a point.

    >>> [round(x, 4) for x in wilson_interval(45, 50)]
    [0.7864, 0.9565]
    """
    if n <= 0:
        raise ValueError("n must be positive")
    z = _z(confidence)
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    # exact at the ends (rounding would give 0.9999999999999998 for n of n)
    lower = 0.0 if successes <= 0 else max(0.0, centre - half)
    upper = 1.0 if successes >= n else min(1.0, centre + half)
    return lower, upper


def _percentile_interval(
    name: str, value: float, replicates: FloatArray, scale: float, confidence: float
) -> tuple[float, float] | None:
    """Bootstrap interval from replicates, deviations from ``value`` scaled by ``scale``.

    The percentile interval, except for ECE: ECE is biased upwards (it sums absolute
    values of noisy per-bin gaps), the more so the better calibrated the model, and
    there the percentile interval lies wholly above the estimate and excludes the true
    value 0. ECE takes the basic (reflected) interval ``[2v - q_hi, 2v - q_lo]``, which
    corrects for that bias, widened to contain the estimate itself.
    """
    finite = replicates[np.isfinite(replicates)]
    if finite.size < max(2, replicates.size // 2):
        return None
    alpha = 1.0 - confidence
    q_lo, q_hi = (
        value + scale * (float(q) - value) for q in np.quantile(finite, [alpha / 2, 1 - alpha / 2])
    )
    if name == "ece":
        q_lo, q_hi = min(2 * value - q_hi, value), max(2 * value - q_lo, value)
    lo_bound, hi_bound = _BOUNDS[name]
    return (min(max(q_lo, lo_bound), hi_bound), min(max(q_hi, lo_bound), hi_bound))
