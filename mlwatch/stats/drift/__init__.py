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

The layers, each a module: :mod:`.report` (the result types and their JSON),
:mod:`.prepared` (raw columns sorted and counted once, :func:`prepare`), :mod:`.options`
(the arguments checked; per feature the method, threshold and effect size),
:mod:`.features` (the features of the inputs, each one's pair or table), :mod:`.evaluate`
(one feature scored, then the dataset decided) and :mod:`.parallel` (columns on a
thread pool); this module drives them.

>>> import numpy as np
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

from collections.abc import Mapping, Sequence
from typing import Any

from mlwatch.errors import ConfigError
from mlwatch.stats.drift.evaluate import _evaluate, _finish
from mlwatch.stats.drift.features import _columns_of
from mlwatch.stats.drift.options import CORRECTIONS, _choose, _Options
from mlwatch.stats.drift.parallel import _run_columns
from mlwatch.stats.drift.prepared import PreparedColumn, PreparedData, prepare
from mlwatch.stats.drift.report import DriftReport, FeatureDrift
from mlwatch.stats.profile import DatasetProfile
from mlwatch.stats.registry import get_method

__all__ = [
    "CORRECTIONS", "DEFAULT_BATTERY", "DriftReport", "FeatureDrift", "PreparedColumn",
    "PreparedData", "battery", "compare", "compare_profiles", "prepare",
]

DEFAULT_BATTERY = ("ks", "wasserstein", "psi", "js", "chisquare")


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
