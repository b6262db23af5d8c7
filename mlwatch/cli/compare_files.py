"""Two prediction files as comparison samples (``mlwatch compare --baseline-file ...``).

Files are read by :mod:`mlwatch.store.tables`, as ``mlwatch drift`` reads them. Each holds
one row per prediction: the label (``--label-column``), the prediction
(``--prediction-column``) and, when present, the latency (``--latency-column``, default
``latency_ms``), the status (``--status-column``, default ``status``: rows ``error`` count
in the error ratio and are not scored) and class probabilities (``--score-columns``: one
column, the positive class's probability of a binary model, or one per class in sorted
class order). Rows without a label are not scored. A column a file lacks is an error that
names the file and the column.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from mlwatch.errors import InputError
from mlwatch.stats.canary import Sample, encode_classes


def _column(data: Mapping[str, Any], name: str, path: str, flag: str) -> np.ndarray:
    if name not in data:
        listed = ", ".join(list(data)[:10])
        raise InputError(f"{path}: no column {name!r} ({flag}); its columns: {listed}")
    col = data[name]
    return np.asarray(col.astype(object) if hasattr(col, "categories") else col)


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _as_class(value: Any) -> Any:
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return int(value)
    return value.item() if isinstance(value, np.generic) else value


def infer_task(data: Mapping[str, Any], prediction: str, path: str) -> str:
    """Regression when the predictions are numbers and some are not whole, else
    classification."""
    pred = _column(data, prediction, path, "--prediction-column")
    if pred.dtype.kind == "f":
        finite = pred[np.isfinite(pred)]
        return "regression" if np.any(finite != np.round(finite)) else "classification"
    return "classification"


def file_samples(
    files: tuple[tuple[str, Mapping[str, Any]], tuple[str, Mapping[str, Any]]],
    args: Any,
    task: str,
) -> tuple[Sample, Sample]:
    """The baseline and candidate samples of two read files (``(path, columns)`` each)."""
    parts = [_read(path, data, args, task) for path, data in files]
    if task == "regression":
        return tuple(_sample(task, p, p["y"], p["pred"], None, ()) for p in parts)  # type: ignore[return-value]
    codes, classes = encode_classes(*(c for p in parts for c in (p["y"], p["pred"])))
    samples = []
    for i, p in enumerate(parts):
        proba = _proba(p["scores"], len(classes), files[i][0]) if p["scores"] is not None else None
        samples.append(_sample(task, p, codes[2 * i], codes[2 * i + 1], proba, classes))
    return samples[0], samples[1]


def _read(path: str, data: Mapping[str, Any], args: Any, task: str) -> dict[str, Any]:
    y = _column(data, args.label_column, path, "--label-column")
    pred = _column(data, args.prediction_column, path, "--prediction-column")
    status = _optional(data, args.status_column, "status", path, "--status-column")
    latency = _optional(data, args.latency_column, "latency_ms", path, "--latency-column")
    error = np.zeros(len(y), dtype=bool) if status is None else (status.astype(str) == "error")
    scored = ~error & np.fromiter((_present(v) for v in y), dtype=bool, count=len(y))
    scored &= np.fromiter((_present(v) for v in pred), dtype=bool, count=len(pred))
    names = [c for c in (args.score_columns or "").split(",") if c]
    scores = None
    if names:
        cols = [_floats(_column(data, c, path, "--score-columns"), path, c) for c in names]
        scores = np.column_stack(cols)[scored]
    if task == "regression":
        y_out, pred_out = (
            _floats(y[scored], path, args.label_column),
            _floats(pred[scored], path, args.prediction_column),
        )
    else:
        y_out = np.array([_as_class(v) for v in y[scored]], dtype=object)
        pred_out = np.array([_as_class(v) for v in pred[scored]], dtype=object)
    lat = None if latency is None else _floats(latency, path, "latency")
    return {"y": y_out, "pred": pred_out, "scores": scores, "latency": lat, "errors": error}


def _optional(
    data: Mapping[str, Any], name: str | None, default: str, path: str, flag: str
) -> np.ndarray | None:
    if name is not None:
        return _column(data, name, path, flag)
    return _column(data, default, path, flag) if default in data else None


def _floats(values: np.ndarray, path: str, column: str) -> np.ndarray:
    try:
        out = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{path}: column {column!r} is not numeric") from None
    return out


def _proba(scores: np.ndarray, k: int, path: str) -> np.ndarray:
    if scores.shape[1] == 1:
        if k > 2:
            raise InputError(f"{path}: one --score-columns column needs two classes, not {k}")
        return np.column_stack([1.0 - scores[:, 0], scores[:, 0]])
    if scores.shape[1] != k:
        raise InputError(f"{path}: {scores.shape[1]} --score-columns for {k} classes")
    return scores


def _sample(
    task: str, part: dict[str, Any], y: Any, pred: Any, proba: Any, classes: tuple[Any, ...]
) -> Sample:
    errors = part["errors"]
    return Sample(task, y, pred, proba, classes, part["latency"], len(errors), int(errors.sum()))
