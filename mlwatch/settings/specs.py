"""What mlwatch knows about a model beyond its events: features, task, where the
prediction and the label are, and its monitoring (the ``models`` list of the config file).

Parsed and checked by :mod:`mlwatch.settings.models`; an error names the key, e.g.
``models[0].features[2].type``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlwatch.settings.alerts import AlertSpec
from mlwatch.settings.compare import CompareSpec
from mlwatch.settings.retrain import RetrainSpec

TASKS = ("classification", "regression")
FEATURE_TYPES = ("numeric", "categorical")
SENSITIVE_ACTIONS = ("hash", "drop")


@dataclass(frozen=True)
class FeatureSpec:
    """One input feature of a model: its type drives metrics and drift methods."""

    name: str
    type: str = "numeric"
    sensitive: str | None = None  # None, "hash" or "drop"


@dataclass(frozen=True)
class Monitoring:
    """The drift and KPI jobs of one model (the ``reference``, ``schedule``, ``window``,
    ``drift`` and ``kpi`` keys of a model spec)."""

    reference: str | None = None  # a CSV or Parquet file of reference inputs
    reference_window: tuple[str, str] | None = None  # or [since, until] of served traffic
    reference_mlflow: tuple[str, str] | None = None  # or (model URI, artifact path) in MLflow
    every_s: float | None = 300.0  # interval trigger...
    cron: str | None = None  # ...or a crontab expression (then every_s is None)
    window_s: float = 3600.0
    sliding: bool = False  # tumbling windows unless set
    settle_s: float = 60.0  # a tumbling window is evaluated this long after it closes
    method: str | None = None  # force one drift method; None = auto selection
    alpha: float = 0.05
    correction: str | None = None  # None, "bonferroni" or "bh"
    min_effect: float | None = None
    drift_share: float = 0.5
    kpi_min_samples: int = 100
    kpi_lookback: int = 24  # windows recomputed each run, so late labels update them
    compare: CompareSpec | None = None  # the canary / A-B job; None = not run


@dataclass(frozen=True)
class ModelSpec:
    """What mlwatch knows about a model beyond its events."""

    name: str
    version: str | None = None
    mlflow: str | None = None  # an MLflow model URI that names the version (models:/, runs:/)
    task: str = "classification"
    features: tuple[FeatureSpec, ...] = ()
    prediction_field: str | None = None  # dotted path in the return value; None = the value itself
    label_field: str | None = None  # dotted path in the feedback label; None = the label itself
    score_field: str | None = None  # dotted path of the class probabilities ("" = the prediction)
    classes: tuple[Any, ...] | None = None  # class of each probability index
    value_buckets: tuple[float, ...] | None = None  # regression: mlwatch_prediction_value's
    alerts: AlertSpec | None = None  # thresholds and objectives of its generated alert rules
    retrain: RetrainSpec | None = None  # what starts its retraining, and where
    monitoring: Monitoring | None = None  # drift and KPI jobs; None = not scheduled

    def feature(self, name: str) -> FeatureSpec | None:
        for spec in self.features:
            if spec.name == name:
                return spec
        return None
