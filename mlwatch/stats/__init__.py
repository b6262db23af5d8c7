"""Statistics of the scheduler: drift (this package's top level) and KPIs (:mod:`.kpi`).

Drift, in layers (each module's docstring has the details):

- :mod:`.registry` — the drift statistics (``ks``, ``wasserstein``, ``psi``, ``js``,
  ``hellinger``, ``kl``, ``tvd``, ``anderson``, ``cvm``, ``chisquare``), each with its
  definition, accepted column types, kind (test or distance) and default threshold,
  and the auto-selection rule;
- :mod:`.drift` — :func:`compare` (raw data) and :func:`compare_profiles` (profiles)
  producing a :class:`DriftReport` (the ``mlwatch drift`` JSON, :mod:`.drift.report`),
  with multiple-testing correction, a minimum effect size and the dataset-level decision
  (:mod:`.drift.options`, :mod:`.drift.evaluate`); :func:`battery` runs several
  statistics on the same columns, :func:`prepare` (:mod:`.drift.prepared`) sorts and
  counts a reference once; :mod:`.drift.features` builds each feature's pair,
  :mod:`.drift.parallel` runs them on threads;
- :mod:`.profile` — :class:`DatasetProfile`, the mergeable per-window summaries the
  sidecar keeps and the store persists, one :mod:`.numeric_profile` (with its
  :mod:`.reservoir` sample) or :mod:`.categorical_profile` per feature;
  :mod:`.histograms` shows two profiles to the statistics as pairs;
- :mod:`.columns`, :mod:`.numeric`, :mod:`.distances`, :mod:`.pairs` — input coercion
  and data quality, and the vectorised kernels.

The names below are imported on first use, so ``import mlwatch.stats.kpi`` does not pay
for SciPy.

>>> import mlwatch.stats as st
>>> st.get_method("ks").kind, "compare" in st.__all__
('test', True)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlwatch.stats.columns import CATEGORICAL, NUMERIC, Quality
    from mlwatch.stats.drift import battery, compare, compare_profiles
    from mlwatch.stats.drift.prepared import PreparedData, prepare
    from mlwatch.stats.drift.report import DriftReport, FeatureDrift
    from mlwatch.stats.profile import CategoricalProfile, DatasetProfile, NumericProfile
    from mlwatch.stats.registry import (
        METHODS,
        DriftMethod,
        auto_method,
        get_method,
        methods_for,
        register_method,
    )

_EXPORTS = {
    "CATEGORICAL": "columns",
    "NUMERIC": "columns",
    "Quality": "columns",
    "DriftReport": "drift.report",
    "FeatureDrift": "drift.report",
    "PreparedData": "drift.prepared",
    "prepare": "drift.prepared",
    "battery": "drift",
    "compare": "drift",
    "compare_profiles": "drift",
    "CategoricalProfile": "profile",
    "DatasetProfile": "profile",
    "NumericProfile": "profile",
    "METHODS": "registry",
    "DriftMethod": "registry",
    "auto_method": "registry",
    "get_method": "registry",
    "methods_for": "registry",
    "register_method": "registry",
}

__all__ = [
    "CATEGORICAL",
    "METHODS",
    "NUMERIC",
    "CategoricalProfile",
    "DatasetProfile",
    "DriftMethod",
    "DriftReport",
    "FeatureDrift",
    "NumericProfile",
    "PreparedData",
    "Quality",
    "auto_method",
    "battery",
    "compare",
    "compare_profiles",
    "get_method",
    "methods_for",
    "prepare",
    "register_method",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mlwatch.stats' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"mlwatch.stats.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
