"""What a drift statistic sees: one column of the reference next to the same column now.

A statistic never touches raw tables or profiles directly; it asks a *pair* for what it
needs (the KS statistic, the Wasserstein distance, counts on reference-quantile bins,
sorted samples). There are two numeric pairs with the same interface —
:class:`ExactPair` over sorted raw values and ``HistogramPair`` over profiles (in
:mod:`mlwatch.stats.histograms`) — and one categorical :class:`CategoryTable`, the same
for raw data and profiles. That is what makes "profiles agree with raw data" a property of
two small classes rather than of every statistic.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlwatch.stats import numeric as nk
from mlwatch.stats.columns import ordered_categories


@dataclass
class Score:
    """What one statistic says about one column (before any threshold is applied).

    ``score`` is the statistic (a distance, or a test statistic) and ``p_value`` the
    test's p-value (``None`` for distances). ``None`` score means the statistic is not
    defined for these data; ``flags`` says why.
    """

    score: float | None
    p_value: float | None = None
    details: dict[str, Any] = field(default_factory=dict)
    flags: tuple[str, ...] = ()


class NumericPair(ABC):
    """Reference and current values of one numeric column (finite values only)."""

    n_ref: int
    n_cur: int

    @abstractmethod
    def ks(self) -> Score:
        """Two-sample KS: statistic and p-value (details: ``mode``, and bounds if estimated)."""

    @abstractmethod
    def wasserstein(self) -> tuple[float, float | None]:
        """``(W1, error bound)``; the bound is ``None`` when ``W1`` is exact."""

    @abstractmethod
    def ref_std(self) -> float:
        """Standard deviation of the reference (population, ``ddof=0``)."""

    @abstractmethod
    def binned(self, bins: int) -> tuple[np.ndarray, np.ndarray]:
        """Counts of both sides on ``bins`` reference-quantile bins (open outer bins)."""

    @abstractmethod
    def samples(self) -> tuple[np.ndarray, np.ndarray, bool]:
        """Sorted values of both sides, and whether they are all the values (not a sample)."""

    def merged(self) -> nk.Merged:
        """The merged pooled sample of :meth:`samples` (cached by implementations)."""
        a, b, _ = self.samples()
        return nk.merge_sorted(a, b)


class ExactPair(NumericPair):
    """Sorted finite raw values of both sides; every statistic is exact.

    ``edges_cache`` (bins -> edges) and ``std`` let a prepared reference share its
    quantile edges and standard deviation across comparisons.
    """

    def __init__(
        self,
        a: np.ndarray,
        b: np.ndarray,
        *,
        edges_cache: dict[int, np.ndarray] | None = None,
        std: float | None = None,
    ) -> None:
        self.a, self.b = a, b
        self.n_ref, self.n_cur = int(a.size), int(b.size)
        self._edges = edges_cache if edges_cache is not None else {}
        self._std = std
        self._merged: nk.Merged | None = None
        self._w: float | None = None

    def merged(self) -> nk.Merged:
        if self._merged is None:
            self._merged = nk.merge_sorted(self.a, self.b)
        return self._merged

    def ks(self) -> Score:
        d = nk.ks_statistic(self.merged(), self.n_ref, self.n_cur)
        d, p, mode = nk.ks_pvalue(d, self.n_ref, self.n_cur)
        return Score(d, p, {"mode": mode})

    def wasserstein(self) -> tuple[float, float | None]:
        if self._w is None:
            self._w = nk.wasserstein_sorted(self.a, self.b, self._merged)
        return self._w, None

    def ref_std(self) -> float:
        if self._std is None:
            self._std = float(np.std(self.a))
        return self._std

    @property
    def cached_std(self) -> float | None:
        """The reference standard deviation if it was given or computed, else ``None``."""
        return self._std

    def edges(self, bins: int) -> np.ndarray:
        if bins not in self._edges:
            self._edges[bins] = nk.quantile_edges(self.a, bins)
        return self._edges[bins]

    def binned(self, bins: int) -> tuple[np.ndarray, np.ndarray]:
        edges = self.edges(bins)
        return nk.bin_counts(self.a, edges), nk.bin_counts(self.b, edges)

    def samples(self) -> tuple[np.ndarray, np.ndarray, bool]:
        return self.a, self.b, True


@dataclass(frozen=True)
class CategoryTable:
    """Counts of one categorical column on both sides, aligned by category.

    ``names`` are the columns of the 2 x k table: the reference categories (by
    decreasing reference count, then name), then the unseen ones (by decreasing
    current count, then name), and possibly one ``other`` column for values a bounded
    profile could not keep by name. ``unseen`` are the categories of the current data
    absent from the reference, by name; ``truncated`` is set when the reference profile
    kept only its top categories, so that unseen categories cannot be told apart from
    the reference's tail (they are then counted in ``other``).
    """

    names: tuple[str, ...]
    ref: np.ndarray
    cur: np.ndarray
    unseen: tuple[str, ...] = ()
    unseen_count: int = 0
    truncated: bool = False

    @property
    def n_ref(self) -> int:
        return int(self.ref.sum())

    @property
    def n_cur(self) -> int:
        return int(self.cur.sum())

    @property
    def n_categories(self) -> int:
        """Categories present on at least one side."""
        return int(np.count_nonzero((self.ref + self.cur) > 0))

    @classmethod
    def from_counts(cls, ref: Mapping[str, int], cur: Mapping[str, int]) -> CategoryTable:
        """The table of two complete count dictionaries (raw data)."""
        ref_names = ordered_categories(ref)
        unseen_counts = {k: v for k, v in cur.items() if k not in ref}
        unseen = ordered_categories(unseen_counts)
        names = (*ref_names, *unseen)
        r = np.array([ref.get(k, 0) for k in names], dtype=np.int64)
        c = np.array([cur.get(k, 0) for k in names], dtype=np.int64)
        return cls(names, r, c, tuple(unseen), int(sum(unseen_counts.values())))
