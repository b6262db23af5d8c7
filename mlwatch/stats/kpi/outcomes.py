"""Each labelled prediction as right or wrong: what a model-quality SLO counts
(``mlwatch_labelled_predictions_total{outcome}``), read the way the KPIs read it.

>>> rows = [({"prediction": p, "ts_us": 0}, y) for p, y in [(1, 1), (0, 1), (2, 2), (1, None)]]
>>> outcomes(rows, task="classification")
(2, 1)
>>> outcomes([({"prediction": 10.0, "ts_us": 0}, 12.5)], task="regression", tolerance=3.0)
(1, 0)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from mlwatch.stats.kpi.inputs import kpi_inputs


def outcomes(
    rows: Iterable[Any],
    *,
    task: str,
    score_field: str | None = None,
    classes: Sequence[Any] | None = None,
    tolerance: float | None = None,
) -> tuple[int, int]:
    """(right, wrong) among joined ``(event, label)`` rows; rows without a label or with
    values the KPIs cannot use count as neither. A regression prediction is right within
    ``tolerance`` of its label; without a tolerance regression rows are not counted."""
    if task == "regression" and tolerance is None:
        return 0, 0
    inp = kpi_inputs(rows, task=task, score_field=score_field, classes=classes)
    if task == "regression":
        assert tolerance is not None
        right = np.abs(inp.y_true - inp.y_pred) <= tolerance
    else:
        right = inp.y_true == inp.y_pred
    n = int(right.sum())
    return n, int(right.size) - n
