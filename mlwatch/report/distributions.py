"""The distributions a feature section draws, from the columns the comparison prepared.

Numeric features: equal-width bins over the reference's range (the reference's own
bins, so its shape shows; quantile bins would draw it flat), with the current data's
values outside that range as two extra shares. Categorical features: the categories
with the largest share on either side, unseen ones marked, and the rest as one bar.
Both read sorted values and counts that already exist, so a section costs a few binary
searches, not another pass over the data.

>>> import numpy as np
>>> h = histogram(np.array([0.0, 1.0, 2.0, 3.0]), np.array([1.0, 5.0]), bins=3)
>>> h.edges, h.ref, h.cur, h.below, h.above
([0.0, 1.0, 2.0, 3.0], [0.25, 0.25, 0.5], [0.0, 0.5, 0.0], [0.0, 0.0], [0.0, 0.5])
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from mlwatch.report.model import CategoryBar, CategoryShares, Histogram

BINS = 30
TOP_CATEGORIES = 20


def histogram(ref: np.ndarray, cur: np.ndarray, *, bins: int = BINS) -> Histogram | None:
    """Shares of sorted finite ``ref`` and ``cur`` on ``bins`` equal-width reference bins
    (the last bin closed); None without reference values."""
    if ref.size == 0:
        return None
    lo, hi = float(ref[0]), float(ref[-1])
    if hi == lo:
        lo, hi, bins = lo - 0.5, hi + 0.5, 1
    edges = np.linspace(lo, hi, bins + 1)
    ref_counts, ref_out = _binned(ref, edges)
    cur_counts, cur_out = _binned(cur, edges)
    n_ref, n_cur = max(ref.size, 1), max(cur.size, 1)
    return Histogram(
        edges=[float(e) for e in edges],
        ref=[float(c) / n_ref for c in ref_counts],
        cur=[float(c) / n_cur for c in cur_counts],
        below=[ref_out[0] / n_ref, cur_out[0] / n_cur],
        above=[ref_out[1] / n_ref, cur_out[1] / n_cur],
    )


def _binned(sorted_x: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """Counts in ``[e0, e1), ..., [e_k-1, e_k]`` and ``(below e0, above e_k)``."""
    inner = np.searchsorted(sorted_x, edges[:-1], side="left")
    last = np.searchsorted(sorted_x, edges[-1], side="right")
    pos = np.concatenate((inner, [last]))
    below, above = int(pos[0]), int(sorted_x.size - last)
    return np.diff(pos), (below, above)


def category_shares(
    ref: Mapping[str, int], cur: Mapping[str, int], *, top: int = TOP_CATEGORIES
) -> CategoryShares:
    """The ``top`` categories by their larger share on either side (reference order
    among equals), unseen ones marked, and the rest summed.

    >>> s = category_shares({"a": 3, "b": 1}, {"a": 1, "c": 3}, top=2)
    >>> [(b.name, b.ref, b.cur, b.unseen) for b in s.bars], s.rest_ref, s.rest_count
    ([('a', 0.75, 0.25, False), ('c', 0.0, 0.75, True)], 0.25, 1)
    """
    n_ref, n_cur = max(sum(ref.values()), 1), max(sum(cur.values()), 1)
    names = list(dict.fromkeys([*ref, *cur]))
    bars = [
        CategoryBar(str(k), ref.get(k, 0) / n_ref, cur.get(k, 0) / n_cur, k not in ref)
        for k in names
    ]
    bars.sort(key=lambda b: -max(b.ref, b.cur))  # stable: ties keep the reference order
    shown, rest = bars[:top], bars[top:]
    return CategoryShares(
        bars=shown,
        rest_ref=sum(b.ref for b in rest),
        rest_cur=sum(b.cur for b in rest),
        rest_count=len(rest),
    )
