"""Numeric kernels: statistics on sorted samples, and their estimates from histograms.

Why sorted samples: every numeric statistic here is a function of the two empirical
CDFs, and one ``np.sort`` per column (about 9 ms for a million float64 on this machine)
gives them all: the pooled order comes from a stable merge of the two sorted runs, the
KS statistic and the Wasserstein integral from one cumulative count over it, the
reference-quantile bin counts from ``searchsorted`` of a few edges. SciPy's functions
re-sort and search the whole pooled sample once per statistic; here a column is sorted
once and reused.

Histograms are the profile side (see :mod:`mlwatch.stats.numeric_profile`): counts on fixed
edges taken from the reference, bin ``i`` being ``[edges[i-1], edges[i])`` with open
outer bins. Their estimates come with a bound (see :func:`ks_from_histograms` and
:func:`wasserstein_from_histograms`).

>>> a = np.sort(np.array([0.1, 0.4, 0.5, 0.9])); b = np.sort(np.array([0.3, 0.6, 0.8]))
>>> m = merge_sorted(a, b)
>>> round(ks_statistic(m, a.size, b.size), 6), round(wasserstein_from_merged(m, 4, 3), 6)
(0.416667, 0.158333)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import special
from scipy import stats as sps

try:  # the exact two-sample KS probability, exactly as scipy.stats.ks_2samp computes it
    from scipy.stats._stats_py import _attempt_exact_2kssamp as _scipy_exact_ks
except ImportError:  # pragma: no cover - a SciPy that moved it; the tests compare with ks_2samp
    _scipy_exact_ks = None

KS_MAX_EXACT_N = 10_000
"""``ks_2samp``'s ``MAX_AUTO_N``: the exact distribution when both samples are this small."""


@dataclass(frozen=True)
class Merged:
    """The pooled sample of two sorted samples, one entry per distinct value.

    ``ca[j]`` / ``cb[j]`` count the values of each sample that are ``<= values[j]``:
    the two empirical CDFs (times n) at every point where either can jump.
    """

    values: np.ndarray
    ca: np.ndarray
    cb: np.ndarray


def merge_sorted(a: np.ndarray, b: np.ndarray) -> Merged:
    """Merge two sorted samples: a stable argsort of the two concatenated runs (timsort merge)."""
    n = a.size
    z = np.concatenate((a, b))
    order = np.argsort(z, kind="stable")
    zs = z[order]
    ca_all = np.cumsum(order < n, dtype=np.int64)
    last = np.empty(zs.size, dtype=bool)
    np.not_equal(zs[1:], zs[:-1], out=last[:-1])
    last[-1] = True
    idx = np.flatnonzero(last)
    ca = ca_all[idx]
    return Merged(zs[idx], ca, idx.astype(np.int64) + 1 - ca)


def ks_statistic(merged: Merged, n1: int, n2: int) -> float:
    """``D = sup |F1 - F2|``, computed as ``scipy.stats.ks_2samp`` does (same float operations)."""
    diff = merged.ca / n1 - merged.cb / n2
    max_s = float(diff.max())
    min_s = float(np.clip(-diff.min(), 0, 1))
    return min_s if min_s > max_s else max_s


def ks_pvalue(d: float, n1: int, n2: int) -> tuple[float, float, str]:
    """Two-sided KS p-value for statistic ``d``: ``(d, p, mode)`` as ``ks_2samp(method='auto')``.

    Exact (``mode='exact'``, and ``d`` rounded to the lattice of attainable values, as
    SciPy does) when both sizes are at most 10,000, else Smirnov's asymptotic
    distribution ``kstwo.sf(d, round(n1 n2 / (n1 + n2)))``. Like SciPy, an exact
    computation that fails numerically falls back to the asymptotic one (without
    SciPy's warning: ``mode`` says which was used).
    """
    mode = "exact" if max(n1, n2) <= KS_MAX_EXACT_N else "asymp"
    prob = math.nan
    if mode == "exact":
        if _scipy_exact_ks is None:  # pragma: no cover
            mode = "asymp"
        else:
            success, d, prob = _scipy_exact_ks(n1, n2, math.gcd(n1, n2), d, "two-sided")
            if not success:
                mode = "asymp"
    if mode == "asymp":
        m, n = sorted([float(n1), float(n2)], reverse=True)
        en = m * n / (m + n)
        prob = kstwo_sf(d, int(np.round(en)))
    return float(d), float(np.clip(prob, 0, 1)), mode


_SMIRNOV_MAX_COMPUTE_N = 1_000_000  # SciPy's (xsf/cephes): beyond it, an approximation


def kstwo_sf(d: float, n: int) -> float:
    """``scipy.stats.kstwo.sf(d, n)``, the two-sided KS survival function, computed faster.

    SciPy computes the range ``2.2 <= n d² < 370`` as ``2 * smirnov(n, d)``, whose
    exact series it sums term by term in double-double arithmetic: about 0.4 s at
    ``n = 500,000``, which would dominate a drift report on large samples. There (and
    only there, for ``n > 10,000``) this sums the same series vectorised in log space
    (:func:`smirnov_sf`), agreeing with SciPy to about 1e-9 relative (the tests check it);
    every other case is delegated to SciPy.
    """
    nxsq = n * d * d
    if n <= 10_000 or not (0 < d < 0.5) or n * d <= 1 or n * d >= n - 1 or nxsq < 2.2:
        return float(sps.kstwo.sf(d, n))
    if nxsq >= 370.0:
        return 0.0
    return float(np.clip(2.0 * smirnov_sf(n, d), 0.0, 1.0))


def smirnov_sf(n: int, x: float) -> float:
    """One-sided Smirnov ``P(D+_n >= x)`` (``scipy.special.smirnov``) for ``1/n < x < 1 - 1/n``.

    The Birnbaum-Tingey series ``x Σ_j C(n, j) (1 - x - j/n)^(n-j) (x + j/n)^(j-1)``,
    ``j = 0 .. floor(n (1 - x))``, with every term computed in log space at once. Above
    ``n = 1,000,000`` SciPy uses ``exp(-(6 n x + 1)² / (18 n))`` instead; so does this.
    """
    if n > _SMIRNOV_MAX_COMPUTE_N:
        logp = -((6.0 * n * x + 1) ** 2) / 18.0 / n
        return math.exp(logp) if logp < -math.log(2) else 1.0 + math.expm1(logp)
    nx = n * x
    jmax = math.floor(n - nx)
    if jmax == n - nx:  # the last term is 0**(n - j): leave it out, as SciPy does
        jmax -= 1
    j = np.arange(0, jmax + 1, dtype=np.float64)
    log_terms = (
        special.gammaln(n + 1.0)
        - special.gammaln(j + 1.0)
        - special.gammaln(n - j + 1.0)
        + (n - j) * np.log((n - j - nx) / n)
        + (j - 1) * np.log((j + nx) / n)
    )
    top = float(log_terms.max())
    return float(x * math.exp(top) * np.sum(np.exp(log_terms - top)))


def wasserstein_from_merged(merged: Merged, n1: int, n2: int) -> float:
    """``W1 = ∫ |F1 - F2| dx``: the CDF difference times the gaps between pooled values."""
    if merged.values.size < 2:
        return 0.0
    diff = merged.ca[:-1] / n1 - merged.cb[:-1] / n2
    return float(np.sum(np.abs(diff) * np.diff(merged.values)))


def wasserstein_sorted(a: np.ndarray, b: np.ndarray, merged: Merged | None = None) -> float:
    """``W1`` of two sorted samples; equal sizes pair the order statistics (no merge needed).

    With ``n1 == n2`` the quantile functions step together, so ``W1 = mean |a_(i) - b_(i)|``:
    one vector operation instead of a merge.
    """
    if a.size == b.size:  # whether or not a merge exists, so the result is one float
        return float(np.mean(np.abs(a - b)))
    if merged is None:
        merged = merge_sorted(a, b)
    return wasserstein_from_merged(merged, a.size, b.size)


# --- Anderson-Darling k-sample (k = 2), midrank version --------------------------------

_AD_SIG = np.array([0.25, 0.1, 0.05, 0.025, 0.01, 0.005, 0.001])
_AD_B0 = np.array([0.675, 1.281, 1.645, 1.96, 2.326, 2.573, 3.085])
_AD_B1 = np.array([-0.245, 0.25, 0.678, 1.149, 1.822, 2.364, 3.615])
_AD_B2 = np.array([-0.105, -0.305, -0.362, -0.391, -0.396, -0.345, -0.154])


def anderson_from_merged(merged: Merged, n1: int, n2: int) -> tuple[float, float, str | None]:
    """Scholz-Stephens k-sample Anderson-Darling (midrank, k = 2): ``(A2, p, capped)``.

    The statistic and its interpolated p-value are those of
    ``scipy.stats.anderson_ksamp(variant='midrank')``, computed from the merged sorted
    samples in O(N). As in SciPy the p-value is interpolated from Scholz and Stephens'
    table and so is only known within [0.001, 0.25]: outside, it is clipped to the
    bound and ``capped`` says which (``'upper'`` means "p >= 0.25") — SciPy warns instead,
    which would be an error under ``-W error``.
    Needs at least 4 values and 2 distinct ones (callers check).
    """
    big_n = n1 + n2
    fa = np.diff(merged.ca, prepend=0).astype(np.float64)
    fb = np.diff(merged.cb, prepend=0).astype(np.float64)
    lj = fa + fb
    left = (merged.ca + merged.cb).astype(np.float64) - lj  # pooled values < z_j
    bj = left + lj / 2.0
    denom = bj * (big_n - bj) - big_n * lj / 4.0
    a2 = 0.0
    for cum, f, n in ((merged.ca, fa, n1), (merged.cb, fb, n2)):
        mij = cum.astype(np.float64) - f / 2.0
        inner = lj / float(big_n) * (big_n * mij - bj * n) ** 2 / denom
        a2 += inner.sum() / n
    a2 *= (big_n - 1.0) / big_n

    k = 2
    h_big = 1.0 / n1 + 1.0 / n2
    hs_cs = (1.0 / np.arange(big_n - 1, 1, -1)).cumsum()
    h = hs_cs[-1] + 1
    g = (hs_cs / np.arange(2, big_n)).sum()
    a = (4 * g - 6) * (k - 1) + (10 - 6 * g) * h_big
    b = (2 * g - 4) * k**2 + 8 * h * k + (2 * g - 14 * h - 4) * h_big - 8 * h + 4 * g - 6
    c = (6 * h + 2 * g - 2) * k**2 + (4 * h - 4 * g + 6) * k + (2 * h - 6) * h_big + 4 * h
    d = (2 * h + 6) * k**2 - 4 * h * k
    sigmasq = (a * big_n**3 + b * big_n**2 + c * big_n + d) / (
        (big_n - 1.0) * (big_n - 2.0) * (big_n - 3.0)
    )
    m = k - 1
    stat = float((a2 - m) / math.sqrt(sigmasq))
    critical = _AD_B0 + _AD_B1 / math.sqrt(m) + _AD_B2 / m
    if stat < critical.min():
        return stat, float(_AD_SIG.max()), "upper"
    if stat > critical.max():
        return stat, float(_AD_SIG.min()), "lower"
    pf = np.polyfit(critical, np.log(_AD_SIG), 2)
    return stat, float(math.exp(np.polyval(pf, stat))), None


def cramervonmises_sorted(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """``scipy.stats.cramervonmises_2samp`` (method ``auto``): ``(T, p)``. Needs 2+ values each."""
    with np.errstate(all="ignore"):
        res = sps.cramervonmises_2samp(a, b)
    return float(res.statistic), float(np.clip(res.pvalue, 0.0, 1.0))


# --- reference-quantile bins --------------------------------------------------------------


def quantile_edges(sorted_ref: np.ndarray, bins: int) -> np.ndarray:
    """Inner edges of ``bins`` reference-quantile bins: ``np.quantile`` at ``k / bins``.

    The levels are computed as ``k / bins`` (one correctly rounded division), so the
    level ``1/10`` of a 10-bin grid is the same float as ``100/1000`` of a 1000-bin one.
    Ties in the reference merge edges (fewer bins); the outer bins are open.
    """
    if sorted_ref.size == 0 or bins < 2:
        return np.empty(0, dtype=np.float64)
    levels = np.arange(1, bins) / bins
    return np.unique(np.quantile(sorted_ref, levels))


def bin_counts(sorted_x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts of a sorted sample in ``(-inf, e0), [e0, e1), ..., [e_last, inf)``."""
    pos = np.searchsorted(sorted_x, edges, side="left")
    return np.diff(np.concatenate(([0], pos, [sorted_x.size]))).astype(np.int64)


def fine_edges(sorted_ref: np.ndarray, bins: int, coarse: list[np.ndarray]) -> np.ndarray:
    """The fixed histogram edges of a profile, taken from the sorted reference.

    - when the reference has at most ``bins`` distinct values: those values (then every
      bin holds one reference value, and discrete data are represented exactly);
    - otherwise the reference quantiles at ``k / bins``, plus ``0`` and ``1`` (the min
      and max) and the tail levels ``1e-4, 1e-5, 1e-6`` and their complements (so the
      outer bins, which matter most for the Wasserstein bound, stay thin);
    - always with the coarse edges (PSI/JS bins) added, so that every coarse bin is a
      union of fine bins and binned statistics from profiles are exact.
    """
    if sorted_ref.size == 0:
        return np.empty(0, dtype=np.float64)
    distinct = sorted_ref[np.concatenate(([True], sorted_ref[1:] != sorted_ref[:-1]))]
    if distinct.size <= bins:
        base = distinct
    else:
        tails = np.array([1e-6, 1e-5, 1e-4])
        levels = np.unique(np.concatenate((np.arange(0, bins + 1) / bins, tails, 1.0 - tails)))
        base = np.quantile(sorted_ref, levels)
    return np.unique(np.concatenate([base, *coarse]))


def coarse_index(fine: np.ndarray, coarse: np.ndarray) -> np.ndarray:
    """Start index of each coarse bin in the fine bins (for ``np.add.reduceat``)."""
    pos = np.searchsorted(fine, coarse)
    if coarse.size and (pos.max() >= fine.size or not np.array_equal(fine[pos], coarse)):
        raise ValueError("coarse edges are not a subset of the fine edges")
    return np.concatenate(([0], pos + 1))


# --- estimates from histograms -----------------------------------------------------------


def ks_from_histograms(ca: np.ndarray, cb: np.ndarray) -> tuple[float, float]:
    """KS statistic from two histograms on the same edges: ``(estimate, upper bound)``.

    The empirical CDFs are known exactly at the edges (as left limits ``P(X < e)``), so
    the largest difference there, ``D_grid``, is a lower bound of the true ``D``. Inside
    a bin each CDF rises monotonically by that bin's mass ``p``, so with ``G = F1 - F2``
    at the bin's ends ``G0, G1``::

        G(x) <= min(G0 + p1, G1 + p2)     -G(x) <= min(-G0 + p2, -G1 + p1)

    and the largest of these over the bins is an upper bound. The estimate returned is
    ``D_grid``: ``D_grid <= D <= upper``, and ``upper - D_grid`` is at most the largest
    bin mass of either sample (about ``1/bins`` for data like the reference; in practice
    the error is far smaller, see the tests).
    """
    n1, n2 = int(ca.sum()), int(cb.sum())
    diff = np.cumsum(ca)[:-1] / n1 - np.cumsum(cb)[:-1] / n2
    g = np.concatenate(([0.0], diff, [0.0]))
    d_grid = float(np.abs(g).max())
    pa, pb = ca / n1, cb / n2
    up = np.maximum(np.minimum(g[:-1] + pa, g[1:] + pb), np.minimum(-g[:-1] + pb, -g[1:] + pa))
    return d_grid, float(min(1.0, max(d_grid, float(up.max()))))


def _cdf_knots(
    edges: np.ndarray, counts: np.ndarray, lo: float, hi: float
) -> tuple[np.ndarray, np.ndarray]:
    """Knots of the piecewise-linear CDF of a histogram whose values lie in ``[lo, hi]``."""
    n = counts.sum()
    at_edges = np.cumsum(counts)[:-1] / n
    inside = (edges > lo) & (edges < hi)
    return (
        np.concatenate(([lo], edges[inside], [hi])),
        np.concatenate(([0.0], at_edges[inside], [1.0])),
    )


def _cdf_limits(x: np.ndarray, f: np.ndarray, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Left and right limits at ``pts`` of the CDF with knots ``(x, f)``."""
    if x[0] == x[-1]:  # a point mass: a step, not a line
        return (pts > x[0]).astype(np.float64), (pts >= x[0]).astype(np.float64)
    v = np.interp(pts, x, f)
    return v, v


def wasserstein_from_histograms(
    edges: np.ndarray,
    ca: np.ndarray,
    cb: np.ndarray,
    range_a: tuple[float, float],
    range_b: tuple[float, float],
) -> tuple[float, float]:
    """``W1`` from two histograms on the same edges: ``(estimate, bound)``.

    Each CDF is taken as linear inside a bin (values uniform in the bin), the outer bins
    closed by the sample's own min and max (profiles keep them exactly); the estimate
    is the exact integral of ``|F1 - F2|`` between these two piecewise-linear CDFs.
    Bound: on a segment of width ``w`` where the true CDF rises by ``p``, a monotone CDF
    differs from the line in at most ``w p / 2`` of area, so
    ``|estimate - W1| <= ½ Σ w (p1 + p2)`` over each sample's own segments — typically
    ``~range / (2 bins)`` per sample, while the actual error is much smaller for smooth
    data (it is second order in the bin width).
    """
    xa, fa = _cdf_knots(edges, ca, *range_a)
    xb, fb = _cdf_knots(edges, cb, *range_b)
    bound = 0.5 * (
        float(np.sum(np.diff(xa) * np.diff(fa))) + float(np.sum(np.diff(xb) * np.diff(fb)))
    )
    pts = np.union1d(xa, xb)
    if pts.size < 2:
        return 0.0, bound
    la, ra = _cdf_limits(xa, fa, pts)
    lb, rb = _cdf_limits(xb, fb, pts)
    g0 = ra[:-1] - rb[:-1]  # G just right of each segment's start
    g1 = la[1:] - lb[1:]  # G just left of each segment's end
    w = np.diff(pts)
    a0, a1 = np.abs(g0), np.abs(g1)
    same = g0 * g1 >= 0
    with np.errstate(invalid="ignore", divide="ignore"):
        crossing = (g0 * g0 + g1 * g1) / (2.0 * (a0 + a1))
    area = np.where(same, (a0 + a1) / 2.0, crossing)
    return float(np.sum(w * area)), bound


def finite_float(x: Any) -> float | None:
    """``float(x)`` when finite, else ``None`` (JSON has no NaN or infinity)."""
    if x is None:
        return None
    f = float(x)
    return f if math.isfinite(f) else None
