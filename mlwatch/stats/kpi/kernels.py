"""Batched NumPy kernels: every argument has a leading axis of B resamples, the result is (B,).

A point estimate is a kernel run on one "resample", the sample itself; the bootstrap
replicates are the same kernel run on B resamples at once (:mod:`.estimates`). So an
estimate and its interval always come from the same code, and :mod:`.metrics` is a thin
layer over these kernels.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

#: The clipping of :func:`log_loss`: probabilities are clipped to ``[eps, 1 - eps]`` with
#: the float64 machine epsilon, as scikit-learn >= 1.5 does (a confident wrong answer
#: costs ``-log(eps)`` ~ 36.04 instead of infinity).
LOG_LOSS_EPS = float(np.finfo(np.float64).eps)
#: The floor of the denominator of :func:`mean_absolute_percentage_error` (scikit-learn's
#: convention: a zero label gives a huge but finite error, not a division by zero).
MAPE_EPS = float(np.finfo(np.float64).eps)


def _prf_batched(pairs: IntArray, k: int) -> dict[str, FloatArray]:
    """Precision, recall and F1 (macro and weighted) of B resamples at once.

    ``pairs`` holds ``true_code * k + pred_code``; one ``bincount`` with a per-row offset
    builds the B confusion matrices. As in scikit-learn with ``labels=None``, each
    resample averages over the classes present in its labels or its predictions, and a
    ratio with a zero denominator counts as 0 (``zero_division=0``).
    """
    b = pairs.shape[0]
    offsets = (np.arange(b, dtype=np.int64) * (k * k))[:, None]
    cm = np.bincount((pairs + offsets).ravel(), minlength=b * k * k).reshape(b, k, k)
    tp = np.diagonal(cm, axis1=1, axis2=2).astype(np.float64)
    true_n = cm.sum(axis=2).astype(np.float64)
    pred_n = cm.sum(axis=1).astype(np.float64)
    precision = np.divide(tp, pred_n, out=np.zeros_like(tp), where=pred_n > 0)
    recall = np.divide(tp, true_n, out=np.zeros_like(tp), where=true_n > 0)
    both = true_n + pred_n
    f1 = np.divide(2 * tp, both, out=np.zeros_like(tp), where=both > 0)
    present = both > 0
    n_present = present.sum(axis=1)
    support = true_n.sum(axis=1)
    out: dict[str, FloatArray] = {}
    for name, per_class in (("precision", precision), ("recall", recall), ("f1", f1)):
        out[name + "_macro"] = (per_class * present).sum(axis=1) / n_present
        out[name + "_weighted"] = (per_class * true_n).sum(axis=1) / support
    return out


def _auc_resampled(positive: BoolArray, score: FloatArray, idx: IntArray) -> FloatArray:
    """ROC AUC of the resamples ``idx`` (B, m) of one sample; NaN for a single class.

    The area under the trapezoidal ROC curve (scikit-learn's) is the share of
    (positive, negative) pairs ranked right, a tie counting one half. With scores
    replaced by their integer rank level, one integer sort per ordering counts the pairs
    exactly: ties broken with the positives first give each positive the negatives
    strictly below it, ties broken with the negatives first those below or level with
    it, and the AUC is the mean of the two counts. Sorting int64 keys is ~10x faster
    than an argsort of the float scores per resample.
    """
    _, level = np.unique(score, return_inverse=True)
    key = level.astype(np.int64).ravel() * 2
    pos = positive.astype(np.int64)
    m = idx.shape[1]
    neg = np.sort((key + 1 - pos)[idx], axis=1) & 1  # positives first within a tie
    below = (np.cumsum(neg, axis=1) * (1 - neg)).sum(axis=1)
    hit = np.sort((key + pos)[idx], axis=1) & 1  # negatives first within a tie
    at_or_below = (np.cumsum(1 - hit, axis=1) * hit).sum(axis=1)
    n_pos = hit.sum(axis=1)
    denom = (n_pos * (m - n_pos)).astype(np.float64)
    result: FloatArray = np.divide(
        (below + at_or_below) / 2.0, denom, out=np.full(idx.shape[0], np.nan), where=denom > 0
    )
    return result


def _ovr_auc_resampled(
    codes: IntArray, proba: FloatArray, idx: IntArray, classes: Iterable[int]
) -> FloatArray:
    """Macro one-vs-rest ROC AUC over ``classes`` for the resamples ``idx``; a resample
    without class c (or with only c) leaves c out of its average."""
    total = np.zeros(idx.shape[0])
    count = np.zeros(idx.shape[0])
    for c in classes:
        auc = _auc_resampled(codes == c, proba[:, c], idx)
        ok = np.isfinite(auc)
        total += np.where(ok, auc, 0.0)
        count += ok
    result: FloatArray = np.divide(
        total, count, out=np.full(idx.shape[0], np.nan), where=count >= 1
    )
    return result


def _ece_batched(confidence: FloatArray, correct: BoolArray, n_bins: int) -> FloatArray:
    """Top-label expected calibration error of B resamples, equal-width bins.

    Bins are ``(lo, hi]`` (a confidence of exactly 0 goes to the first), and
    ``ECE = sum_b |correct_b - confidence_b| / m`` with per-bin sums, which is the usual
    ``sum_b (n_b / m) |accuracy_b - mean confidence_b|``.
    """
    b, m = confidence.shape
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)
    flat = (bins + (np.arange(b) * n_bins)[:, None]).ravel()
    conf_sum = np.bincount(flat, weights=confidence.ravel(), minlength=b * n_bins)
    hit_sum = np.bincount(flat, weights=correct.ravel().astype(np.float64), minlength=b * n_bins)
    gap = np.abs(hit_sum - conf_sum).reshape(b, n_bins)
    result: FloatArray = gap.sum(axis=1) / m
    return result


def _r2_batched(y: FloatArray, sq_err: FloatArray) -> FloatArray:
    """Coefficient of determination of B resamples; NaN where the labels are constant."""
    ss_res = sq_err.sum(axis=1)
    ss_tot = ((y - y.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
    out = np.full(y.shape[0], np.nan)
    np.subtract(
        1.0,
        np.divide(ss_res, ss_tot, out=np.zeros_like(ss_res), where=ss_tot > 0),
        out=out,
        where=ss_tot > 0,
    )
    return out


def _brier_terms(y: IntArray, p: FloatArray) -> FloatArray:
    """Per-prediction Brier terms; their mean is the score, their resampled means its
    replicates."""
    if p.shape[1] == 2:  # binary: squared error of the positive-class probability
        result: FloatArray = (p[:, 1] - (y == 1)) ** 2
        return result
    onehot = np.zeros_like(p)
    onehot[np.arange(len(y)), y] = 1.0
    summed: FloatArray = ((p - onehot) ** 2).sum(axis=1)
    return summed
