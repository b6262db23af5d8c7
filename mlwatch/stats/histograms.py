"""Two profiles as the statistics see them: the pair and table objects of :mod:`.pairs`.

What agrees with raw data (tested in ``tests/stats/test_profile.py``): statistics on the
same bins — PSI, JS, Hellinger, KL, TVD on the coarse bins, chi-square and every
categorical statistic — are exactly those of the raw data (the counts are the same
integers). KS and Wasserstein are estimated from the fine histogram, each with a bound
in the result (``details['bounds']`` for KS, ``details['bound']`` for the normalised
Wasserstein; see :func:`~mlwatch.stats.numeric.ks_from_histograms` and
:func:`~mlwatch.stats.numeric.wasserstein_from_histograms`); Anderson-Darling and
Cramér-von Mises run on the reservoirs. With 1,000 fine bins the KS interval
``[D_grid, upper]`` is at most about 0.001 wide for continuous data and the estimate
within about 1e-4 of the raw statistic (exact for discrete data on the reference's
values); the normalised Wasserstein estimate is within about 0.001 of the raw one (0.01
for heavy tails beyond the reference's range), its reported bound typically 0.005-0.05.
"""

from __future__ import annotations

import numpy as np

from mlwatch.stats import numeric as nk
from mlwatch.stats.categorical_profile import CategoricalProfile
from mlwatch.stats.columns import ordered_categories
from mlwatch.stats.numeric_profile import NumericProfile
from mlwatch.stats.pairs import CategoryTable, ExactPair, NumericPair, Score

OTHER = "__other__"


class HistogramPair(NumericPair):
    """A numeric column of two profiles on the same edges, seen by the statistics.

    When both reservoirs are complete (each holds every value its side saw), it
    delegates to :class:`~mlwatch.stats.pairs.ExactPair` over them: exact results.
    """

    def __init__(self, ref: NumericProfile, cur: NumericProfile) -> None:
        if not np.array_equal(ref.edges, cur.edges):
            raise ValueError("profiles built on different reference edges")
        self.ref, self.cur = ref, cur
        self.n_ref, self.n_cur = ref.n, cur.n
        self._exact: ExactPair | None = None
        if ref.reservoir.complete and cur.reservoir.complete:
            self._exact = ExactPair(ref.reservoir.sorted(), cur.reservoir.sorted())
        self._samples: tuple[np.ndarray, np.ndarray] | None = None
        self._merged: nk.Merged | None = None

    @property
    def exact(self) -> bool:
        return self._exact is not None

    def ks(self) -> Score:
        if self._exact is not None:
            return self._exact.ks()
        d_grid, upper = nk.ks_from_histograms(self.ref.counts, self.cur.counts)
        d, p, mode = nk.ks_pvalue(d_grid, self.n_ref, self.n_cur)
        return Score(d, p, {"mode": mode, "bounds": [d_grid, upper]}, ("approximate",))

    def wasserstein(self) -> tuple[float, float | None]:
        if self._exact is not None:
            return self._exact.wasserstein()
        return nk.wasserstein_from_histograms(
            self.ref.edges,
            self.ref.counts,
            self.cur.counts,
            (self.ref.min, self.ref.max),
            (self.cur.min, self.cur.max),
        )

    def ref_std(self) -> float:
        return self._exact.ref_std() if self._exact is not None else self.ref.std

    def binned(self, bins: int) -> tuple[np.ndarray, np.ndarray]:
        return self.ref.coarse_counts(bins), self.cur.coarse_counts(bins)

    def samples(self) -> tuple[np.ndarray, np.ndarray, bool]:
        if self._exact is not None:
            return self._exact.samples()
        if self._samples is None:
            self._samples = (self.ref.reservoir.sorted(), self.cur.reservoir.sorted())
        return self._samples[0], self._samples[1], False

    def merged(self) -> nk.Merged:
        if self._exact is not None:
            return self._exact.merged()
        if self._merged is None:
            a, b, _ = self.samples()
            self._merged = nk.merge_sorted(a, b)
        return self._merged


def category_table(ref: CategoricalProfile, cur: CategoricalProfile) -> CategoryTable:
    """The contingency table of two categorical profiles, as raw data would give it.

    Exact (the same table as :meth:`CategoryTable.from_counts` on the raw data) while
    no name spilled into ``extra_other``. Spilled current values form one ``__other__``
    column (counted as unseen, not named); if the *reference* spilled, a current value
    outside its known names may belong to that tail, so such values go to ``__other__``
    too, no unseen category is named and ``truncated`` is set.
    """
    if ref.categories != cur.categories:
        raise ValueError("profiles built on different reference categories")
    r_all, c_all = ref.as_counts(), cur.as_counts()
    if ref.extra_other == 0:
        table = CategoryTable.from_counts(r_all, c_all)
        if cur.extra_other == 0:
            return table
        return CategoryTable(
            (*table.names, OTHER),
            np.append(table.ref, 0),
            np.append(table.cur, cur.extra_other),
            table.unseen,
            table.unseen_count + cur.extra_other,
        )
    names = ordered_categories(r_all)
    r = [r_all[k] for k in names] + [ref.extra_other]
    c = [c_all.get(k, 0) for k in names]
    c.append(cur.extra_other + sum(v for k, v in c_all.items() if k not in r_all))
    return CategoryTable(
        (*names, OTHER),
        np.array(r, dtype=np.int64),
        np.array(c, dtype=np.int64),
        (),
        0,
        truncated=True,
    )
