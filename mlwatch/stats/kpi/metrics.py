"""The KPIs as pure functions over arrays, following scikit-learn's definitions.

The tests compare every one to ``sklearn.metrics`` to 1e-9, but nothing here depends on
scikit-learn: it is not part of ``mlwatch[sidecar]``. Each function is a thin wrapper
over a batched kernel of :mod:`.kernels`, the code that also computes the bootstrap
replicates of the KPI's confidence interval. Where a monitor needs something else than
scikit-learn (an AUC over the classes of a window, NaN for an undefined R^2), the
function's docstring says so.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from mlwatch.stats.kpi.kernels import (
    LOG_LOSS_EPS,
    MAPE_EPS,
    FloatArray,
    IntArray,
    _auc_resampled,
    _brier_terms,
    _ece_batched,
    _ovr_auc_resampled,
    _prf_batched,
    _r2_batched,
)


def _codes(*arrays: npt.ArrayLike) -> tuple[list[IntArray], int]:
    """Encode label arrays over their joint sorted set of values."""
    flat = [np.asarray(a).ravel() for a in arrays]
    uniq, inverse = np.unique(np.concatenate(flat), return_inverse=True)
    out, start = [], 0
    for a in flat:
        out.append(inverse[start : start + a.size].astype(np.int64))
        start += a.size
    return out, len(uniq)


def accuracy(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> float:
    """Share of predictions equal to the label (``sklearn.metrics.accuracy_score``).

    >>> accuracy([0, 1, 2, 2], [0, 2, 2, 2])
    0.75
    """
    return float(np.mean(np.asarray(y_true) == np.asarray(y_pred)))


def precision_recall_f1(
    y_true: npt.ArrayLike, y_pred: npt.ArrayLike, average: str = "macro"
) -> tuple[float, float, float]:
    """Precision, recall and F1 averaged over classes, ``average`` ``macro`` or ``weighted``.

    Like ``sklearn.metrics.precision_recall_fscore_support(..., zero_division=0)``: the
    classes are those present in ``y_true`` or ``y_pred``; a class never predicted has
    precision 0 (not a warning), one never seen has recall 0. ``weighted`` weights each
    class by its number of labels.

    >>> precision_recall_f1(["a", "b", "b", "c"], ["a", "b", "c", "c"])
    (0.8333333333333334, 0.8333333333333334, 0.7777777777777777)
    """
    if average not in ("macro", "weighted"):
        raise ValueError(f"average must be 'macro' or 'weighted', got {average!r}")
    (t, p), k = _codes(y_true, y_pred)
    res = _prf_batched((t * k + p)[None, :], k)
    return (
        float(res[f"precision_{average}"][0]),
        float(res[f"recall_{average}"][0]),
        float(res[f"f1_{average}"][0]),
    )


def roc_auc(y_true: npt.ArrayLike, scores: npt.ArrayLike) -> float:
    """Area under the ROC curve; NaN when it is undefined (a single class).

    Binary: ``y_true`` is 0/1 (or boolean), ``scores`` the score of class 1, as
    ``sklearn.metrics.roc_auc_score``. Multiclass: ``y_true`` holds class indices and
    ``scores`` is an ``(n, k)`` probability matrix whose column ``c`` is class ``c``;
    the result is the macro one-vs-rest average (``multi_class="ovr"``) over the classes
    that occur in ``y_true`` (scikit-learn raises when one is missing; a monitoring window
    without a rare class still gets an AUC here).

    >>> roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    0.75
    """
    s = np.asarray(scores, dtype=np.float64)
    full = np.arange(len(s), dtype=np.int64)[None, :]
    if s.ndim == 1:
        return float(_auc_resampled(np.asarray(y_true).astype(bool), s, full)[0])
    y = np.asarray(y_true, dtype=np.int64)
    present = [int(c) for c in np.unique(y) if 0 <= c < s.shape[1]]
    if len(present) < 2:
        return math.nan
    return float(_ovr_auc_resampled(y, s, full, present)[0])


def _as_matrix(proba: npt.ArrayLike) -> FloatArray:
    p = np.asarray(proba, dtype=np.float64)
    return np.column_stack([1.0 - p, p]) if p.ndim == 1 else p


def log_loss(y_true: npt.ArrayLike, proba: npt.ArrayLike) -> float:
    """Mean negative log-likelihood of the labels (natural log).

    ``y_true`` holds class indices (columns of ``proba``); ``proba`` is ``(n, k)``, or
    ``(n,)`` for the probability of class 1 of a binary model. Probabilities are clipped
    to ``[LOG_LOSS_EPS, 1 - LOG_LOSS_EPS]`` (float64 machine epsilon), like
    ``sklearn.metrics.log_loss(y, proba, labels=range(k))``.

    >>> round(log_loss([0, 1], [[0.9, 0.1], [0.2, 0.8]]), 6)
    0.164252
    """
    p = _as_matrix(proba)
    y = np.asarray(y_true, dtype=np.int64)
    picked = np.clip(p[np.arange(len(y)), y], LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS)
    return float(-np.mean(np.log(picked)))


def brier_score(y_true: npt.ArrayLike, proba: npt.ArrayLike) -> float:
    """Brier score, scikit-learn's convention (``brier_score_loss``, ``scale_by_half="auto"``).

    Binary (``proba`` of shape ``(n,)`` or ``(n, 2)``): the mean squared error of the
    probability of class 1, in [0, 1]. Three classes or more: the mean over predictions
    of the *summed* squared error of the probability vector against the one-hot label
    (Brier's original definition), in [0, 2].

    >>> round(brier_score([0, 1, 1, 0], [0.1, 0.9, 0.8, 0.3]), 6)
    0.0375
    """
    p = _as_matrix(proba)
    return float(np.mean(_brier_terms(np.asarray(y_true, dtype=np.int64), p)))


def expected_calibration_error(
    y_true: npt.ArrayLike, proba: npt.ArrayLike, n_bins: int = 10
) -> float:
    """Top-label expected calibration error with ``n_bins`` equal-width bins.

    The confidence of a prediction is its largest probability and it is correct when that
    class is the label. Bins are ``(lo, hi]`` over [0, 1]; ECE is the mean over bins of
    ``|accuracy - mean confidence|`` weighted by the share of predictions in the bin
    (Guo et al., 2017). scikit-learn has no ECE; the tests use a hand-computed fixture.

    >>> round(expected_calibration_error([0, 1, 1, 0], [0.1, 0.9, 0.7, 0.6]), 6)
    0.275
    """
    p = _as_matrix(proba)
    y = np.asarray(y_true, dtype=np.int64)
    correct = np.argmax(p, axis=1) == y
    return float(_ece_batched(p.max(axis=1)[None, :], correct[None, :], n_bins)[0])


def _reg(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    return np.asarray(y_true, dtype=np.float64), np.asarray(y_pred, dtype=np.float64)


def mean_absolute_error(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> float:
    """``mean(|y - y_hat|)``.

    >>> mean_absolute_error([1.0, 2.0], [1.5, 1.0])
    0.75
    """
    t, p = _reg(y_true, y_pred)
    return float(np.mean(np.abs(t - p)))


def root_mean_squared_error(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> float:
    """``sqrt(mean((y - y_hat)^2))``.

    >>> root_mean_squared_error([0.0, 0.0], [3.0, 4.0])
    3.5355339059327378
    """
    t, p = _reg(y_true, y_pred)
    return float(np.sqrt(np.mean((t - p) ** 2)))


def mean_absolute_percentage_error(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> float:
    """``mean(|y - y_hat| / max(|y|, eps))`` as a fraction (0.1 is 10 %), scikit-learn's
    convention: a zero label is divided by ``MAPE_EPS`` and gives a huge, finite error.

    >>> mean_absolute_percentage_error([100.0, 200.0], [110.0, 180.0])
    0.1
    """
    t, p = _reg(y_true, y_pred)
    return float(np.mean(np.abs(t - p) / np.maximum(np.abs(t), MAPE_EPS)))


def r2_score(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> float:
    """Coefficient of determination ``1 - SS_res / SS_tot``; NaN when the labels are
    constant (scikit-learn returns 1.0 or 0.0 then; a monitor reports "undefined").

    >>> r2_score([1.0, 2.0, 3.0], [1.0, 2.0, 4.0])
    0.5
    """
    t, p = _reg(y_true, y_pred)
    return float(_r2_batched(t[None, :], ((t - p) ** 2)[None, :])[0])
