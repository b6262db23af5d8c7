"""One version's side of a comparison (:class:`Sample`), and the KPIs that are means of
per-row values (:data:`MEAN_KPIS`, :func:`row_values`).

A KPI can be compared with a confidence sequence when it is the mean of one value per
labelled row: an indicator (accuracy) or a loss (log loss, Brier, absolute, squared and
percentage errors). Precision, recall and F1 are ratios over subsets of rows that depend
on the predictions themselves, ROC AUC is a pairwise statistic, R^2 a ratio of two sums
and ECE a binned, biased statistic: none is such a mean, and none is compared.
``mse`` stands for RMSE: RMSE_B > RMSE_A exactly when MSE_B > MSE_A, and the margin is in
squared units.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from mlwatch.stats.kpi.kernels import LOG_LOSS_EPS, MAPE_EPS, FloatArray, _brier_terms

#: name -> (task, higher is better, needs probabilities)
MEAN_KPIS: dict[str, tuple[str, bool, bool]] = {
    "accuracy": ("classification", True, False),
    "log_loss": ("classification", False, True),
    "brier": ("classification", False, True),
    "mae": ("regression", False, False),
    "mse": ("regression", False, False),
    "mape": ("regression", False, False),
}
#: KPIs of every task: the share of events with status "error", and latency quantiles.
ERROR_RATIO = "error_ratio"
LATENCY_QUANTILES = {"latency_p50": 0.5, "latency_p99": 0.99}


@dataclass(frozen=True)
class Sample:
    """The labelled rows and the events of one version over the compared period.

    ``y_true``/``y_pred`` are class codes (indices into ``classes``) for classification
    and floats for regression; ``proba`` is ``(n, len(classes))`` in code order with NaN
    rows where a prediction had no probabilities. ``latency_ms`` covers every event,
    labelled or not; ``n_events``/``n_errors`` count the events and those with status
    ``error``.
    """

    task: str
    y_true: npt.NDArray[Any]
    y_pred: npt.NDArray[Any]
    proba: FloatArray | None = None
    classes: tuple[Any, ...] = ()
    latency_ms: FloatArray | None = None
    n_events: int = 0
    n_errors: int = 0

    @property
    def n_labelled(self) -> int:
        return len(self.y_true)

    def predicted_values(self) -> npt.NDArray[Any]:
        """The predictions as values (class names as strings), for the drift statistics."""
        if self.task == "regression":
            return np.asarray(self.y_pred, dtype=np.float64)
        names = np.array([str(c) for c in self.classes] or [""], dtype=object)
        return names[np.asarray(self.y_pred, dtype=np.int64)] if len(self.y_pred) else names[:0]


def kpis_of(task: str, has_proba: bool) -> list[str]:
    """The per-row-mean KPIs that apply to a task (those needing probabilities only with)."""
    return [k for k, (t, _, p) in MEAN_KPIS.items() if t == task and (has_proba or not p)]


def row_values(kpi: str, sample: Sample) -> FloatArray:
    """The per-row values whose mean is ``kpi`` (rows without probabilities left out)."""
    if kpi == "accuracy":
        correct: FloatArray = (np.asarray(sample.y_true) == np.asarray(sample.y_pred)).astype(
            np.float64
        )
        return correct
    if kpi in ("log_loss", "brier"):
        if sample.proba is None:
            return np.zeros(0)
        rows = np.isfinite(sample.proba).all(axis=1)
        y = np.asarray(sample.y_true, dtype=np.int64)[rows]
        p = sample.proba[rows]
        if kpi == "brier":
            return _brier_terms(y, p)
        picked = np.clip(p[np.arange(len(y)), y], LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS)
        return np.asarray(-np.log(picked), dtype=np.float64)
    t = np.asarray(sample.y_true, dtype=np.float64)
    e = t - np.asarray(sample.y_pred, dtype=np.float64)
    if kpi == "mae":
        return np.abs(e)
    if kpi == "mse":
        return np.asarray(e**2, dtype=np.float64)
    if kpi == "mape":
        return np.asarray(np.abs(e) / np.maximum(np.abs(t), MAPE_EPS), dtype=np.float64)
    raise ValueError(f"{kpi!r} is not a per-row mean KPI; those are {', '.join(MEAN_KPIS)}")


def encode_classes(
    *columns: Sequence[Any] | npt.NDArray[Any],
) -> tuple[list[npt.NDArray[np.int64]], tuple[Any, ...]]:
    """Class codes of several label/prediction columns over their joint sorted classes."""
    flat = [np.asarray(c, dtype=object).ravel() for c in columns]
    joined = np.concatenate(flat) if flat else np.zeros(0, dtype=object)
    keys = [(isinstance(v, str), v) for v in joined]
    classes = tuple(v for _, v in sorted(set(keys)))
    index = {c: i for i, c in enumerate(classes)}
    codes = []
    for col in flat:
        codes.append(np.fromiter((index[v] for v in col), dtype=np.int64, count=len(col)))
    return codes, classes
