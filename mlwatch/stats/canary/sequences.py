"""Anytime-valid confidence sequences for a difference of two means, and the fixed-sample
interval they are compared with.

The sequence is the Gaussian-mixture boundary (Robbins' normal mixture) applied to the
difference estimate ``d = mean_B - mean_A`` with estimated variance
``V = s_A^2 / n_A + s_B^2 / n_B``: the mixture SPRT of Johari et al. ("Always valid
inference", 2022), which for equal group sizes is the asymptotic confidence sequence of
Waudby-Smith et al. ("Time-uniform central limit theory and asymptotic confidence
sequences", 2023, Theorem 2.2 with ``rho``):

    d  +-  sqrt( V (V + tau^2) / tau^2  *  ( ln((V + tau^2) / V) - 2 ln(alpha) ) )

It holds at every sample size at once, so it may be looked at after every window without
inflating the error rate; the fixed-sample interval ``d +- z_{1-alpha/2} sqrt(V)`` may not.
``tau^2`` is the mixing variance; :func:`mixing_variance` tunes it so that the sequence is
tightest when each group holds ``tune_n`` observations.

>>> round(mixture_half_width(0.25 / 1000, mixing_variance(0.25, 1000, 0.05), 0.05), 4)
0.048
>>> round(fixed_half_width(0.25 / 1000, 0.05), 4)
0.031
"""

from __future__ import annotations

import math
from statistics import NormalDist


def mixing_variance(unit_variance: float, tune_n: float, alpha: float) -> float:
    """``tau^2 = rho^2 * unit_variance``, with ``rho^2 = (-2 ln a + ln(1 - 2 ln a)) / tune_n``.

    ``unit_variance`` is the variance of one observation of the difference (``s_A^2 +
    s_B^2`` for two groups of equal size): with it the boundary is scale-free, and
    ``rho`` is the value of Waudby-Smith et al. (2023, eq. 14) that minimises the width at
    ``tune_n`` observations per group. Widths at other sample sizes are a little larger.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    if tune_n <= 0:
        raise ValueError(f"tune_n must be positive, got {tune_n!r}")
    log_a = -2.0 * math.log(alpha)
    rho2 = (log_a + math.log(1.0 + log_a)) / tune_n
    return rho2 * unit_variance


def mixture_half_width(variance: float, tau2: float, alpha: float) -> float:
    """Half width of the two-sided Gaussian-mixture confidence sequence at ``alpha``, for an
    estimate of variance ``variance`` (0 when both groups are constant: then exact)."""
    if variance <= 0.0:
        return 0.0
    if tau2 <= 0.0:
        return math.inf
    radicand = (
        variance
        * (variance + tau2)
        / tau2
        * (math.log((variance + tau2) / variance) - 2.0 * math.log(alpha))
    )
    return math.sqrt(radicand)


def fixed_half_width(variance: float, alpha: float) -> float:
    """Half width of the fixed-sample (Wald) interval ``z_{1 - alpha/2} sqrt(variance)``:
    valid when looked at once, at a sample size fixed in advance."""
    return NormalDist().inv_cdf(1.0 - alpha / 2.0) * math.sqrt(max(variance, 0.0))


def difference_interval(
    baseline: tuple[int, float, float],
    candidate: tuple[int, float, float],
    *,
    alpha: float,
    tune_n: float,
) -> tuple[float, tuple[float, float], tuple[float, float]]:
    """``(d, sequence, fixed)`` for ``d = mean_B - mean_A`` of two groups, each given as
    ``(n, mean, variance of one value)``: the confidence sequence at ``alpha`` tuned for
    ``tune_n`` per group, and the fixed-sample interval."""
    (na, ma, va), (nb, mb, vb) = baseline, candidate
    diff, var = mb - ma, va / na + vb / nb
    half = mixture_half_width(var, mixing_variance(va + vb, tune_n, alpha), alpha)
    fixed = fixed_half_width(var, alpha)
    return diff, (diff - half, diff + half), (diff - fixed, diff + fixed)


def proportion_stats(k: int, n: int) -> tuple[int, float, float]:
    """A proportion's ``(n, k/n, p~(1 - p~))`` with ``p~ = (k + 1)/(n + 2)``: all-correct
    (or error-free) groups keep a variance above 0, so that a small sample never gives a
    zero-width sequence."""
    if n == 0:
        return 0, math.nan, math.nan
    smoothed = (k + 1) / (n + 2)
    return n, k / n, smoothed * (1.0 - smoothed)
