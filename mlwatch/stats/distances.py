"""Statistics on two count vectors over the same bins or categories.

They serve categorical columns (one entry per category) and numeric columns binned on
reference quantiles alike, and raw data and profiles alike: a statistic from a profile
is exact whenever its counts are (see :mod:`mlwatch.stats.histograms`).

Conventions, in one place:

- bins that are empty on both sides are dropped first, so the result does not depend
  on how many empty categories or bins a layout happens to carry;
- ``p`` and ``q`` are the reference and current proportions;
- **smoothing** (only PSI and KL need it: both are infinite when a bin is empty on one
  side): proportions are floored at ``eps = 1e-4`` and renormalised to sum to 1. The
  floor is the usual PSI convention (a bin missing on one side counts as 0.01 %); the
  renormalisation keeps KL a divergence (non-negative);
- logarithms: natural for PSI and KL, base 2 for Jensen-Shannon (so it lies in [0, 1]).

>>> ref, cur = np.array([50, 30, 20]), np.array([40, 30, 30])
>>> round(psi(ref, cur), 6), round(js_distance(ref, cur), 6), round(tvd(ref, cur), 6)
(0.062861, 0.106199, 0.1)
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special
from scipy import stats as sps

EPS = 1e-4


def _nonempty(ref: np.ndarray, cur: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keep = (ref + cur) > 0
    return ref[keep].astype(np.float64), cur[keep].astype(np.float64)


def proportions(ref: np.ndarray, cur: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reference and current proportions over the bins not empty on both sides."""
    r, c = _nonempty(ref, cur)
    return r / r.sum(), c / c.sum()


def smoothed(p: np.ndarray, eps: float = EPS) -> np.ndarray:
    """Proportions floored at ``eps`` and renormalised (see the module docstring)."""
    q = np.maximum(p, eps)
    result: np.ndarray = q / q.sum()
    return result


def psi(ref: np.ndarray, cur: np.ndarray, eps: float = EPS) -> float:
    """Population stability index ``Σ (q - p) ln(q / p)`` on smoothed proportions."""
    p, q = proportions(ref, cur)
    p, q = smoothed(p, eps), smoothed(q, eps)
    return float(np.sum((q - p) * np.log(q / p)))


def kl(ref: np.ndarray, cur: np.ndarray, eps: float = EPS) -> float:
    """Kullback-Leibler divergence ``KL(current || reference) = Σ q ln(q / p)``, smoothed, nats.

    This direction is the mean log-likelihood ratio of the current data under the two
    distributions: how surprising the current data are for the reference.
    """
    p, q = proportions(ref, cur)
    return float(np.sum(special.rel_entr(smoothed(q, eps), smoothed(p, eps))))


def js_distance(ref: np.ndarray, cur: np.ndarray) -> float:
    """Jensen-Shannon distance, base 2 (``scipy.spatial.distance.jensenshannon(p, q, 2)``)."""
    p, q = proportions(ref, cur)
    m = (p + q) / 2.0
    js = (np.sum(special.rel_entr(p, m)) + np.sum(special.rel_entr(q, m))) / 2.0 / math.log(2.0)
    return float(math.sqrt(max(float(js), 0.0)))


def hellinger(ref: np.ndarray, cur: np.ndarray) -> float:
    """Hellinger distance ``sqrt(½ Σ (√p - √q)²)`` in [0, 1] (the form without cancellation)."""
    p, q = proportions(ref, cur)
    return float(math.sqrt(0.5 * float(np.sum((np.sqrt(p) - np.sqrt(q)) ** 2))))


def tvd(ref: np.ndarray, cur: np.ndarray) -> float:
    """Total-variation distance ``½ Σ |p - q|``: the share of probability mass that moved."""
    p, q = proportions(ref, cur)
    return float(0.5 * np.sum(np.abs(p - q)))


def chi2_homogeneity(ref: np.ndarray, cur: np.ndarray) -> tuple[float, float, int]:
    """Pearson's chi-square test of homogeneity on the 2 x k table: ``(X², p, dof)``.

    Both rows are samples, so the expected counts come from the pooled proportions
    (``scipy.stats.chi2_contingency(table, correction=False)`` after dropping all-zero
    columns) — not a goodness-of-fit test that takes the reference as the truth, which
    ignores the reference's own sampling noise and over-alarms. A category seen on one
    side only is an ordinary column (its expected count on the other side is positive).
    With a single category ``X² = 0`` and ``p = 1``. No Yates correction.
    """
    r, c = _nonempty(ref, cur)
    k = r.size
    if k < 2:
        return 0.0, 1.0, 0
    nr, nc = r.sum(), c.sum()
    total = nr + nc
    col = r + c
    er, ec = nr * col / total, nc * col / total  # as chi2_contingency: row sum x column sum / N
    stat = float(np.sum((r - er) ** 2 / er) + np.sum((c - ec) ** 2 / ec))
    dof = k - 1
    return stat, float(sps.chi2.sf(stat, dof)), dof
