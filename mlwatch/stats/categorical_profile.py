"""The profile of one categorical feature: exact counts of a fixed list, bounded extras.

The list is the reference's categories (the ``top_k`` most frequent, 100 by default; the
rest of the reference is one ``extra_other`` count). Values outside it are counted by
name (at most ``top_k`` names; the least frequent spill into ``extra_other``). Counts of
listed categories are exact; names are kept while there are at most ``top_k`` of them.
Its JSON is about 1 kB.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mlwatch.stats.columns import CATEGORICAL, Quality, count_categories, ordered_categories

DEFAULT_TOP_K = 100


class CategoricalProfile:
    """Summary of one categorical feature: exact counts of a fixed category list, bounded extras."""

    type = CATEGORICAL

    def __init__(self, categories: Sequence[str], *, top_k: int = DEFAULT_TOP_K) -> None:
        self.categories = tuple(categories)
        self._index = {c: i for i, c in enumerate(self.categories)}
        self.top_k = int(top_k)
        self.counts = np.zeros(len(self.categories), dtype=np.int64)
        self.extra: dict[str, int] = {}
        self.extra_other = 0
        self.count = self.missing = self.posinf = self.neginf = 0

    def empty_like(self) -> CategoricalProfile:
        return CategoricalProfile(self.categories, top_k=self.top_k)

    @property
    def quality(self) -> Quality:
        return Quality(self.count, self.missing, self.posinf, self.neginf, 0)

    def add_missing(self, rows: int) -> None:
        self.count += rows
        self.missing += rows

    def update(self, values: Any, keys: np.ndarray | None = None) -> None:
        """Add a batch of values: one ``Counter``/pandas pass, then one step per distinct value."""
        cc = count_categories(values)
        q = cc.quality
        self.count += q.count
        self.missing += q.missing
        self.posinf += q.posinf
        self.neginf += q.neginf
        self._add_counts(cc.counts)

    def _add_counts(self, counts: Mapping[str, int]) -> None:
        index, extra = self._index, self.extra
        rows: list[int] = []
        adds: list[int] = []
        for key, c in counts.items():
            i = index.get(key)
            if i is None:
                extra[key] = extra.get(key, 0) + c
            else:
                rows.append(i)
                adds.append(c)
        if rows:  # keys are distinct, so a fancy-indexed add is exact
            self.counts[rows] += adds
        self._trim()

    def _trim(self) -> None:
        if len(self.extra) > self.top_k:
            order = ordered_categories(self.extra)
            self.extra_other += sum(self.extra[k] for k in order[self.top_k :])
            self.extra = {k: self.extra[k] for k in order[: self.top_k]}

    def as_counts(self) -> dict[str, int]:
        """Every category known by name with its count (listed ones, then extras)."""
        out = {c: int(n) for c, n in zip(self.categories, self.counts, strict=True) if n}
        out.update(self.extra)
        return out

    def merge(self, other: CategoricalProfile) -> CategoricalProfile:
        if self.categories != other.categories:
            raise ValueError("cannot merge categorical profiles built on different references")
        out = self.empty_like()
        out.counts = self.counts + other.counts
        out.extra = dict(self.extra)
        out.extra_other = self.extra_other + other.extra_other
        for attr in ("count", "missing", "posinf", "neginf"):
            setattr(out, attr, getattr(self, attr) + getattr(other, attr))
        out._add_counts(other.extra)
        return out

    @classmethod
    def from_values(cls, values: Any, *, top_k: int = DEFAULT_TOP_K) -> CategoricalProfile:
        """The reference profile: its ``top_k`` categories by name, the rest as ``extra_other``."""
        cc = count_categories(values)
        order = ordered_categories(cc.counts)
        prof = cls(order[:top_k], top_k=top_k)
        prof.counts = np.array([cc.counts[k] for k in prof.categories], dtype=np.int64)
        prof.extra_other = sum(cc.counts[k] for k in order[top_k:])
        q = cc.quality
        prof.count, prof.missing, prof.posinf, prof.neginf = q.count, q.missing, q.posinf, q.neginf
        return prof

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": CATEGORICAL,
            "top_k": self.top_k,
            "categories": list(self.categories),
            "counts": self.counts.tolist(),
            "extra": dict(self.extra),
            "extra_other": self.extra_other,
            "count": self.count,
            "missing": self.missing,
            "posinf": self.posinf,
            "neginf": self.neginf,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CategoricalProfile:
        prof = cls([str(c) for c in d["categories"]], top_k=int(d["top_k"]))
        counts = np.asarray(d["counts"], dtype=np.int64)
        if counts.size != len(prof.categories):
            raise ValueError("categorical profile: counts do not match the categories")
        prof.counts = counts
        prof.extra = {str(k): int(v) for k, v in d["extra"].items()}
        for attr in ("extra_other", "count", "missing", "posinf", "neginf"):
            setattr(prof, attr, int(d[attr]))
        return prof
