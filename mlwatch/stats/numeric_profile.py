"""The profile of one numeric feature: a histogram on fixed reference edges, moments, a sample.

- a histogram on **fixed edges taken from the reference** (:func:`~mlwatch.stats.numeric.fine_edges`:
  1,000 reference-quantile bins by default plus thin tail bins, or the reference's
  distinct values when it has few), with open under/overflow bins, and the coarse
  PSI/JS edges (``psi_bins``, 10 by default) included so that every coarse bin is a
  union of fine bins;
- count, missing, +inf, -inf, invalid; the finite count, mean and sum of squared
  deviations (merged with Chan's formula), min and max;
- a bounded reservoir of finite values (:mod:`mlwatch.stats.reservoir`).

It takes a batch in a few vectorised numpy calls, merges with another window's profile
on the same edges, and serialises to JSON (about 60 kB with the default sizes).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mlwatch.stats import numeric as nk
from mlwatch.stats.columns import NUMERIC, Quality, to_float
from mlwatch.stats.reservoir import DEFAULT_RESERVOIR, Reservoir, _pack, _unpack

DEFAULT_BINS = 1000
DEFAULT_PSI_BINS = (10,)


def _json_float(x: float) -> float | None:
    return x if math.isfinite(x) else None


class NumericProfile:
    """Summary of one numeric feature on fixed reference edges (see the module docstring)."""

    type = NUMERIC

    def __init__(
        self,
        edges: np.ndarray,
        psi_edges: Mapping[int, np.ndarray],
        *,
        reservoir: int = DEFAULT_RESERVOIR,
    ) -> None:
        self.edges = np.asarray(edges, dtype=np.float64)
        self.psi_edges = {int(k): np.asarray(v, dtype=np.float64) for k, v in psi_edges.items()}
        self.counts = np.zeros(self.edges.size + 1, dtype=np.int64)
        self.count = self.missing = self.posinf = self.neginf = self.invalid = 0
        self.n = 0
        self.mean = 0.0
        self.m2 = 0.0
        self.min = math.inf
        self.max = -math.inf
        self.reservoir = Reservoir(reservoir)

    def empty_like(self) -> NumericProfile:
        return NumericProfile(self.edges, self.psi_edges, reservoir=self.reservoir.capacity)

    @property
    def quality(self) -> Quality:
        return Quality(self.count, self.missing, self.posinf, self.neginf, self.invalid)

    @property
    def std(self) -> float:
        return math.sqrt(self.m2 / self.n) if self.n else math.nan

    def add_missing(self, rows: int) -> None:
        self.count += rows
        self.missing += rows

    def update(self, values: Any, keys: np.ndarray) -> None:
        """Add a batch of values (any array-like); ``keys`` are the rows' reservoir keys."""
        x, invalid = to_float(values)
        self.update_array(x, invalid, keys)

    def update_array(
        self,
        x: np.ndarray,
        invalid: int,
        keys: np.ndarray,
        stats: tuple[float, float, float, float] | None = None,
        counts: np.ndarray | None = None,
    ) -> None:
        """Add a float64 batch (NaN for missing and ``invalid`` values).

        ``stats`` — ``(mean, m2, min, max)`` of ``x`` — and ``counts`` (its histogram)
        may be given by a caller that computed them for many columns at once, when every
        value of ``x`` is finite.
        """
        if x.size != keys.size:
            raise ValueError(f"{x.size} values but {keys.size} keys")
        self.count += int(x.size)
        if stats is None:
            finite = np.isfinite(x)
            n_finite = int(np.count_nonzero(finite))
            if n_finite != x.size:
                posinf = int(np.count_nonzero(x == np.inf))
                neginf = int(np.count_nonzero(x == -np.inf))
                self.posinf += posinf
                self.neginf += neginf
                self.invalid += invalid
                self.missing += int(x.size) - n_finite - posinf - neginf - invalid
                x, keys = x[finite], keys[finite]
            if not n_finite:
                return
            mean = float(x.mean())
            dev = x - mean
            stats = (mean, float(np.dot(dev, dev)), float(x.min()), float(x.max()))
        if counts is not None:
            self.counts += counts[: self.counts.size]
        elif x.size >= self.edges.size * 2 // 3:  # big batch: sort it, search the edges in it
            pos = np.searchsorted(np.sort(x), self.edges, side="left")
            self.counts += np.diff(pos, prepend=0, append=x.size)
        else:  # small batch: search each value in the edges
            self.counts += np.bincount(
                np.searchsorted(self.edges, x, side="right"), minlength=self.counts.size
            )
        mean, m2, lo, hi = stats
        self._combine(int(x.size), mean, m2)
        self.min = min(self.min, lo)
        self.max = max(self.max, hi)
        self.reservoir.add(x, keys)

    def _combine(self, n: int, mean: float, m2: float) -> None:
        """Chan et al.'s parallel update of (n, mean, M2)."""
        total = self.n + n
        if total == 0:
            return
        delta = mean - self.mean
        self.m2 = self.m2 + m2 + delta * delta * self.n * n / total
        self.mean = self.mean + delta * n / total
        self.n = total

    def merge(self, other: NumericProfile) -> NumericProfile:
        if not np.array_equal(self.edges, other.edges):
            raise ValueError("cannot merge numeric profiles built on different reference edges")
        out = self.empty_like()
        out.counts = self.counts + other.counts
        for attr in ("count", "missing", "posinf", "neginf", "invalid"):
            setattr(out, attr, getattr(self, attr) + getattr(other, attr))
        out.n, out.mean, out.m2 = self.n, self.mean, self.m2
        out._combine(other.n, other.mean, other.m2)
        out.min, out.max = min(self.min, other.min), max(self.max, other.max)
        out.reservoir = self.reservoir.merge(other.reservoir)
        return out

    @classmethod
    def from_values(
        cls,
        values: Any,
        keys: np.ndarray,
        *,
        bins: int = DEFAULT_BINS,
        psi_bins: Sequence[int] = DEFAULT_PSI_BINS,
        reservoir: int = DEFAULT_RESERVOIR,
    ) -> NumericProfile:
        """The reference profile of raw values: edges from their quantiles, then their counts."""
        x, invalid = to_float(values)
        finite = np.isfinite(x)
        xs = np.sort(x[finite])
        psi = {int(b): nk.quantile_edges(xs, int(b)) for b in psi_bins}
        prof = cls(nk.fine_edges(xs, bins, list(psi.values())), psi, reservoir=reservoir)
        prof.count = int(x.size)
        prof.posinf = int(np.count_nonzero(x == np.inf))
        prof.neginf = int(np.count_nonzero(x == -np.inf))
        prof.invalid = invalid
        prof.missing = int(x.size) - int(xs.size) - prof.posinf - prof.neginf - invalid
        if xs.size:
            prof.counts = nk.bin_counts(xs, prof.edges)
            prof.n = int(xs.size)
            prof.mean = float(xs.mean())
            dev = xs - prof.mean
            prof.m2 = float(np.dot(dev, dev))
            prof.min, prof.max = float(xs[0]), float(xs[-1])
            prof.reservoir.add(x[finite], keys[finite])
        return prof

    def coarse_counts(self, bins: int) -> np.ndarray:
        if bins not in self.psi_edges:
            raise ValueError(
                f"bins={bins}: the reference profile has bins for "
                f"{sorted(self.psi_edges)} only (from_reference(psi_bins=...))"
            )
        return np.add.reduceat(self.counts, nk.coarse_index(self.edges, self.psi_edges[bins]))

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": NUMERIC,
            "edges": _pack(self.edges),
            "psi_edges": {str(k): _pack(v) for k, v in sorted(self.psi_edges.items())},
            "counts": self.counts.tolist(),
            "count": self.count,
            "missing": self.missing,
            "posinf": self.posinf,
            "neginf": self.neginf,
            "invalid": self.invalid,
            "n": self.n,
            "mean": self.mean,
            "m2": self.m2,
            "min": _json_float(self.min),
            "max": _json_float(self.max),
            "reservoir": self.reservoir.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> NumericProfile:
        prof = cls(
            _unpack(d["edges"]),
            {int(k): _unpack(v) for k, v in d["psi_edges"].items()},
            reservoir=int(d["reservoir"]["capacity"]),
        )
        counts = np.asarray(d["counts"], dtype=np.int64)
        if counts.size != prof.counts.size:
            raise ValueError("numeric profile: counts do not match the edges")
        prof.counts = counts
        for attr in ("count", "missing", "posinf", "neginf", "invalid", "n"):
            setattr(prof, attr, int(d[attr]))
        prof.mean, prof.m2 = float(d["mean"]), float(d["m2"])
        prof.min = math.inf if d["min"] is None else float(d["min"])
        prof.max = -math.inf if d["max"] is None else float(d["max"])
        prof.reservoir = Reservoir.from_dict(d["reservoir"])
        return prof
