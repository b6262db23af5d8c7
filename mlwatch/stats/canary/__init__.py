"""Canary and A/B comparison of two versions of a model: :func:`compare_versions`.

For a baseline A and a candidate B over the same period: each KPI that is a mean of
per-row values (accuracy, log loss, Brier; MAE, MSE, MAPE), the error ratio and the
latency p50 and p99 get the difference ``B - A`` with an anytime-valid confidence
sequence, so the verdict (``better``, ``worse``, ``no difference``, ``not enough data``
against a margin) may be checked on every scheduler run without inflating its error
rate. docs/compare.md states the method and its parameters.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> y = rng.integers(0, 2, 5000)
>>> a = Sample("classification", y, np.where(rng.random(5000) < 0.80, y, 1 - y), classes=(0, 1))
>>> b = Sample("classification", y, np.where(rng.random(5000) < 0.85, y, 1 - y), classes=(0, 1))
>>> result = compare_versions(a, b, CompareOptions(margins={"accuracy": 0.01}, gate=["accuracy"]))
>>> result.verdict, round(result.differences["accuracy"].difference, 3)
('better', 0.05)
"""

from mlwatch.stats.canary.quantiles import quantile_difference, quantile_interval
from mlwatch.stats.canary.results import Comparison, Difference
from mlwatch.stats.canary.samples import (
    ERROR_RATIO,
    LATENCY_QUANTILES,
    MEAN_KPIS,
    Sample,
    encode_classes,
    kpis_of,
    row_values,
)
from mlwatch.stats.canary.sequences import (
    difference_interval,
    fixed_half_width,
    mixing_variance,
    mixture_half_width,
    proportion_stats,
)
from mlwatch.stats.canary.verdicts import (
    BETTER,
    NO_DIFFERENCE,
    NOT_ENOUGH_DATA,
    VERDICT_CODES,
    VERDICTS,
    WORSE,
    overall,
    verdict,
)
from mlwatch.stats.canary.versions import CompareOptions, compare_versions

__all__ = [
    "BETTER",
    "ERROR_RATIO",
    "LATENCY_QUANTILES",
    "MEAN_KPIS",
    "NOT_ENOUGH_DATA",
    "NO_DIFFERENCE",
    "VERDICTS",
    "VERDICT_CODES",
    "WORSE",
    "CompareOptions",
    "Comparison",
    "Difference",
    "Sample",
    "compare_versions",
    "difference_interval",
    "encode_classes",
    "fixed_half_width",
    "kpis_of",
    "mixing_variance",
    "mixture_half_width",
    "overall",
    "proportion_stats",
    "quantile_difference",
    "quantile_interval",
    "row_values",
    "verdict",
]
