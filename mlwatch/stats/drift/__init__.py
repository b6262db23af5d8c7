"""Dataset-level drift: every feature compared, then one decision for the dataset.

:func:`compare` takes raw data (pandas DataFrames, or mappings of numpy arrays or
lists), :func:`compare_profiles` two :class:`~mlwatch.stats.profile.DatasetProfile`;
both return a :class:`DriftReport` whose :meth:`~DriftReport.to_dict` is the JSON of
``mlwatch drift --format json``. :func:`battery` runs several statistics over the same
prepared columns (one report per statistic), and :func:`prepare` sorts and counts a
reference once for many comparisons. The report's fields, and the rules per feature
(type, method, quality, threshold) and for the dataset (correction, minimum effect,
drift share), are in docs/drift-and-kpis.md.

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
    "CORRECTIONS",
    "DEFAULT_BATTERY",
    "DriftReport",
    "FeatureDrift",
    "PreparedColumn",
    "PreparedData",
    "battery",
    "compare",
    "compare_profiles",
    "prepare",
]

DEFAULT_BATTERY = ("ks", "wasserstein", "psi", "js", "chisquare")


def compare(
    reference: Any,
    current: Any,
    *,
    types: Mapping[str, str] | None = None,
    method: str | Mapping[str, str] | None = None,
    alpha: float = 0.05,
    thresholds: Mapping[str, float] | None = None,
    correction: str | None = None,
    min_effect: float | None = None,
    drift_share: float = 0.5,
    bins: int = 10,
    columns: Sequence[str] | None = None,
    workers: int | None = None,
) -> DriftReport:
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
        return _evaluate(
            name, kind, data, q_ref, q_cur, opts, flags, _choose(opts, name, kind, data)
        )

    workers = 1 if isinstance(reference, DatasetProfile) else workers
    return _finish(_run_columns(names, kinds, task, workers), opts)


def compare_profiles(
    reference: DatasetProfile,
    current: DatasetProfile,
    *,
    method: str | Mapping[str, str] | None = None,
    alpha: float = 0.05,
    thresholds: Mapping[str, float] | None = None,
    correction: str | None = None,
    min_effect: float | None = None,
    drift_share: float = 0.5,
    bins: int = 10,
    columns: Sequence[str] | None = None,
) -> DriftReport:
    """Compare two profiles built on the same reference layout; same report as :func:`compare`.

    Binned and categorical statistics are exactly those of the raw data; KS and
    Wasserstein are estimated from the fine histograms with a bound in ``details``
    (flag ``approximate``) unless both reservoirs are complete; Anderson-Darling and
    Cramér-von Mises run on the reservoirs (flag ``sampled``). ``bins`` must be one of
    the reference profile's ``psi_bins``.
    """
    if not isinstance(reference, DatasetProfile) or not isinstance(current, DatasetProfile):
        raise ConfigError("reference", "compare_profiles takes two DatasetProfile objects")
    return compare(
        reference,
        current,
        method=method,
        alpha=alpha,
        thresholds=thresholds,
        correction=correction,
        min_effect=min_effect,
        drift_share=drift_share,
        bins=bins,
        columns=columns,
    )


def battery(
    reference: Any,
    current: Any,
    methods: Sequence[str] = DEFAULT_BATTERY,
    *,
    types: Mapping[str, str] | None = None,
    alpha: float = 0.05,
    thresholds: Mapping[str, float] | None = None,
    correction: str | None = None,
    min_effect: float | None = None,
    drift_share: float = 0.5,
    bins: int = 10,
    columns: Sequence[str] | None = None,
    workers: int | None = None,
) -> dict[str, DriftReport]:
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
        return {
            m.name: _evaluate(name, kind, data, q_ref, q_cur, opts, flags, m)
            for m in resolved
            if kind in m.types
        }

    workers = 1 if isinstance(reference, DatasetProfile) else workers
    per_column = _run_columns(names, kinds, task, workers)
    return {m.name: _finish([r[m.name] for r in per_column if m.name in r], opts) for m in resolved}
