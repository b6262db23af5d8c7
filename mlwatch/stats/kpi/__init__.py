"""Model-performance KPIs from predictions joined to their ground truth.

The inputs are the rows of :meth:`mlwatch.store.EmbeddedStore.joined`: each event joined
by ``request_id`` to its newest feedback label (``None`` while the label has not
arrived). Rows are read again on every run, so a late label joins its event the next
time and changes the window of its *prediction*, never the current one. Three layers,
each usable alone: :mod:`.metrics` (pure NumPy functions over arrays, scikit-learn's
definitions, over the batched kernels of :mod:`.kernels`); :mod:`.inputs` (joined rows
to arrays, :func:`kpi_inputs`); :mod:`.report` (:func:`compute_kpis`,
:func:`window_kpis`: KPIs with confidence intervals, see :mod:`.intervals`).

>>> rows = [({"prediction": p}, y) for p, y in [(1, 1), (0, 0), (1, 0), (0, 0)] * 25]
>>> rows.append(({"prediction": 1}, None))  # a label that has not arrived yet
>>> report = compute_kpis(rows, min_samples=50)
>>> acc = report.kpis["accuracy"]
>>> report.n_labelled, report.n_missing, acc.value, round(acc.lower, 3), round(acc.upper, 3)
(100, 1, 0.75, 0.657, 0.825)
>>> compute_kpis(rows[:10], min_samples=50).kpis["accuracy"].reason
'10 labelled predictions, fewer than min_samples=50'
"""

from mlwatch.stats.kpi.inputs import PROBA_SUM_TOLERANCE, KPIInputs, kpi_inputs
from mlwatch.stats.kpi.intervals import wilson_interval
from mlwatch.stats.kpi.kernels import LOG_LOSS_EPS, MAPE_EPS, BoolArray, FloatArray, IntArray
from mlwatch.stats.kpi.metrics import (
    accuracy,
    brier_score,
    expected_calibration_error,
    log_loss,
    mean_absolute_error,
    mean_absolute_percentage_error,
    precision_recall_f1,
    r2_score,
    roc_auc,
    root_mean_squared_error,
)
from mlwatch.stats.kpi.report import compute_kpis, kpis_from_inputs, window_kpis
from mlwatch.stats.kpi.results import (
    CLASSIFICATION_KPIS,
    KPI,
    PROBA_KPIS,
    REGRESSION_KPIS,
    KPIReport,
)
from mlwatch.stats.kpi.rows import (
    BAD_LABEL,
    BAD_PREDICTION,
    ERROR_EVENT,
    NEEDS_CLASSES,
    NO_PREDICTION,
    REASONS,
    UNKNOWN_CLASS,
)

__all__ = [
    "BAD_LABEL",
    "BAD_PREDICTION",
    "CLASSIFICATION_KPIS",
    "ERROR_EVENT",
    "KPI",
    "LOG_LOSS_EPS",
    "MAPE_EPS",
    "NEEDS_CLASSES",
    "NO_PREDICTION",
    "PROBA_KPIS",
    "PROBA_SUM_TOLERANCE",
    "REASONS",
    "REGRESSION_KPIS",
    "UNKNOWN_CLASS",
    "BoolArray",
    "FloatArray",
    "IntArray",
    "KPIInputs",
    "KPIReport",
    "accuracy",
    "brier_score",
    "compute_kpis",
    "expected_calibration_error",
    "kpi_inputs",
    "kpis_from_inputs",
    "log_loss",
    "mean_absolute_error",
    "mean_absolute_percentage_error",
    "precision_recall_f1",
    "r2_score",
    "roc_auc",
    "root_mean_squared_error",
    "wilson_interval",
    "window_kpis",
]
