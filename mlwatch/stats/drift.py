"""Dataset-level drift: every feature compared, then one decision for the dataset.

:func:`compare` takes raw data (pandas DataFrames, or mappings of numpy arrays or
lists), :func:`compare_profiles` two :class:`~mlwatch.stats.profile.DatasetProfile`;
both return a :class:`DriftReport` whose :meth:`~DriftReport.to_dict` is the JSON of
``mlwatch drift --format json``. :func:`battery` runs several statistics over the same
prepared columns (one report per statistic), and :func:`prepare` sorts and counts a
reference once for many comparisons. The report::

    {"features": [{"name", "type", "method", "score", "p_value", "threshold", "drifted",
                   "kind", "effect", "quality", "unseen_categories", "details", "flags"}],
     "drift_share", "dataset_drift", "drift_share_threshold", "n_features", "n_evaluated",
     "n_drifted", "alpha", "correction", "corrected_threshold", "min_effect"}

(the first seven feature keys and the next two report keys are the contract; the
rest are extras). Numbers that are not finite (an infinite normalised distance against
a constant reference) are ``null`` in it; the report object keeps the float.

Per feature:

- **type**: ``types[name]``, else inferred from the reference column — integer and
  floating dtypes are numeric, everything else (strings, booleans, pandas categories)
  categorical; see :func:`~mlwatch.stats.columns.infer_type`;
- **method**: ``method`` when it accepts the column's type (a name for all columns, or
  a ``{column: name}`` mapping), else the auto rule of :func:`~mlwatch.stats.registry.auto_method`;
- **quality**: count, missing, ±inf, invalid, used — on both sides. Statistics use the
  finite (numeric) or non-missing (categorical) values; a side with none gives
  ``score: null``, ``drifted: false`` and a flag (``no_reference_data``,
  ``no_current_data``), never an exception;
- **threshold**: ``thresholds[method]``, else ``alpha`` for tests and the method's
  default for distances; after a correction, the corrected one.

Dataset level:

- ``correction`` (tests only; distances have no p-value): ``"bonferroni"`` divides each
  test's threshold by the number ``m`` of features tested; ``"bh"`` is
  Benjamini-Hochberg at level ``alpha``: with ``k`` the largest ``i`` such that
  ``p_(i) <= i alpha / m``, the ``k`` smallest p-values are drifted (``p <= k alpha / m``,
  the reported threshold). False discovery rate instead of family-wise error:
  the better choice with many features.
- ``min_effect``: a feature is drifted only if also its **effect** is at least this —
  the normalised Wasserstein distance (shift in reference standard deviations) for
  numeric features, the Jensen-Shannon distance for categorical ones (the units of the
  auto distances, so ``0.1`` means what their default threshold means). It keeps a test
  on huge samples from alarming on a negligible shift.
- ``drift_share`` = drifted / evaluated features (those with a score);
  ``dataset_drift`` when it is at least ``drift_share`` (the argument, 0.5 by default).

>>> rng = np.random.default_rng(7)
>>> ref = {"x": rng.normal(size=5000), "c": rng.choice(["a", "b", "c"], size=5000)}
>>> cur = {"x": rng.normal(0.5, 1, size=5000), "c": rng.choice(["a", "b", "d"], size=5000)}
>>> report = compare(ref, cur)
>>> [(f.name, f.method, f.drifted) for f in report.features]
[('x', 'wasserstein', True), ('c', 'js', True)]
>>> report["c"].unseen_categories, report.drift_share, report.dataset_drift
(('d',), 1.0, True)
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import numpy as np

from mlwatch.errors import ConfigError
from mlwatch.stats import distances as dk
from mlwatch.stats.categorical_profile import CategoricalProfile
from mlwatch.stats.columns import (
    CATEGORICAL,
    COLUMN_TYPES,
    NUMERIC,
    Quality,
    as_columns,
    count_categories,
    infer_type,
    numeric_quality,
    to_float,
)
from mlwatch.stats.histograms import HistogramPair, category_table
from mlwatch.stats.numeric_profile import NumericProfile
from mlwatch.stats.pairs import CategoryTable, ExactPair, NumericPair, Score
from mlwatch.stats.profile import DatasetProfile
from mlwatch.stats.registry import TEST, DriftMethod, auto_method, get_method

CORRECTIONS = (None, "bonferroni", "bh")


def _jsonable(x: Any) -> Any:
    """Plain JSON values: numpy scalars to Python, non-finite floats to None."""
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, np.ndarray)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        f = float(x)
        return f if math.isfinite(f) else None
    return x


@dataclass(frozen=True)
class FeatureDrift:
    """The drift result of one feature (see the module docstring for each field)."""

    name: str
    type: str
    method: str
    kind: str
    score: float | None
    p_value: float | None
    threshold: float
    drifted: bool
    effect: float | None = None
    reference_quality: Quality = field(default_factory=Quality)
    current_quality: Quality = field(default_factory=Quality)
    unseen_categories: tuple[str, ...] = ()
    unseen_count: int = 0
    details: Mapping[str, Any] = field(default_factory=dict)
    flags: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name, "type": self.type, "method": self.method,
            "score": _jsonable(self.score), "p_value": _jsonable(self.p_value),
            "threshold": _jsonable(self.threshold), "drifted": self.drifted,
            "kind": self.kind, "effect": _jsonable(self.effect),
            "quality": {"reference": self.reference_quality.to_dict(),
                        "current": self.current_quality.to_dict()},
        }
        if self.type == CATEGORICAL:
            out["unseen_categories"] = list(self.unseen_categories)
            out["unseen_count"] = self.unseen_count
        out["details"] = _jsonable(self.details)
        out["flags"] = list(self.flags)
        return out


@dataclass(frozen=True)
class DriftReport:
    """Per-feature results and the dataset-level decision."""

    features: tuple[FeatureDrift, ...]
    drift_share: float
    dataset_drift: bool
    drift_share_threshold: float
    alpha: float
    correction: str | None = None
    corrected_threshold: float | None = None
    min_effect: float | None = None

    @property
    def n_evaluated(self) -> int:
        return sum(1 for f in self.features if f.score is not None)

    @property
    def n_drifted(self) -> int:
        return sum(1 for f in self.features if f.drifted)

    @property
    def drifted_features(self) -> list[str]:
        return [f.name for f in self.features if f.drifted]

    def __getitem__(self, name: str) -> FeatureDrift:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {"features": [f.to_dict() for f in self.features],
                "drift_share": self.drift_share, "dataset_drift": self.dataset_drift,
                "drift_share_threshold": self.drift_share_threshold,
                "n_features": len(self.features), "n_evaluated": self.n_evaluated,
                "n_drifted": self.n_drifted, "alpha": self.alpha, "correction": self.correction,
                "corrected_threshold": _jsonable(self.corrected_threshold),
                "min_effect": self.min_effect}


# --- prepared raw data ---------------------------------------------------------------------

@dataclass
class PreparedColumn:
    """A raw column made ready once: sorted finite values, or category counts."""

    type: str
    quality: Quality
    values: np.ndarray | None = None  # numeric: sorted finite values
    counts: dict[str, int] | None = None  # categorical
    edges: dict[int, np.ndarray] = field(default_factory=dict)  # reference-quantile edges
    std: float | None = None

    @classmethod
    def build(cls, col: Any, kind: str) -> PreparedColumn:
        if kind == NUMERIC:
            x, invalid = to_float(col)
            quality, finite = numeric_quality(x, invalid)
            return cls(NUMERIC, quality, values=np.sort(finite))
        cc = count_categories(col)
        return cls(CATEGORICAL, cc.quality, counts=cc.counts)

    @classmethod
    def absent(cls, kind: str) -> PreparedColumn:
        return cls(kind, Quality(), values=np.empty(0), counts={})


@dataclass
class PreparedData:
    """Raw data sorted and counted once: pass it as the reference of many :func:`compare` calls."""

    columns: dict[str, PreparedColumn]

    @property
    def types(self) -> dict[str, str]:
        return {name: col.type for name, col in self.columns.items()}


def prepare(data: Any, types: Mapping[str, str] | None = None, *,
            workers: int | None = None) -> PreparedData:
    """Sort (numeric) and count (categorical) every column of ``data`` once.

    ``types`` as in :func:`compare`. Comparing many windows against one reference, pass
    the prepared reference: its columns are not sorted again, and its quantile edges and
    standard deviation are computed once.
    """
    cols = as_columns(data)
    kinds = _resolve_types(cols, types)
    built = _run_columns(list(cols), kinds, lambda n: PreparedColumn.build(cols[n], kinds[n]),
                         workers)
    return PreparedData(dict(zip(cols, built, strict=True)))


def _resolve_types(cols: Mapping[str, Any], types: Mapping[str, str] | None) -> dict[str, str]:
    out = {}
    for name, col in cols.items():
        kind = (types or {}).get(name) or infer_type(col)
        if kind not in COLUMN_TYPES:
            raise ConfigError(f"types[{name!r}]", f"must be 'numeric' or 'categorical', "
                              f"not {kind!r}")
        out[name] = kind
    return out


# --- options -------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Options:
    method: str | Mapping[str, str] | None
    alpha: float
    thresholds: Mapping[str, float]
    correction: str | None
    min_effect: float | None
    drift_share: float
    bins: int

    @classmethod
    def build(cls, method: str | Mapping[str, str] | None, alpha: float,
              thresholds: Mapping[str, float] | None, correction: str | None,
              min_effect: float | None, drift_share: float, bins: int) -> _Options:
        def check(key: str, name: str) -> None:
            try:
                get_method(name)
            except ValueError as exc:
                raise ConfigError(key, str(exc)) from None

        if isinstance(method, str):
            if method != "auto":
                check("method", method)
        elif isinstance(method, Mapping):
            for column, m in method.items():
                if m != "auto":
                    check(f"method[{column!r}]", m)
        elif method is not None:
            raise ConfigError("method", f"a method name or a mapping, not {type(method).__name__}")
        if not 0 < alpha < 1:
            raise ConfigError("alpha", f"must be in (0, 1), got {alpha}")
        for name, t in (thresholds or {}).items():
            check(f"thresholds[{name!r}]", name)
            if not (isinstance(t, (int, float)) and t >= 0):
                raise ConfigError(f"thresholds[{name!r}]", f"must be a number >= 0, got {t!r}")
        if correction not in CORRECTIONS:
            raise ConfigError("correction", f"must be None, 'bonferroni' or 'bh', "
                              f"got {correction!r}")
        if min_effect is not None and not min_effect >= 0:
            raise ConfigError("min_effect", f"must be >= 0 or None, got {min_effect}")
        if not 0 <= drift_share <= 1:
            raise ConfigError("drift_share", f"must be in [0, 1], got {drift_share}")
        if bins < 2:
            raise ConfigError("bins", f"must be >= 2, got {bins}")
        return cls(None if method == "auto" else method, float(alpha), dict(thresholds or {}),
                   correction, min_effect, float(drift_share), int(bins))

    def method_for(self, name: str, kind: str, n_ref: int, n_cur: int,
                   n_categories: int) -> DriftMethod:
        forced = self.method.get(name) if isinstance(self.method, Mapping) else self.method
        if forced and forced != "auto" and kind in get_method(forced).types:
            return get_method(forced)
        return get_method(auto_method(kind, n_ref, n_cur, n_categories))

    def threshold_for(self, method: DriftMethod) -> float:
        if method.name in self.thresholds:
            return float(self.thresholds[method.name])
        return self.alpha if method.kind == TEST else method.default_threshold


# --- evaluation ----------------------------------------------------------------------------

def _choose(opts: _Options, name: str, kind: str, data: NumericPair | CategoryTable
            ) -> DriftMethod:
    n_cats = data.n_categories if isinstance(data, CategoryTable) else 0
    return opts.method_for(name, kind, data.n_ref, data.n_cur, n_cats)


def _evaluate(name: str, kind: str, data: NumericPair | CategoryTable, q_ref: Quality,
              q_cur: Quality, opts: _Options, extra_flags: tuple[str, ...],
              method: DriftMethod) -> FeatureDrift:
    threshold = opts.threshold_for(method)
    if data.n_ref == 0 or data.n_cur == 0:
        flag = "no_reference_data" if data.n_ref == 0 else "no_current_data"
        score = Score(None, None, {}, (flag,))
    else:
        with np.errstate(all="ignore"):
            score = method.compute(data, bins=opts.bins)
    effect = None
    if opts.min_effect is not None and score.score is not None:
        effect = _effect(method, data, score)
    unseen: tuple[str, ...] = ()
    unseen_count = 0
    flags = extra_flags + score.flags
    if isinstance(data, CategoryTable):
        unseen, unseen_count = data.unseen, data.unseen_count
        if unseen_count:
            flags += ("unseen_categories",)
        if data.truncated:
            flags += ("reference_categories_truncated",)
    score_value = None if score.score is None else float(score.score)
    if score_value is not None and math.isnan(score_value):
        score_value = None
    return FeatureDrift(name, kind, method.name, method.kind, score_value,
                        None if score.p_value is None else float(score.p_value), threshold,
                        False, effect, q_ref, q_cur, unseen, unseen_count, score.details, flags)


def _effect(method: DriftMethod, data: NumericPair | CategoryTable, score: Score) -> float | None:
    """The effect size compared with ``min_effect`` (see the module docstring)."""
    if isinstance(data, CategoryTable):
        if method.name == "js":
            return score.score
        return dk.js_distance(data.ref, data.cur)
    if method.name == "wasserstein":
        return score.score
    with np.errstate(all="ignore"):
        return get_method("wasserstein").compute(data).score


def _finish(results: Sequence[FeatureDrift], opts: _Options) -> DriftReport:
    """Apply thresholds, the multiple-testing correction and ``min_effect``; decide."""
    tested = [r for r in results if r.kind == TEST and r.p_value is not None]
    m = len(tested)
    corrected: float | None = None
    cutoff: dict[str, float] = {}
    if opts.correction == "bonferroni" and m:
        corrected = opts.alpha / m
        cutoff = {r.name: r.threshold / m for r in tested}
    elif opts.correction == "bh" and m:
        p = np.sort(np.array([r.p_value for r in tested], dtype=np.float64))
        below = np.flatnonzero(p <= np.arange(1, m + 1) * opts.alpha / m)
        k = int(below[-1]) + 1 if below.size else 0
        corrected = max(k, 1) * opts.alpha / m
        cutoff = {r.name: corrected for r in tested}
    out = []
    for r in results:
        threshold = cutoff.get(r.name, r.threshold)
        method = get_method(r.method)
        if opts.correction == "bh" and r.name in cutoff:
            drifted = r.p_value is not None and r.p_value <= threshold
        else:
            drifted = method.is_drifted(Score(r.score, r.p_value), threshold)
        if opts.min_effect is not None:
            drifted = drifted and r.effect is not None and r.effect >= opts.min_effect
        if _broken(r):  # rows arrived, none usable: the feature broke, which is drift too
            drifted = True
        out.append(replace(r, threshold=threshold, drifted=bool(drifted)))
    evaluated = [r for r in out if r.score is not None or r.drifted]
    share = sum(r.drifted for r in evaluated) / len(evaluated) if evaluated else 0.0
    return DriftReport(tuple(out), share, bool(evaluated) and share >= opts.drift_share,
                       opts.drift_share, opts.alpha, opts.correction, corrected, opts.min_effect)


def _broken(r: FeatureDrift) -> bool:
    """The reference had values and the current window has rows but no usable value of
    the feature (all missing, all non-finite, or all of the wrong type)."""
    return ("no_current_data" in r.flags and r.current_quality.count > 0
            and r.reference_quality.used > 0)


def _default_workers(tasks: int) -> int:
    return max(1, min(tasks, os.cpu_count() or 1, 4))


def _run(tasks: Sequence[Callable[[], Any]], workers: int | None) -> list[Any]:
    """Run tasks, on threads when there are several (numpy sorts release the GIL)."""
    n = _default_workers(len(tasks)) if workers is None else max(1, workers)
    if n == 1 or len(tasks) < 2:
        return [t() for t in tasks]
    with ThreadPoolExecutor(max_workers=n, thread_name_prefix="mlwatch-drift") as pool:
        return list(pool.map(lambda t: t(), tasks))


def _run_columns(names: Sequence[str], kinds: Mapping[str, str], task: Callable[[str], Any],
                 workers: int | None) -> list[Any]:
    """``[task(name) for name in names]``, categorical columns together on one thread.

    Counting categories is Python-level hashing that holds the GIL, sorting numbers is
    not: two threads counting categories would only take turns, so all categorical
    columns form one job (submitted first, as the longest) while numeric columns spread
    over the other workers.
    """
    categorical = [n for n in names if kinds[n] == CATEGORICAL]
    numeric = [n for n in names if kinds[n] != CATEGORICAL]
    jobs: list[Callable[[], list[tuple[str, Any]]]] = []
    if categorical:
        jobs.append(lambda: [(n, task(n)) for n in categorical])
    jobs += [partial(lambda n: [(n, task(n))], n) for n in numeric]
    done = dict(pair for batch in _run(jobs, workers) for pair in batch)
    return [done[n] for n in names]


_Column = tuple[str, NumericPair | CategoryTable, Quality, Quality, tuple[str, ...]]
"""(type, pair or table, reference quality, current quality, flags) of one feature."""

DEFAULT_BATTERY = ("ks", "wasserstein", "psi", "js", "chisquare")


def _prepared(col: Any, kind: str) -> PreparedColumn:
    if isinstance(col, PreparedColumn):
        if col.type != kind:
            raise ConfigError("types", f"a prepared {col.type} column cannot be compared as {kind}")
        return col
    return PreparedColumn.build(col, kind)


def _columns_of(reference: Any, current: Any, types: Mapping[str, str] | None,
                columns: Sequence[str] | None
                ) -> tuple[list[str], dict[str, str], Callable[[str], _Column]]:
    """The features to compare and a function building one feature's pair (raw or profiles)."""
    if isinstance(reference, DatasetProfile) and not isinstance(current, DatasetProfile):
        raw, current = current, reference.new_window()
        current.update(raw)  # profile the current data on the reference's layout
    if isinstance(reference, DatasetProfile) or isinstance(current, DatasetProfile):
        if not (isinstance(reference, DatasetProfile) and isinstance(current, DatasetProfile)):
            raise ConfigError("reference", "a current profile needs a reference profile")
        names = list(columns) if columns is not None else list(reference.columns)
        unknown = [n for n in names if n not in reference.columns]
        if unknown:
            raise ConfigError("columns", f"not in the reference profile: {unknown}")
        kinds = {n: reference.columns[n].type for n in names}
        return names, kinds, partial(_profile_column, reference, current)
    ref_cols: Mapping[str, Any] = (reference.columns if isinstance(reference, PreparedData)
                                   else as_columns(reference))
    cur_cols: Mapping[str, Any] = (current.columns if isinstance(current, PreparedData)
                                   else as_columns(current))
    names = list(columns) if columns is not None else list(ref_cols)
    unknown = [n for n in names if n not in ref_cols]
    if unknown:
        raise ConfigError("columns", f"not in the reference: {unknown}")
    if isinstance(reference, PreparedData):
        kinds = {n: reference.columns[n].type for n in names}
    else:
        kinds = _resolve_types({n: ref_cols[n] for n in names}, types)

    def column(name: str) -> _Column:
        kind = kinds[name]
        ref = _prepared(ref_cols[name], kind)
        absent = name not in cur_cols
        cur = PreparedColumn.absent(kind) if absent else _prepared(cur_cols[name], kind)
        flags = ("missing_in_current",) if absent else ()
        data: NumericPair | CategoryTable
        if kind == NUMERIC:
            assert ref.values is not None and cur.values is not None
            data = _CachingPair(ref, cur.values)
        else:
            assert ref.counts is not None and cur.counts is not None
            data = CategoryTable.from_counts(ref.counts, cur.counts)
        return kind, data, ref.quality, cur.quality, flags

    return names, kinds, column


class _CachingPair(ExactPair):
    """An exact pair that leaves its reference's standard deviation in the prepared column."""

    def __init__(self, ref: PreparedColumn, cur: np.ndarray) -> None:
        assert ref.values is not None
        super().__init__(ref.values, cur, edges_cache=ref.edges, std=ref.std)
        self._ref = ref

    def ref_std(self) -> float:
        std = super().ref_std()
        self._ref.std = std
        return std


def _profile_column(reference: DatasetProfile, current: DatasetProfile, name: str) -> _Column:
    ref = reference.columns[name]
    cur = current.columns.get(name)
    flags: tuple[str, ...] = ()
    if cur is None:
        cur, flags = ref.empty_like(), ("missing_in_current",)
    data: NumericPair | CategoryTable
    if isinstance(ref, NumericProfile) and isinstance(cur, NumericProfile):
        data = HistogramPair(ref, cur)
    elif isinstance(ref, CategoricalProfile) and isinstance(cur, CategoricalProfile):
        data = category_table(ref, cur)
    else:
        raise ValueError(f"feature {name!r} is {ref.type} in the reference profile and "
                         f"{cur.type} in the current one")
    return ref.type, data, ref.quality, cur.quality, flags


def compare(reference: Any, current: Any, *, types: Mapping[str, str] | None = None,
            method: str | Mapping[str, str] | None = None, alpha: float = 0.05,
            thresholds: Mapping[str, float] | None = None, correction: str | None = None,
            min_effect: float | None = None, drift_share: float = 0.5, bins: int = 10,
            columns: Sequence[str] | None = None, workers: int | None = None) -> DriftReport:
    """Compare current data with reference data, feature by feature, and decide.

    ``reference`` and ``current``: pandas DataFrames, mappings of column name to numpy
    array or list, or :class:`PreparedData` (see :func:`prepare`) — or two
    :class:`~mlwatch.stats.profile.DatasetProfile` (then as :func:`compare_profiles`), or
    a reference profile and raw current data (profiled on the reference's layout first).
    The features are the reference's columns (or ``columns``), in order; a feature
    absent from ``current`` is reported with no current data. ``bins`` is the number of
    reference-quantile bins of the binned statistics on numeric features. ``workers``
    threads process columns in parallel (default: up to 4, the CPU count). Other
    arguments: see the module docstring.
    """
    opts = _Options.build(method, alpha, thresholds, correction, min_effect, drift_share, bins)
    names, kinds, column = _columns_of(reference, current, types, columns)

    def task(name: str) -> FeatureDrift:
        kind, data, q_ref, q_cur, flags = column(name)
        return _evaluate(name, kind, data, q_ref, q_cur, opts, flags,
                         _choose(opts, name, kind, data))

    workers = 1 if isinstance(reference, DatasetProfile) else workers
    return _finish(_run_columns(names, kinds, task, workers), opts)


def compare_profiles(reference: DatasetProfile, current: DatasetProfile, *,
                     method: str | Mapping[str, str] | None = None, alpha: float = 0.05,
                     thresholds: Mapping[str, float] | None = None,
                     correction: str | None = None, min_effect: float | None = None,
                     drift_share: float = 0.5, bins: int = 10,
                     columns: Sequence[str] | None = None) -> DriftReport:
    """Compare two profiles built on the same reference layout; same report as :func:`compare`.

    Binned and categorical statistics are exactly those of the raw data; KS and
    Wasserstein are estimated from the fine histograms with a bound in ``details``
    (flag ``approximate``) unless both reservoirs are complete; Anderson-Darling and
    Cramér-von Mises run on the reservoirs (flag ``sampled``). ``bins`` must be one of
    the reference profile's ``psi_bins``.
    """
    if not isinstance(reference, DatasetProfile) or not isinstance(current, DatasetProfile):
        raise ConfigError("reference", "compare_profiles takes two DatasetProfile objects")
    return compare(reference, current, method=method, alpha=alpha, thresholds=thresholds,
                   correction=correction, min_effect=min_effect, drift_share=drift_share,
                   bins=bins, columns=columns)


def battery(reference: Any, current: Any, methods: Sequence[str] = DEFAULT_BATTERY, *,
            types: Mapping[str, str] | None = None, alpha: float = 0.05,
            thresholds: Mapping[str, float] | None = None, correction: str | None = None,
            min_effect: float | None = None, drift_share: float = 0.5, bins: int = 10,
            columns: Sequence[str] | None = None,
            workers: int | None = None) -> dict[str, DriftReport]:
    """Several statistics at once: ``{method: report over the features it accepts}``.

    Each column is prepared (sorted, merged, counted) once and every method runs on the
    same pair, so the battery costs little more than its most expensive member. Inputs
    and options as :func:`compare` (raw data, prepared data or profiles).
    """
    resolved = [get_method(m) for m in methods]
    opts = _Options.build(None, alpha, thresholds, correction, min_effect, drift_share, bins)
    names, kinds, column = _columns_of(reference, current, types, columns)

    def task(name: str) -> dict[str, FeatureDrift]:
        kind, data, q_ref, q_cur, flags = column(name)
        return {m.name: _evaluate(name, kind, data, q_ref, q_cur, opts, flags, m)
                for m in resolved if kind in m.types}

    workers = 1 if isinstance(reference, DatasetProfile) else workers
    per_column = _run_columns(names, kinds, task, workers)
    return {m.name: _finish([r[m.name] for r in per_column if m.name in r], opts)
            for m in resolved}
