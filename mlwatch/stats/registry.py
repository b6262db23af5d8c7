"""The drift statistics: one small object each, in a registry, with an explicit auto rule.

Each statistic (a :class:`DriftMethod`) carries its ``name``, the column ``types`` it
accepts, its ``kind`` — a **test** (drifted when ``p_value < threshold``) or a **distance**
(drifted when ``score >= threshold``) — and a ``default_threshold``; its docstring gives
the definition. :func:`auto_method` picks a test while it cannot detect an effect smaller
than the default distance threshold, and the distance beyond that point; the table of
statistics and the derivation of the rule are in docs/drift-and-kpis.md.

>>> auto_method("numeric", 500, 800), auto_method("numeric", 10_000, 10_000)
('ks', 'wasserstein')
>>> auto_method("categorical", 100, 100, n_categories=5), auto_method("categorical", 10_000, 10_000, n_categories=5)
('chisquare', 'js')
>>> get_method("psi").default_threshold, get_method("ks").kind
(0.2, 'test')
"""

from __future__ import annotations

import inspect
import math
from typing import Any, ClassVar

import numpy as np
from scipy import stats as sps

from mlwatch.stats import distances as dk
from mlwatch.stats import numeric as nk
from mlwatch.stats.columns import CATEGORICAL, NUMERIC
from mlwatch.stats.pairs import CategoryTable, NumericPair, Score

TEST = "test"
DISTANCE = "distance"
_BOTH = frozenset({NUMERIC, CATEGORICAL})

AUTO_NUMERIC_MAX_NEFF = 1000
AUTO_DISTANCE_THRESHOLD = 0.1
AUTO_ALPHA = 0.05


class DriftMethod:
    """Base of the drift statistics. Subclasses set the class attributes and ``numeric``
    and/or ``categorical``; the docstring's first paragraph is the description."""

    name: ClassVar[str]
    kind: ClassVar[str]
    types: ClassVar[frozenset[str]]
    default_threshold: ClassVar[float]

    def numeric(self, pair: NumericPair, *, bins: int) -> Score:
        raise NotImplementedError(f"{self.name} does not accept numeric columns")

    def categorical(self, table: CategoryTable) -> Score:
        raise NotImplementedError(f"{self.name} does not accept categorical columns")

    def compute(self, data: NumericPair | CategoryTable, *, bins: int = 10) -> Score:
        if isinstance(data, CategoryTable):
            return self.categorical(data)
        return self.numeric(data, bins=bins)

    def is_drifted(self, score: Score, threshold: float) -> bool:
        if self.kind == TEST:
            return score.p_value is not None and score.p_value < threshold
        return score.score is not None and not math.isnan(score.score) and score.score >= threshold

    @property
    def description(self) -> str:
        doc = inspect.getdoc(self) or ""
        return " ".join(doc.split("\n\n")[0].split())

    def info(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "types": sorted(self.types),
            "default_threshold": self.default_threshold,
            "description": self.description,
        }

    def __repr__(self) -> str:
        return f"<DriftMethod {self.name} ({self.kind}, threshold {self.default_threshold})>"


class KolmogorovSmirnov(DriftMethod):
    """Two-sample Kolmogorov-Smirnov test: ``D = sup_x |F_ref(x) - F_cur(x)|``.

    p-value two-sided, exact when both samples have at most 10,000 values and
    asymptotic (Smirnov) beyond, exactly as ``scipy.stats.ks_2samp(method='auto')``.
    From profiles, D is estimated on the reference-quantile grid within a reported bound.
    """

    name, kind, types, default_threshold = "ks", TEST, frozenset({NUMERIC}), 0.05

    def numeric(self, pair: NumericPair, *, bins: int) -> Score:
        return pair.ks()


class Wasserstein(DriftMethod):
    """Wasserstein-1 distance normalised by the reference standard deviation.

    ``W1 = ∫ |F_ref(x) - F_cur(x)| dx`` (``scipy.stats.wasserstein_distance``), in units
    of the data, divided by the reference's standard deviation (``ddof=0``) so that the
    threshold reads "a shift of 0.1 sigma". The raw distance is in ``details['distance']``.
    A constant reference gives 0 when the current values equal it, else infinity.
    """

    name, kind, types, default_threshold = "wasserstein", DISTANCE, frozenset({NUMERIC}), 0.1

    def numeric(self, pair: NumericPair, *, bins: int) -> Score:
        w, bound = pair.wasserstein()
        std = pair.ref_std()
        details: dict[str, Any] = {"distance": w, "reference_std": std}
        flags: tuple[str, ...] = ()
        if std > 0:
            score = w / std
            if bound is not None:
                details["bound"] = bound / std
        else:
            score = 0.0 if w == 0 else math.inf
            flags = ("constant_reference",)
        return Score(score, None, details, flags)


class _Binned(DriftMethod):
    """A distance on counts: category counts, or reference-quantile bins for numbers."""

    types = _BOTH
    kind = DISTANCE

    def from_counts(self, ref: np.ndarray, cur: np.ndarray) -> float:
        raise NotImplementedError

    def numeric(self, pair: NumericPair, *, bins: int) -> Score:
        ref, cur = pair.binned(bins)
        return Score(self.from_counts(ref, cur), None, {"bins": int(ref.size)})

    def categorical(self, table: CategoryTable) -> Score:
        return Score(self.from_counts(table.ref, table.cur))


class PopulationStabilityIndex(_Binned):
    """Population stability index ``Σ (q - p) ln(q / p)``.

    ``p``, ``q``: reference and current proportions per category, or per
    reference-quantile bin (10 by default, open outer bins), floored at 1e-4 and
    renormalised. Conventional reading: < 0.1 stable, 0.1-0.2 moderate, >= 0.2 shifted.
    """

    name, default_threshold = "psi", 0.2

    def from_counts(self, ref: np.ndarray, cur: np.ndarray) -> float:
        return dk.psi(ref, cur)


class JensenShannon(_Binned):
    """Jensen-Shannon distance, base 2: ``sqrt(½ KL(p || m) + ½ KL(q || m))``, ``m = (p + q) / 2``.

    Bounded in [0, 1], symmetric, finite with empty bins (no smoothing); on categories
    or reference-quantile bins.
    """

    name, default_threshold = "js", 0.1

    def from_counts(self, ref: np.ndarray, cur: np.ndarray) -> float:
        return dk.js_distance(ref, cur)


class Hellinger(_Binned):
    """Hellinger distance ``sqrt(½ Σ (√p - √q)²)``, in [0, 1]; on categories or bins."""

    name, default_threshold = "hellinger", 0.1

    def from_counts(self, ref: np.ndarray, cur: np.ndarray) -> float:
        return dk.hellinger(ref, cur)


class KullbackLeibler(_Binned):
    """Kullback-Leibler divergence ``KL(current || reference) = Σ q ln(q / p)``, in nats.

    Proportions floored at 1e-4 and renormalised (KL is infinite on a bin the reference
    never saw); on categories or reference-quantile bins.
    """

    name, default_threshold = "kl", 0.1

    def from_counts(self, ref: np.ndarray, cur: np.ndarray) -> float:
        return dk.kl(ref, cur)


class TotalVariation(_Binned):
    """Total-variation distance ``½ Σ |p - q|``: the share of the mass that moved; in [0, 1]."""

    name, default_threshold = "tvd", 0.1

    def from_counts(self, ref: np.ndarray, cur: np.ndarray) -> float:
        return dk.tvd(ref, cur)


class _SampleTest(DriftMethod):
    """A test that needs the values themselves: from profiles it runs on their reservoirs."""

    kind, types, default_threshold = TEST, frozenset({NUMERIC}), 0.05

    def numeric(self, pair: NumericPair, *, bins: int) -> Score:
        a, b, exact = pair.samples()
        details: dict[str, Any] = {} if exact else {"sample_sizes": [int(a.size), int(b.size)]}
        flags = () if exact else ("sampled",)
        score = self.run(pair, a, b, exact)
        score.details.update(details)
        score.flags = score.flags + flags
        return score

    def run(self, pair: NumericPair, a: np.ndarray, b: np.ndarray, exact: bool) -> Score:
        raise NotImplementedError


class AndersonDarling(_SampleTest):
    """k-sample Anderson-Darling test (Scholz-Stephens, midrank), k = 2.

    Statistic ``A2`` and p-value as ``scipy.stats.anderson_ksamp(variant='midrank')``;
    the p-value is interpolated from tables and only known within [0.001, 0.25]
    (``details['p_value_capped']``). More sensitive than KS in the tails. From profiles
    it runs on the reservoir samples.
    """

    name = "anderson"

    def run(self, pair: NumericPair, a: np.ndarray, b: np.ndarray, exact: bool) -> Score:
        merged = pair.merged() if exact else nk.merge_sorted(a, b)
        if a.size + b.size < 4 or merged.values.size < 2:
            return Score(None, None, {}, ("too_few_values",))
        stat, p, capped = nk.anderson_from_merged(merged, int(a.size), int(b.size))
        return Score(stat, p, {"p_value_capped": capped}, ("p_value_capped",) if capped else ())


class CramerVonMises(_SampleTest):
    """Two-sample Cramér-von Mises test (``scipy.stats.cramervonmises_2samp``, method auto).

    Statistic ``T`` (Anderson's normalised form), p-value exact for samples of at most
    20 values, else asymptotic. From profiles it runs on the reservoir samples.
    """

    name = "cvm"

    def run(self, pair: NumericPair, a: np.ndarray, b: np.ndarray, exact: bool) -> Score:
        if a.size < 2 or b.size < 2:
            return Score(None, None, {}, ("too_few_values",))
        stat, p = nk.cramervonmises_sorted(a, b)
        return Score(stat, p)


class ChiSquare(DriftMethod):
    """Pearson chi-square test of homogeneity on the 2 x k contingency table.

    Expected counts from the pooled proportions (``scipy.stats.chi2_contingency``,
    no Yates correction, all-zero columns dropped), ``k - 1`` degrees of freedom.
    Unseen categories are ordinary columns of the table.
    """

    name, kind, types, default_threshold = "chisquare", TEST, frozenset({CATEGORICAL}), 0.05

    def categorical(self, table: CategoryTable) -> Score:
        stat, p, dof = dk.chi2_homogeneity(table.ref, table.cur)
        return Score(stat, p, {"dof": dof})


METHODS: dict[str, DriftMethod] = {}
"""The registry: name -> statistic. :func:`register_method` adds to it."""


def register_method(method: DriftMethod) -> DriftMethod:
    """Add a statistic to the registry (replacing one of the same name) and return it."""
    if method.kind not in (TEST, DISTANCE):
        raise ValueError(f"method {method.name!r}: kind must be 'test' or 'distance'")
    if not method.types or not method.types <= _BOTH:
        raise ValueError(f"method {method.name!r}: types must be a subset of {sorted(_BOTH)}")
    METHODS[method.name] = method
    return method


for _cls in (
    KolmogorovSmirnov,
    Wasserstein,
    PopulationStabilityIndex,
    JensenShannon,
    Hellinger,
    KullbackLeibler,
    TotalVariation,
    AndersonDarling,
    CramerVonMises,
    ChiSquare,
):
    register_method(_cls())


def get_method(name: str) -> DriftMethod:
    """The registered statistic called ``name``; a ``ValueError`` lists the valid names."""
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(
            f"unknown drift method {name!r}; one of {', '.join(sorted(METHODS))}, or 'auto'"
        ) from None


def methods_for(column_type: str) -> list[str]:
    """Names of the statistics that accept ``column_type``."""
    return sorted(name for name, m in METHODS.items() if column_type in m.types)


def effective_size(n_ref: int, n_cur: int) -> float:
    """``n_ref n_cur / (n_ref + n_cur)``: what a two-sample test's power depends on."""
    return n_ref * n_cur / (n_ref + n_cur) if n_ref + n_cur else 0.0


def auto_method(column_type: str, n_ref: int, n_cur: int, n_categories: int = 2) -> str:
    """The statistic used when none is forced (rule and reasons in the module docstring)."""
    n_eff = effective_size(n_ref, n_cur)
    if column_type == NUMERIC:
        return "ks" if n_eff <= AUTO_NUMERIC_MAX_NEFF else "wasserstein"
    if column_type != CATEGORICAL:
        raise ValueError(f"column type must be 'numeric' or 'categorical', not {column_type!r}")
    dof = max(n_categories - 1, 1)
    critical = float(sps.chi2.isf(AUTO_ALPHA, dof))
    js2_bits = n_eff * 8 * math.log(2) * AUTO_DISTANCE_THRESHOLD**2
    return "chisquare" if js2_bits <= critical else "js"
