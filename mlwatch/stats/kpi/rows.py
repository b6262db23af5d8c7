"""One joined row: its parts and timestamp, its values, and why it may not be scored.

The first pass of :func:`~mlwatch.stats.kpi.inputs.kpi_inputs`: the only per-row Python
of the KPI job, which reads every joined row of its lookback (millions of them), so it
is one loop of cheap checks per task, exact type tests before ``isinstance``. A row
never raises: a row without a label is counted as missing, and one that cannot be used
is counted by reason (``REASONS``). What needs the whole set of rows (the class order,
the width of the probability vectors) is left to the second pass, in :mod:`.inputs`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np

from mlwatch.dotted import MISSING, pick_path
from mlwatch.times import lenient_us

# Reasons a labelled row is excluded (KPIReport.unusable keys).
ERROR_EVENT = "error_event"  # status "error": the model raised, nothing to score
NO_PREDICTION = "no_prediction"  # the prediction (or prediction_field) is absent
BAD_PREDICTION = "bad_prediction"  # not a class / number / probability vector
BAD_LABEL = "bad_label"  # label_field absent, or not a class / number
UNKNOWN_CLASS = "unknown_class"  # a class outside the `classes` given
NEEDS_CLASSES = "proba_needs_classes"  # a probability vector with string labels, no `classes`
REASONS = (ERROR_EVENT, NO_PREDICTION, BAD_PREDICTION, BAD_LABEL, UNKNOWN_CLASS, NEEDS_CLASSES)
_USED, _MISSING_LABEL = 0, 1  # row states; 2 + i is REASONS[i]
_STATE = {reason: 2 + i for i, reason in enumerate(REASONS)}

_FROM_PROBA = object()  # the predicted class is the argmax of the probability vector
_NO_TS = np.iinfo(np.int64).min
# What _labelled yields for a row that is not scored (one tuple each, not one per row).
_SKIP_MISSING = (_MISSING_LABEL, None, None, None)
_SKIP_ERROR = (_STATE[ERROR_EVENT], None, None, None)
_SKIP_NO_PREDICTION = (_STATE[NO_PREDICTION], None, None, None)


def _as_class(value: Any) -> Any:
    """A class label as int or str (bools and integral floats become ints); else None.

    Booleans become 0/1 so that ``True`` and ``1`` are one class, as in Python and JSON
    models that switch between them; ``"1"`` and ``1`` stay different classes. NumPy
    scalars (rows built in Python rather than read from the store) are accepted too.
    """
    kind = type(value)
    if kind is int or kind is str:
        return value
    if kind is float:
        return int(value) if value.is_integer() else None
    if isinstance(value, (bool, np.bool_, int, np.integer)):
        return int(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return int(value)
    return None


def _as_number(value: Any) -> float | None:
    """A finite int or float (NumPy's too) as float; None for anything else, bools included."""
    if (
        type(value) is float
        or type(value) is int
        or (
            isinstance(value, (int, float, np.integer, np.floating))
            and not isinstance(value, (bool, np.bool_))
        )
    ):
        number = float(value)
        return number if math.isfinite(number) else None
    return None


def _event_ts_us(event: Mapping[str, Any]) -> int:
    """The row's ``ts_us``, else its ISO 8601 ``ts`` (naive is UTC), else ``_NO_TS``."""
    ts_us = event.get("ts_us")
    if type(ts_us) is int:
        return ts_us
    us = lenient_us(event.get("ts"))
    return int(_NO_TS) if us is None else us


def _split(row: Any) -> tuple[Mapping[str, Any], Any]:
    if isinstance(row, (tuple, list)) and len(row) == 2:  # EmbeddedStore.joined()
        return row[0], row[1]
    if isinstance(row, Mapping):  # an event dict with the label merged in
        return row, row.get("label")
    raise TypeError(
        f"a joined row is (event, label) or an event dict with 'label', got {type(row).__name__}"
    )


def _labelled(
    rows: Iterable[Any],
    pred_parts: tuple[str, ...],
    label_parts: tuple[str, ...],
    row_ts: list[int],
) -> Iterator[tuple[int, Any, Any, Any]]:
    """Every row as ``(state, label, prediction, raw prediction)``; its timestamp to ``row_ts``.

    ``state`` is ``_USED`` (0) for a row with a label and a prediction, else why the row
    cannot be scored, whatever the task (the values are then None). A generator rather
    than a function called per row: resuming it costs less than a call.
    """
    for row in rows:
        event, label = _split(row)
        row_ts.append(_event_ts_us(event))
        if label is None:
            yield _SKIP_MISSING
            continue
        if label_parts:
            label = pick_path(label, label_parts, default=MISSING)
        if event.get("status", "ok") != "ok":
            yield _SKIP_ERROR
            continue
        raw = event.get("prediction")
        if raw is None:
            pred = MISSING
        else:  # an empty path is the value itself: skip the call, as for the label
            pred = pick_path(raw, pred_parts, default=MISSING) if pred_parts else raw
        if pred is MISSING or pred is None:
            yield _SKIP_NO_PREDICTION
            continue
        yield _USED, label, pred, raw


def _read_regression(
    rows: Iterable[Any],
    pred_parts: tuple[str, ...],
    label_parts: tuple[str, ...],
    row_ts: list[int],
    state: list[int],
) -> tuple[list[int], list[float], list[float]]:
    """The rows' states into ``state``; positions in it, labels and predictions of the used."""
    used_rows: list[int] = []
    truths: list[float] = []
    preds: list[float] = []
    bad_label, bad_pred = _STATE[BAD_LABEL], _STATE[BAD_PREDICTION]
    for reason, label, pred, _ in _labelled(rows, pred_parts, label_parts, row_ts):
        if reason:
            state.append(reason)
            continue
        yt, yp = _as_number(label), _as_number(pred)
        if yt is None:
            state.append(bad_label)
        elif yp is None:
            state.append(bad_pred)
        else:
            used_rows.append(len(state))
            state.append(_USED)
            truths.append(yt)
            preds.append(yp)
    return used_rows, truths, preds


def _read_classification(
    rows: Iterable[Any],
    pred_parts: tuple[str, ...],
    label_parts: tuple[str, ...],
    score_parts: tuple[str, ...] | None,
    row_ts: list[int],
    state: list[int],
) -> tuple[list[int], list[Any], list[Any], list[Any]]:
    """As :func:`_read_regression`, plus each used row's raw probabilities (or None).

    A used row's prediction is its class, or ``_FROM_PROBA`` when the class is the
    argmax of probabilities that the second pass validates.
    """
    used_rows: list[int] = []
    truths: list[Any] = []
    preds: list[Any] = []
    scores: list[Any] = []  # raw probability vector / positive-class score, or None
    bad_label, bad_pred = _STATE[BAD_LABEL], _STATE[BAD_PREDICTION]
    for reason, label, pred, raw in _labelled(rows, pred_parts, label_parts, row_ts):
        if reason:
            state.append(reason)
            continue
        t = _as_class(label)
        if t is None:
            state.append(bad_label)
            continue
        score: Any = None
        if score_parts is not None:
            score = pick_path(raw, score_parts, default=MISSING)
            if score is MISSING:
                score = None
        if isinstance(pred, (list, tuple, np.ndarray)):  # a probability vector
            if score is None:
                score = pred
            p = _FROM_PROBA
        elif score_parts == pred_parts or (isinstance(pred, Mapping) and score is not None):
            p = _FROM_PROBA
        else:
            p = _as_class(pred)
            if p is None:
                state.append(bad_pred)
                continue
        used_rows.append(len(state))
        state.append(_USED)
        truths.append(t)
        preds.append(p)
        scores.append(score)
    return used_rows, truths, preds, scores
