"""Anytime-valid intervals for a quantile (order statistics) and for the difference of a
quantile between two groups: the latency p50 and p99 of a comparison.

For the ``q`` quantile of ``n`` values, ``1{X <= x_q}`` is a Bernoulli(q) variable; the
mixture boundary of :mod:`.sequences` with its variance ``q (1 - q)`` gives a half width
``u`` on the proportion, and the order statistics of ranks ``floor(n (q - u))`` and
``ceil(n (q + u)) `` bound the quantile (Howard and Ramdas, "Sequential estimation of
quantiles with applications to A/B-testing and best-arm identification", 2022, the
normal-mixture variant). A rank beyond the sample leaves that side open (infinite). Each
group's interval is taken at ``alpha / 2``, so that the difference interval
``[lo_B - hi_A, hi_B - lo_A]`` holds at ``alpha`` (a union bound).

>>> x = np.arange(1, 10001, dtype=float)
>>> lo, hi = quantile_interval(np.sort(x), 0.5, 0.05, tune_n=1000)
>>> bool(lo < 5000.5 < hi), hi - lo < 400
(True, True)
"""

from __future__ import annotations

import math

import numpy as np

from mlwatch.stats.canary.sequences import fixed_half_width, mixing_variance, mixture_half_width
from mlwatch.stats.kpi.kernels import FloatArray


def quantile_interval(
    ordered: FloatArray, q: float, alpha: float, *, tune_n: float, sequential: bool = True
) -> tuple[float, float]:
    """Interval for the ``q`` quantile of sorted values ``ordered`` at level ``alpha``:
    the confidence sequence, or with ``sequential=False`` the fixed-sample (normal
    approximation to the binomial) interval. Open sides are ``-inf`` / ``inf``."""
    n = len(ordered)
    if n == 0:
        return -math.inf, math.inf
    var = q * (1.0 - q) / n
    if sequential:
        u = mixture_half_width(var, mixing_variance(q * (1.0 - q), tune_n, alpha), alpha)
    else:
        u = fixed_half_width(var, alpha)
    lo_rank = math.floor(n * (q - u))  # 1-based ranks
    hi_rank = math.ceil(n * (q + u)) + 1
    lo = float(ordered[lo_rank - 1]) if lo_rank >= 1 else -math.inf
    hi = float(ordered[hi_rank - 1]) if hi_rank <= n else math.inf
    return lo, hi


def quantile_difference(
    baseline: FloatArray, candidate: FloatArray, q: float, alpha: float, *, tune_n: float
) -> tuple[float, tuple[float, float], tuple[float, float]]:
    """``(estimate, sequence, fixed)`` for the quantile of ``candidate`` minus that of
    ``baseline``; each interval is ``[lo_B - hi_A, hi_B - lo_A]`` of per-group intervals
    at ``alpha / 2``."""
    a, b = np.sort(baseline), np.sort(candidate)
    estimate = float(np.quantile(b, q) - np.quantile(a, q))
    out = []
    for sequential in (True, False):
        lo_a, hi_a = quantile_interval(a, q, alpha / 2, tune_n=tune_n, sequential=sequential)
        lo_b, hi_b = quantile_interval(b, q, alpha / 2, tune_n=tune_n, sequential=sequential)
        out.append((lo_b - hi_a, hi_b - lo_a))
    return estimate, out[0], out[1]
