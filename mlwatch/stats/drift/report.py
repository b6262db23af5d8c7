"""The drift results: one :class:`FeatureDrift` per feature, the :class:`DriftReport`.

``DriftReport.to_dict()`` is the JSON of ``mlwatch drift --format json`` (its keys: the
docstring of :mod:`.drift`). The objects keep the floats as computed; in the JSON,
numpy scalars become Python numbers and numbers that are not finite (an infinite
normalised distance against a constant reference) become ``null``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlwatch.stats.columns import CATEGORICAL, Quality


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
            "name": self.name,
            "type": self.type,
            "method": self.method,
            "score": _jsonable(self.score),
            "p_value": _jsonable(self.p_value),
            "threshold": _jsonable(self.threshold),
            "drifted": self.drifted,
            "kind": self.kind,
            "effect": _jsonable(self.effect),
            "quality": {
                "reference": self.reference_quality.to_dict(),
                "current": self.current_quality.to_dict(),
            },
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
        return {
            "features": [f.to_dict() for f in self.features],
            "drift_share": self.drift_share,
            "dataset_drift": self.dataset_drift,
            "drift_share_threshold": self.drift_share_threshold,
            "n_features": len(self.features),
            "n_evaluated": self.n_evaluated,
            "n_drifted": self.n_drifted,
            "alpha": self.alpha,
            "correction": self.correction,
            "corrected_threshold": _jsonable(self.corrected_threshold),
            "min_effect": self.min_effect,
        }
