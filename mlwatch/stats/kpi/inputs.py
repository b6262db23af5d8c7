"""Joined rows as arrays: :func:`kpi_inputs` and the :class:`KPIInputs` it returns.

Labels and predictions become class codes (or floats for regression) and, where the
prediction carries them, class probabilities. Missing labels are excluded and counted;
rows whose prediction or label cannot be used are counted by reason (``REASONS``) and
never raise. Two passes: one per row (:mod:`.rows`), then one over whole arrays for
what is a property of the set of rows, not of one row: the class order and the width of
the probability vectors.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from mlwatch.dotted import split
from mlwatch.stats.kpi.kernels import BoolArray, FloatArray, IntArray
from mlwatch.stats.kpi.rows import (
    _FROM_PROBA,
    _STATE,
    BAD_PREDICTION,
    NEEDS_CLASSES,
    UNKNOWN_CLASS,
    _as_class,
    _as_number,
    _read_classification,
    _read_regression,
)

#: How far the sum of a probability vector may be from 1 before the vector is rejected
#: (JSON round trips and float32 models are never exact; a logit vector is far off).
PROBA_SUM_TOLERANCE = 1e-3


@dataclass(frozen=True)
class KPIInputs:
    """Joined rows as arrays, ready for :func:`kpis_from_inputs`.

    ``y_true``/``y_pred`` hold class codes (indices into ``classes``) for classification
    and floats for regression, one entry per used row; ``proba`` is ``(n_used, k)`` in
    code order, its rows NaN where ``has_proba`` is false. ``row_ts_us`` and
    ``row_state`` cover every input row (used, missing label, or excluded and why) so
    that windows can count them.
    """

    task: str
    classes: tuple[Any, ...]
    y_true: npt.NDArray[Any]
    y_pred: npt.NDArray[Any]
    proba: FloatArray | None
    has_proba: BoolArray
    ts_us: IntArray
    row_ts_us: IntArray
    row_state: npt.NDArray[np.int8]
    proba_invalid: BoolArray  # per used row: a probability vector was sent but rejected

    def subset(self, rows: BoolArray, used: BoolArray) -> KPIInputs:
        """The inputs restricted to some rows (``rows`` over all rows, ``used`` over used)."""
        return KPIInputs(
            self.task,
            self.classes,
            self.y_true[used],
            self.y_pred[used],
            None if self.proba is None else self.proba[used],
            self.has_proba[used],
            self.ts_us[used],
            self.row_ts_us[rows],
            self.row_state[rows],
            self.proba_invalid[used],
        )


def kpi_inputs(
    rows: Iterable[Any],
    *,
    task: str = "classification",
    prediction_field: str | None = None,
    label_field: str | None = None,
    score_field: str | None = None,
    classes: Sequence[Any] | None = None,
) -> KPIInputs:
    """Turn joined rows into the arrays the KPIs need. Never raises on bad values.

    ``rows`` are ``(event, label)`` pairs as :meth:`EmbeddedStore.joined` yields them
    (an event dict with a ``label`` key works too). The scheduler passes a model spec's
    ``task``, ``score_field`` and ``classes``; its ``prediction_field`` and
    ``label_field`` were applied by the client before the values were stored
    (:mod:`mlwatch.dotted`), so the scheduler does not apply them again. How a prediction
    becomes a class, a probability vector or a number, and the class order, are in
    docs/drift-and-kpis.md ("How predictions and labels are read"). Rows without a label
    are counted as missing; events with ``status`` ``error`` and rows whose values
    cannot be used are counted by reason (``REASONS``).
    """
    if task not in ("classification", "regression"):
        raise ValueError(f"task must be 'classification' or 'regression', got {task!r}")
    pred_parts = split(prediction_field or "")
    label_parts = split(label_field or "")
    score_parts = None if score_field is None else split(score_field)
    row_ts: list[int] = []
    state: list[int] = []
    if task == "regression":
        used, truths, preds = _read_regression(rows, pred_parts, label_parts, row_ts, state)
        row_ts_us, n = np.array(row_ts, dtype=np.int64), len(truths)
        return KPIInputs(
            task,
            (),
            np.array(truths, dtype=np.float64),
            np.array(preds, dtype=np.float64),
            None,
            np.zeros(n, dtype=bool),
            row_ts_us[np.array(used, dtype=np.int64)],
            row_ts_us,
            np.array(state, dtype=np.int8),
            np.zeros(n, dtype=bool),
        )
    used, labels, predictions, scores = _read_classification(
        rows, pred_parts, label_parts, score_parts, row_ts, state
    )
    return _classification_inputs(
        task,
        classes,
        labels,
        predictions,
        scores,
        np.array(used, dtype=np.int64),
        np.array(row_ts, dtype=np.int64),
        np.array(state, dtype=np.int8),
    )


def _proba_matrix(raw: list[Any], width: int | None) -> tuple[FloatArray, BoolArray]:
    """Validate probability vectors (lists, or a float = probability of class 1).

    Returns the ``(n, width)`` matrix (NaN rows for rejected vectors) and the valid mask.
    A vector is valid when it has ``width`` finite entries in [0, 1] summing to 1 within
    ``PROBA_SUM_TOLERANCE``; without ``width`` the most common length is taken.
    """
    vectors: list[list[Any]] = []
    for v in raw:
        if isinstance(v, (list, tuple, np.ndarray)):
            vectors.append(v.tolist() if isinstance(v, np.ndarray) else list(v))
        else:
            p = _as_number(v)
            vectors.append([1.0 - p, p] if p is not None else [])
    if width is None:
        lengths = Counter(len(v) for v in vectors if v)
        width = lengths.most_common(1)[0][0] if lengths else 0
    out = np.full((len(vectors), max(width, 1)), np.nan)
    rows = [i for i, v in enumerate(vectors) if len(v) == width and width > 0]
    if rows:
        try:
            out[rows] = np.array([vectors[i] for i in rows], dtype=np.float64)
        except (TypeError, ValueError):  # a non-number somewhere: one vector at a time
            for i in rows:
                with contextlib.suppress(TypeError, ValueError):
                    out[i] = np.array(vectors[i], dtype=np.float64)
    with np.errstate(invalid="ignore"):
        valid = (
            np.isfinite(out).all(axis=1)
            & (out >= 0).all(axis=1)
            & (out <= 1).all(axis=1)
            & (np.abs(out.sum(axis=1) - 1.0) <= PROBA_SUM_TOLERANCE)
        )
    out[~valid] = np.nan
    return out, valid


def _class_sort_key(value: Any) -> tuple[bool, Any]:
    return (isinstance(value, str), value)


def _classification_inputs(
    task: str,
    classes: Sequence[Any] | None,
    truths: list[Any],
    preds: list[Any],
    scores: list[Any],
    positions: IntArray,
    row_ts_us: IntArray,
    row_state: npt.NDArray[np.int8],
) -> KPIInputs:
    """Second pass of :func:`kpi_inputs`: probabilities, class universe and codes.

    Done on whole arrays once the rows are read, because the class order and the width
    of the probability vectors are properties of the set of rows, not of one row.
    """
    n = len(truths)
    given = _given_classes(classes)
    proba_rows, sent, has = _probability_rows(scores, n, None if given is None else len(given))
    from_proba = np.fromiter((p is _FROM_PROBA for p in preds), dtype=bool, count=n)
    reason = np.zeros(n, dtype=np.int8)
    if given is None and has.any() and any(isinstance(t, str) for t in truths):
        has[:] = False  # index i of a vector is class i, which cannot be a string label
        reason[from_proba] = _STATE[NEEDS_CLASSES]
    reason[from_proba & ~has & (reason == 0)] = _STATE[BAD_PREDICTION]

    # Index i of a probability vector is the class index_class[i].
    index_class = given if given is not None else list(range(proba_rows.shape[1]))
    if given is not None:
        universe = list(given)
    else:
        universe = _seen_classes(truths, preds, reason == 0, index_class if has.any() else [])
    code = {c: i for i, c in enumerate(universe)}
    y_true = np.fromiter((code.get(t, -1) for t in truths), dtype=np.int64, count=n)
    y_pred = np.fromiter(
        (-1 if p is _FROM_PROBA else code.get(p, -1) for p in preds), dtype=np.int64, count=n
    )
    proba: FloatArray | None = None
    if has.any():
        columns = np.array([code[c] for c in index_class], dtype=np.int64)
        argmax_rows = from_proba & has
        y_pred[argmax_rows] = columns[np.argmax(proba_rows[argmax_rows], axis=1)]
        proba = _in_code_order(proba_rows, has, columns, len(universe))
    reason[(reason == 0) & ((y_true < 0) | (y_pred < 0))] = _STATE[UNKNOWN_CLASS]
    keep = reason == 0
    state = row_state.copy()
    state[positions[~keep]] = reason[~keep]
    return KPIInputs(
        task,
        tuple(universe),
        y_true[keep],
        y_pred[keep],
        None if proba is None else proba[keep],
        has[keep],
        row_ts_us[positions[keep]],
        row_ts_us,
        state,
        (sent & ~has)[keep],
    )


def _given_classes(classes: Sequence[Any] | None) -> list[Any] | None:
    """The ``classes`` argument as class labels; a bad one raises (it is configuration)."""
    given = None if classes is None else [_as_class(c) for c in classes]
    if given is not None and (None in given or len(set(given)) != len(given)):
        raise ValueError(f"classes must be distinct ints or strings, got {list(classes or ())!r}")
    return given


def _probability_rows(
    scores: list[Any], n: int, width: int | None
) -> tuple[FloatArray, BoolArray, BoolArray]:
    """The ``(n, width)`` probabilities of the used rows (NaN where none or invalid), which
    rows sent some, and which rows have valid ones."""
    with_score = [i for i, s in enumerate(scores) if s is not None]
    vec, ok = _proba_matrix([scores[i] for i in with_score], width)
    proba_rows = np.full((n, vec.shape[1]), np.nan)
    proba_rows[with_score] = vec
    sent = np.zeros(n, dtype=bool)
    sent[with_score] = True
    has = np.zeros(n, dtype=bool)
    has[with_score] = ok
    return proba_rows, sent, has


def _seen_classes(
    truths: list[Any], preds: list[Any], usable: BoolArray, vector_classes: Sequence[Any]
) -> list[Any]:
    """The classes without ``classes``: those of the usable rows and of the vectors' indices,
    sorted (ints before strings)."""
    ok_rows = usable.tolist()
    seen = {t for t, good in zip(truths, ok_rows, strict=True) if good}
    seen.update(p for p, good in zip(preds, ok_rows, strict=True) if good and p is not _FROM_PROBA)
    seen.update(vector_classes)
    return sorted(seen, key=_class_sort_key)


def _in_code_order(proba_rows: FloatArray, has: BoolArray, columns: IntArray, k: int) -> FloatArray:
    """Probabilities with column ``j`` the class of code ``j`` (0 for a class a vector does
    not cover), rows without valid probabilities NaN."""
    proba = np.full((proba_rows.shape[0], k), np.nan)
    sub = np.zeros((int(has.sum()), k))
    sub[:, columns] = proba_rows[has]
    proba[has] = sub
    return proba
