"""Model-performance KPIs from predictions joined to their ground truth.

The inputs are the rows of :meth:`mlwatch.store.EmbeddedStore.joined`: each event joined
by ``request_id`` to its newest feedback label (``None`` while the label has not
arrived). Rows are read again from the store on every run, so a label that arrives late
simply joins its event the next time: a window's KPIs are recomputed from what is known
now, and a late label changes the window of its *prediction*, never the current one.

Three layers, each usable alone:

1. **Metrics**: pure NumPy functions over arrays (:func:`accuracy`,
   :func:`precision_recall_f1`, :func:`roc_auc`, :func:`log_loss`, :func:`brier_score`,
   :func:`expected_calibration_error`, :func:`mean_absolute_error`,
   :func:`root_mean_squared_error`, :func:`mean_absolute_percentage_error`,
   :func:`r2_score`). They follow scikit-learn's definitions (the tests compare them to
   ``sklearn.metrics`` to 1e-9) without depending on it: scikit-learn is not part of
   ``mlwatch[sidecar]``. Each is a thin wrapper over a *batched* kernel that evaluates
   the metric on many bootstrap resamples at once, so a point estimate and its interval
   always come from the same code.
2. **Inputs**: :func:`kpi_inputs` turns joined rows into arrays: labels and predictions
   as class codes (or floats for regression) and, where the prediction carries them,
   class probabilities. Missing labels are excluded and counted; rows whose prediction
   or label cannot be used are counted by reason and never raise.
3. **KPIs**: :func:`compute_kpis` and :func:`window_kpis` return :class:`KPIReport`
   objects holding :class:`KPI` values with a confidence interval, or no value and the
   reason (fewer labelled predictions than ``min_samples``, a single class for ROC AUC,
   constant labels for R^2, no probabilities).

Confidence intervals (``confidence=0.95`` by default):

- ``accuracy`` is a proportion: **Wilson score interval** (good coverage for small n and
  for accuracies near 0 or 1, where the normal approximation fails).
- every other KPI: **percentile bootstrap**, ``n_boot`` resamples (200 by default),
  vectorised and seeded (``seed``; :func:`window_kpis` derives one seed per window from
  ``seed`` and the window start, so a window's interval depends only on its own rows).
  For speed, a sample larger than ``max_boot_n`` (2,000) is resampled with
  ``max_boot_n`` draws (an m-out-of-n bootstrap) and the deviations from the estimate
  are scaled by ``sqrt(m / n)``: ``[v + s (q_lo - v), v + s (q_hi - v)]`` with ``s = 1``
  when ``m = n``, i.e. the plain percentile interval. Resamples where a KPI is
  undefined (one class for ROC AUC, constant labels for R^2) are left out; with fewer
  than half of them defined the interval is not reported. Bounds are clipped to the
  KPI's range.
- ``ece`` is biased upwards, most for a well-calibrated model, where the percentile
  interval would lie above the estimate and exclude the true 0: it takes the reflected
  (basic) bootstrap interval, which corrects the bias, widened to contain the estimate.

>>> rows = [({"prediction": p}, y) for p, y in [(1, 1), (0, 0), (1, 0), (0, 0)] * 25]
>>> rows.append(({"prediction": 1}, None))  # a label that has not arrived yet
>>> report = compute_kpis(rows, min_samples=50)
>>> acc = report.kpis["accuracy"]
>>> report.n_labelled, report.n_missing, acc.value, round(acc.lower, 3), round(acc.upper, 3)
(100, 1, 0.75, 0.657, 0.825)
>>> compute_kpis(rows[:10], min_samples=50).kpis["accuracy"].reason
'10 labelled predictions, fewer than min_samples=50'
"""

from __future__ import annotations

import contextlib
import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta, timezone
from statistics import NormalDist
from typing import Any

import numpy as np
import numpy.typing as npt

from mlwatch.dotted import MISSING, pick_path, split

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

CLASSIFICATION_KPIS = ("accuracy", "precision_macro", "recall_macro", "f1_macro",
                       "precision_weighted", "recall_weighted", "f1_weighted",
                       "roc_auc", "log_loss", "brier", "ece")
REGRESSION_KPIS = ("mae", "rmse", "mape", "r2")
PROBA_KPIS = ("roc_auc", "log_loss", "brier", "ece")

#: The clipping of :func:`log_loss`: probabilities are clipped to ``[eps, 1 - eps]`` with
#: the float64 machine epsilon, as scikit-learn >= 1.5 does (a confident wrong answer
#: costs ``-log(eps)`` ~ 36.04 instead of infinity).
LOG_LOSS_EPS = float(np.finfo(np.float64).eps)
#: The floor of the denominator of :func:`mean_absolute_percentage_error` (scikit-learn's
#: convention: a zero label gives a huge but finite error, not a division by zero).
MAPE_EPS = float(np.finfo(np.float64).eps)
#: How far the sum of a probability vector may be from 1 before the vector is rejected
#: (JSON round trips and float32 models are never exact; a logit vector is far off).
PROBA_SUM_TOLERANCE = 1e-3

# Natural range of every KPI: bootstrap bounds are clipped to it.
_BOUNDS: dict[str, tuple[float, float]] = {
    **{name: (0.0, 1.0) for name in CLASSIFICATION_KPIS},
    "log_loss": (0.0, math.inf), "brier": (0.0, 2.0),
    "mae": (0.0, math.inf), "rmse": (0.0, math.inf), "mape": (0.0, math.inf),
    "r2": (-math.inf, 1.0),
}


# --------------------------------------------------------------------------------------
# Batched kernels: every argument has a leading axis of B resamples, the result is (B,).
# --------------------------------------------------------------------------------------

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
    return np.divide((below + at_or_below) / 2.0, denom, out=np.full(idx.shape[0], np.nan),
                     where=denom > 0)


def _ovr_auc_resampled(codes: IntArray, proba: FloatArray, idx: IntArray,
                       classes: Iterable[int]) -> FloatArray:
    """Macro one-vs-rest ROC AUC over ``classes`` for the resamples ``idx``; a resample
    without class c (or with only c) leaves c out of its average."""
    total = np.zeros(idx.shape[0])
    count = np.zeros(idx.shape[0])
    for c in classes:
        auc = _auc_resampled(codes == c, proba[:, c], idx)
        ok = np.isfinite(auc)
        total += np.where(ok, auc, 0.0)
        count += ok
    return np.divide(total, count, out=np.full(idx.shape[0], np.nan), where=count >= 1)


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
    hit_sum = np.bincount(flat, weights=correct.ravel().astype(np.float64),
                          minlength=b * n_bins)
    gap = np.abs(hit_sum - conf_sum).reshape(b, n_bins)
    result: FloatArray = gap.sum(axis=1) / m
    return result


def _r2_batched(y: FloatArray, sq_err: FloatArray) -> FloatArray:
    """Coefficient of determination of B resamples; NaN where the labels are constant."""
    ss_res = sq_err.sum(axis=1)
    ss_tot = ((y - y.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
    out = np.full(y.shape[0], np.nan)
    np.subtract(1.0, np.divide(ss_res, ss_tot, out=np.zeros_like(ss_res), where=ss_tot > 0),
                out=out, where=ss_tot > 0)
    return out


# --------------------------------------------------------------------------------------
# Metrics: pure functions over arrays.
# --------------------------------------------------------------------------------------

def _codes(*arrays: npt.ArrayLike) -> tuple[list[IntArray], int]:
    """Encode label arrays over their joint sorted set of values."""
    flat = [np.asarray(a).ravel() for a in arrays]
    uniq, inverse = np.unique(np.concatenate(flat), return_inverse=True)
    out, start = [], 0
    for a in flat:
        out.append(inverse[start:start + a.size].astype(np.int64))
        start += a.size
    return out, len(uniq)


def accuracy(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> float:
    """Share of predictions equal to the label (``sklearn.metrics.accuracy_score``).

    >>> accuracy([0, 1, 2, 2], [0, 2, 2, 2])
    0.75
    """
    return float(np.mean(np.asarray(y_true) == np.asarray(y_pred)))


def precision_recall_f1(y_true: npt.ArrayLike, y_pred: npt.ArrayLike,
                        average: str = "macro") -> tuple[float, float, float]:
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
    return (float(res[f"precision_{average}"][0]), float(res[f"recall_{average}"][0]),
            float(res[f"f1_{average}"][0]))


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


def _brier_terms(y: IntArray, p: FloatArray) -> FloatArray:
    if p.shape[1] == 2:  # binary: squared error of the positive-class probability
        result: FloatArray = (p[:, 1] - (y == 1)) ** 2
        return result
    onehot = np.zeros_like(p)
    onehot[np.arange(len(y)), y] = 1.0
    summed: FloatArray = ((p - onehot) ** 2).sum(axis=1)
    return summed


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


def expected_calibration_error(y_true: npt.ArrayLike, proba: npt.ArrayLike,
                               n_bins: int = 10) -> float:
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


# --------------------------------------------------------------------------------------
# Confidence intervals.
# --------------------------------------------------------------------------------------

def _z(confidence: float) -> float:
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``successes / n``.

    Chosen for accuracy because it keeps its coverage for small windows and for
    proportions near 0 or 1, where the normal (Wald) interval collapses to a point.

    >>> [round(x, 4) for x in wilson_interval(45, 50)]
    [0.7864, 0.9565]
    """
    if n <= 0:
        raise ValueError("n must be positive")
    z = _z(confidence)
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    # exact at the ends (rounding would give 0.9999999999999998 for n of n)
    lower = 0.0 if successes <= 0 else max(0.0, centre - half)
    upper = 1.0 if successes >= n else min(1.0, centre + half)
    return lower, upper


def _percentile_interval(name: str, value: float, replicates: FloatArray, scale: float,
                         confidence: float) -> tuple[float, float] | None:
    """Bootstrap interval from replicates, deviations from ``value`` scaled by ``scale``.

    The percentile interval, except for ECE: ECE is biased upwards (it sums absolute
    values of noisy per-bin gaps), the more so the better calibrated the model, and
    there the percentile interval lies wholly above the estimate and excludes the true
    value 0. ECE takes the basic (reflected) interval ``[2v - q_hi, 2v - q_lo]``, which
    corrects for that bias, widened to contain the estimate itself.
    """
    finite = replicates[np.isfinite(replicates)]
    if finite.size < max(2, replicates.size // 2):
        return None
    alpha = 1.0 - confidence
    q_lo, q_hi = (value + scale * (float(q) - value)
                  for q in np.quantile(finite, [alpha / 2, 1 - alpha / 2]))
    if name == "ece":
        q_lo, q_hi = min(2 * value - q_hi, value), max(2 * value - q_lo, value)
    lo_bound, hi_bound = _BOUNDS[name]
    return (min(max(q_lo, lo_bound), hi_bound), min(max(q_hi, lo_bound), hi_bound))


# --------------------------------------------------------------------------------------
# Results.
# --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class KPI:
    """One KPI: its value, confidence interval and sample size, or why it has no value.

    ``method`` names how the interval was computed (``wilson``, ``bootstrap``); ``reason``
    says why ``value`` (or only the interval) is missing.
    """

    name: str
    value: float | None
    lower: float | None
    upper: float | None
    n: int
    method: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class KPIReport:
    """The KPIs of one set of joined rows (one window, or everything given).

    ``n_rows = n_missing + n_labelled`` and ``n_labelled = n_used + n_unusable``;
    ``unusable`` counts the excluded rows by reason, ``n_proba`` the used rows whose
    prediction carried valid class probabilities (the probability KPIs use those) and
    ``proba_invalid`` the rows whose probabilities were rejected (the row still counts
    for the label KPIs). ``reason`` is set when the sample is below ``min_samples``.
    """

    task: str
    kpis: dict[str, KPI]
    n_rows: int
    n_labelled: int
    n_missing: int
    n_used: int
    n_unusable: int
    unusable: dict[str, int] = field(default_factory=dict)
    n_proba: int = 0
    proba_invalid: int = 0
    confidence: float = 0.95
    reason: str | None = None
    window_start_us: int | None = None
    window_end_us: int | None = None

    def value(self, name: str) -> float | None:
        """The value of KPI ``name``, None when it has none (or is not computed)."""
        kpi = self.kpis.get(name)
        return None if kpi is None else kpi.value

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form (the status API, the scheduler's store)."""
        out = asdict(self)
        out["kpis"] = {name: asdict(k) for name, k in self.kpis.items()}
        return out


# --------------------------------------------------------------------------------------
# Joined rows -> arrays.
# --------------------------------------------------------------------------------------

_FROM_PROBA = object()  # the predicted class is the argmax of the probability vector
_NO_TS = np.iinfo(np.int64).min
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)

# Reasons a labelled row is excluded (KPIReport.unusable keys).
ERROR_EVENT = "error_event"          # status "error": the model raised, nothing to score
NO_PREDICTION = "no_prediction"      # the prediction (or prediction_field) is absent
BAD_PREDICTION = "bad_prediction"    # not a class / number / probability vector
BAD_LABEL = "bad_label"              # label_field absent, or not a class / number
UNKNOWN_CLASS = "unknown_class"      # a class outside the `classes` given
NEEDS_CLASSES = "proba_needs_classes"  # a probability vector with string labels, no `classes`
REASONS = (ERROR_EVENT, NO_PREDICTION, BAD_PREDICTION, BAD_LABEL, UNKNOWN_CLASS, NEEDS_CLASSES)
_USED, _MISSING_LABEL = 0, 1  # row states; 2 + i is REASONS[i]
_STATE = {reason: 2 + i for i, reason in enumerate(REASONS)}


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
        return KPIInputs(self.task, self.classes, self.y_true[used], self.y_pred[used],
                         None if self.proba is None else self.proba[used],
                         self.has_proba[used], self.ts_us[used], self.row_ts_us[rows],
                         self.row_state[rows], self.proba_invalid[used])


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
    if type(value) is float or type(value) is int or (
            isinstance(value, (int, float, np.integer, np.floating))
            and not isinstance(value, (bool, np.bool_))):
        number = float(value)
        return number if math.isfinite(number) else None
    return None


def _event_ts_us(event: Mapping[str, Any]) -> int:
    ts_us = event.get("ts_us")
    if type(ts_us) is int:
        return ts_us
    ts = event.get("ts")
    if isinstance(ts, str):
        try:
            when = datetime.fromisoformat(ts.replace("Z", "+00:00"))
        except ValueError:
            return int(_NO_TS)
        if when.tzinfo is None:  # the wire format is UTC
            when = when.replace(tzinfo=timezone.utc)
        return (when - _EPOCH) // _MICROSECOND  # exact: a float would misplace 59.999999 s
    return int(_NO_TS)


def _split(row: Any) -> tuple[Mapping[str, Any], Any]:
    if isinstance(row, (tuple, list)) and len(row) == 2:  # EmbeddedStore.joined()
        return row[0], row[1]
    if isinstance(row, Mapping):  # an event dict with the label merged in
        return row, row.get("label")
    raise TypeError(f"a joined row is (event, label) or an event dict with 'label', "
                    f"got {type(row).__name__}")


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
        valid = (np.isfinite(out).all(axis=1) & (out >= 0).all(axis=1) & (out <= 1).all(axis=1)
                 & (np.abs(out.sum(axis=1) - 1.0) <= PROBA_SUM_TOLERANCE))
    out[~valid] = np.nan
    return out, valid


def _class_sort_key(value: Any) -> tuple[bool, Any]:
    return (isinstance(value, str), value)


def kpi_inputs(rows: Iterable[Any], *, task: str = "classification",
               prediction_field: str | None = None, label_field: str | None = None,
               score_field: str | None = None,
               classes: Sequence[Any] | None = None) -> KPIInputs:
    """Turn joined rows into the arrays the KPIs need. Never raises on bad values.

    ``rows`` are ``(event, label)`` pairs as :meth:`EmbeddedStore.joined` yields them
    (an event dict with a ``label`` key works too). The scheduler passes a model spec's
    ``task``, ``score_field`` and ``classes``; its ``prediction_field`` and
    ``label_field`` were applied by the client before the values were stored
    (:mod:`mlwatch.dotted`), so the scheduler does not apply them again.

    - ``prediction_field`` / ``label_field``: dotted paths into the prediction / the
      label (``None``: the value itself), for rows whose values still hold more than
      the class, e.g. ``{"label": 1, "proba": [...]}`` with ``prediction_field="label"``,
      ``score_field="proba"``.
    - Classification. A prediction that is a class (int, str, bool, integral float) is
      the predicted class. A list of numbers is a probability vector: its argmax is the
      predicted class and the vector feeds ROC AUC, log loss, Brier and ECE.
      ``score_field`` names where the probabilities are when the prediction is not
      itself the vector; it may hold a vector or one number, the probability of the
      positive class of a binary model; ``score_field=""`` means the prediction itself
      (a model that returns ``predict_proba(x)[0, 1]``). A prediction that is an
      object, with the probabilities at ``score_field``, is scored at their argmax. A
      non-integral float without ``score_field`` is not a class and is counted as
      ``bad_prediction``.
    - Class order. With ``classes``, index ``i`` of a vector is ``classes[i]``, other
      values are ``unknown_class``, and for a binary model ``classes[1]`` is the
      positive class. Without it, index ``i`` is the integer class ``i`` (what
      scikit-learn gives for labels ``0..k-1``), the classes are the sorted set of what
      was seen (ints before strings) and the positive class is the greater one; string
      labels with probability vectors then need ``classes`` (``proba_needs_classes``).
    - Regression: finite numbers, else ``bad_prediction`` / ``bad_label``.

    Rows without a label are counted as missing; events with ``status`` ``error`` and
    rows whose values cannot be used are counted by reason (``REASONS``).
    """
    if task not in ("classification", "regression"):
        raise ValueError(f"task must be 'classification' or 'regression', got {task!r}")
    pred_parts = split(prediction_field or "")
    label_parts = split(label_field or "")
    score_parts = None if score_field is None else split(score_field)

    row_ts: list[int] = []
    state: list[int] = []
    used_rows: list[int] = []  # position in `state` of each candidate row
    truths: list[Any] = []
    preds: list[Any] = []
    scores: list[Any] = []  # raw probability vector / positive-class score, or None
    regression = task == "regression"
    unusable_bad_pred = _STATE[BAD_PREDICTION]
    for row in rows:
        event, label = _split(row)
        row_ts.append(_event_ts_us(event))
        if label is None:
            state.append(_MISSING_LABEL)
            continue
        if label_parts:
            label = pick_path(label, label_parts, default=MISSING)
        if event.get("status", "ok") != "ok":
            state.append(_STATE[ERROR_EVENT])
            continue
        raw = event.get("prediction")
        pred = MISSING if raw is None else pick_path(raw, pred_parts, default=MISSING)
        if pred is MISSING or pred is None:
            state.append(_STATE[NO_PREDICTION])
            continue
        if regression:
            yt, yp = _as_number(label), _as_number(pred)
            if yt is None:
                state.append(_STATE[BAD_LABEL])
            elif yp is None:
                state.append(unusable_bad_pred)
            else:
                used_rows.append(len(state))
                state.append(_USED)
                truths.append(yt)
                preds.append(yp)
            continue
        t = _as_class(label)
        if t is None:
            state.append(_STATE[BAD_LABEL])
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
                state.append(unusable_bad_pred)
                continue
        used_rows.append(len(state))
        state.append(_USED)
        truths.append(t)
        preds.append(p)
        scores.append(score)

    row_state = np.array(state, dtype=np.int8)
    row_ts_us = np.array(row_ts, dtype=np.int64)
    positions = np.array(used_rows, dtype=np.int64)
    n = len(truths)
    if regression:
        return KPIInputs(task, (), np.array(truths, dtype=np.float64),
                         np.array(preds, dtype=np.float64), None, np.zeros(n, dtype=bool),
                         row_ts_us[positions], row_ts_us, row_state, np.zeros(n, dtype=bool))
    return _classification_inputs(task, classes, truths, preds, scores, positions,
                                  row_ts_us, row_state)


def _classification_inputs(task: str, classes: Sequence[Any] | None, truths: list[Any],
                           preds: list[Any], scores: list[Any], positions: IntArray,
                           row_ts_us: IntArray, row_state: npt.NDArray[np.int8]) -> KPIInputs:
    """Second pass of :func:`kpi_inputs`: probabilities, class universe and codes.

    Done on whole arrays once the rows are read, because the class order and the width
    of the probability vectors are properties of the set of rows, not of one row.
    """
    n = len(truths)
    given = None if classes is None else [_as_class(c) for c in classes]
    if given is not None and (None in given or len(set(given)) != len(given)):
        raise ValueError(f"classes must be distinct ints or strings, got {list(classes or ())!r}")
    with_score = [i for i, s in enumerate(scores) if s is not None]
    vec, ok = _proba_matrix([scores[i] for i in with_score],
                            None if given is None else len(given))
    width = vec.shape[1]
    proba_rows = np.full((n, width), np.nan)
    proba_rows[with_score] = vec
    sent = np.zeros(n, dtype=bool)
    sent[with_score] = True
    has = np.zeros(n, dtype=bool)
    has[with_score] = ok
    from_proba = np.fromiter((p is _FROM_PROBA for p in preds), dtype=bool, count=n)
    reason = np.zeros(n, dtype=np.int8)
    if given is None and has.any() and any(isinstance(t, str) for t in truths):
        has[:] = False  # index i of a vector is class i, which cannot be a string label
        reason[from_proba] = _STATE[NEEDS_CLASSES]
    reason[from_proba & ~has & (reason == 0)] = _STATE[BAD_PREDICTION]

    # Index i of a probability vector is the class index_class[i].
    index_class = given if given is not None else list(range(width))
    if given is not None:
        universe = list(given)
    else:
        ok_rows = (reason == 0).tolist()
        seen = {t for t, good in zip(truths, ok_rows, strict=True) if good}
        seen.update(p for p, good in zip(preds, ok_rows, strict=True)
                    if good and p is not _FROM_PROBA)
        if has.any():
            seen.update(index_class)
        universe = sorted(seen, key=_class_sort_key)
    code = {c: i for i, c in enumerate(universe)}
    y_true = np.fromiter((code.get(t, -1) for t in truths), dtype=np.int64, count=n)
    y_pred = np.fromiter((-1 if p is _FROM_PROBA else code.get(p, -1) for p in preds),
                         dtype=np.int64, count=n)
    proba: FloatArray | None = None
    if has.any():
        columns = np.array([code[c] for c in index_class], dtype=np.int64)
        argmax_rows = from_proba & has
        y_pred[argmax_rows] = columns[np.argmax(proba_rows[argmax_rows], axis=1)]
        proba = np.full((n, len(universe)), np.nan)
        sub = np.zeros((int(has.sum()), len(universe)))
        sub[:, columns] = proba_rows[has]
        proba[has] = sub
    reason[(reason == 0) & ((y_true < 0) | (y_pred < 0))] = _STATE[UNKNOWN_CLASS]
    keep = reason == 0
    state = row_state.copy()
    state[positions[~keep]] = reason[~keep]
    return KPIInputs(task, tuple(universe), y_true[keep], y_pred[keep],
                     None if proba is None else proba[keep], has[keep],
                     row_ts_us[positions[keep]], row_ts_us, state, (sent & ~has)[keep])


# --------------------------------------------------------------------------------------
# KPIs.
# --------------------------------------------------------------------------------------

def _none(names: Iterable[str], n: int, reason: str) -> dict[str, KPI]:
    return {name: KPI(name, None, None, None, n, None, reason) for name in names}


def _with_bootstrap(name: str, value: float | None, n: int, replicates: FloatArray,
                    scale: float, confidence: float, undefined: str = "undefined") -> KPI:
    if value is None or not math.isfinite(value):
        return KPI(name, None, None, None, n, None, undefined)
    interval = _percentile_interval(name, value, replicates, scale, confidence)
    if interval is None:
        return KPI(name, value, None, None, n, None,
                   "too few bootstrap resamples where the KPI is defined")
    return KPI(name, value, interval[0], interval[1], n, "bootstrap")


@dataclass(frozen=True)
class _Boot:
    """How to draw resamples: a seeded generator, their number and size cap."""

    rng: np.random.Generator
    n_boot: int
    max_n: int
    confidence: float

    def draw(self, n: int) -> tuple[IntArray, IntArray, float]:
        """Indices of the full sample (1, n), of the resamples (B, m), and the scale."""
        m = min(n, self.max_n)
        idx = self.rng.integers(0, n, size=(self.n_boot, m), dtype=np.int64)
        return np.arange(n, dtype=np.int64)[None, :], idx, math.sqrt(m / n)


def _classification_kpis(inp: KPIInputs, min_samples: int, boot: _Boot,
                         n_bins: int) -> dict[str, KPI]:
    n, k = len(inp.y_true), len(inp.classes)
    conf = boot.confidence
    out: dict[str, KPI] = {}
    if n < min_samples:
        return _none(CLASSIFICATION_KPIS, n,
                     f"{n} labelled predictions, fewer than min_samples={min_samples}")
    y, yp = inp.y_true, inp.y_pred
    hits = int(np.count_nonzero(y == yp))
    lower, upper = wilson_interval(hits, n, conf)
    out["accuracy"] = KPI("accuracy", hits / n, lower, upper, n, "wilson")
    full, idx, scale = boot.draw(n)
    pairs = y * k + yp
    point, reps = _prf_batched(pairs[full], k), _prf_batched(pairs[idx], k)
    for name in CLASSIFICATION_KPIS[1:7]:
        out[name] = _with_bootstrap(name, float(point[name][0]), n, reps[name], scale, conf)

    nq = int(inp.has_proba.sum())
    if inp.proba is None or nq == 0:
        reason = ("no usable class probabilities: log the predict_proba vector, or set "
                  "score_field")
        out.update(_none(PROBA_KPIS, 0, reason))
        return out
    if nq < min_samples:
        out.update(_none(PROBA_KPIS, nq, f"{nq} labelled predictions with probabilities, "
                                         f"fewer than min_samples={min_samples}"))
        return out
    yq, pq = y[inp.has_proba], inp.proba[inp.has_proba]
    full, idx, scale = boot.draw(nq)
    present = [int(c) for c in np.unique(yq)]
    one_class = "only one class among the labels: ROC AUC is undefined"

    def auc(ix: IntArray) -> FloatArray:
        if k == 2:
            return _auc_resampled(yq == 1, pq[:, 1], ix)
        return _ovr_auc_resampled(yq, pq, ix, present)

    point_auc = float(auc(full)[0]) if len(present) >= 2 else math.nan
    out["roc_auc"] = _with_bootstrap("roc_auc", point_auc, nq,
                                     auc(idx) if math.isfinite(point_auc) else np.empty(0),
                                     scale, conf, one_class)
    clipped = np.clip(pq[np.arange(nq), yq], LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS)
    per_row: dict[str, FloatArray] = {"log_loss": -np.log(clipped), "brier": _brier_terms(yq, pq)}
    for name, terms in per_row.items():
        out[name] = _with_bootstrap(name, float(terms.mean()), nq, terms[idx].mean(axis=1),
                                    scale, conf)
    top = pq.max(axis=1)
    correct = np.argmax(pq, axis=1) == yq
    ece = float(_ece_batched(top[full], correct[full], n_bins)[0])
    out["ece"] = _with_bootstrap("ece", ece, nq, _ece_batched(top[idx], correct[idx], n_bins),
                                 scale, conf)
    return out


def _regression_kpis(inp: KPIInputs, min_samples: int, boot: _Boot) -> dict[str, KPI]:
    n = len(inp.y_true)
    if n < min_samples:
        return _none(REGRESSION_KPIS, n,
                     f"{n} labelled predictions, fewer than min_samples={min_samples}")
    y, yp = inp.y_true, inp.y_pred
    full, idx, scale = boot.draw(n)
    err = y - yp
    sq = err * err
    ape = np.abs(err) / np.maximum(np.abs(y), MAPE_EPS)
    batched: dict[str, Callable[[IntArray], FloatArray]] = {
        "mae": lambda ix: np.abs(err[ix]).mean(axis=1),
        "rmse": lambda ix: np.sqrt(sq[ix].mean(axis=1)),
        "mape": lambda ix: ape[ix].mean(axis=1),
        "r2": lambda ix: _r2_batched(y[ix], sq[ix]),
    }
    out = {}
    for name, fn in batched.items():
        value = float(fn(full)[0])
        reps = fn(idx) if math.isfinite(value) else np.empty(0)
        out[name] = _with_bootstrap(name, value, n, reps, scale, boot.confidence,
                                    "the labels are constant: R^2 is undefined")
    return out


def kpis_from_inputs(inputs: KPIInputs, *, min_samples: int = 50, confidence: float = 0.95,
                     n_boot: int = 200, max_boot_n: int = 2000, n_bins: int = 10,
                     seed: int | Sequence[int] = 0) -> KPIReport:
    """The KPIs of prepared inputs (see :func:`compute_kpis` for the parameters)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_boot < 10 or max_boot_n < 10 or n_bins < 1 or min_samples < 1:
        raise ValueError("n_boot and max_boot_n must be at least 10, n_bins and min_samples "
                         "at least 1")
    boot = _Boot(np.random.default_rng(seed), n_boot, max_boot_n, confidence)
    if inputs.task == "regression":
        kpis = _regression_kpis(inputs, min_samples, boot)
    else:
        kpis = _classification_kpis(inputs, min_samples, boot, n_bins)
    counts = np.bincount(inputs.row_state.astype(np.int64), minlength=2 + len(REASONS))
    n_used, n_missing = int(counts[_USED]), int(counts[_MISSING_LABEL])
    unusable = {r: int(counts[_STATE[r]]) for r in REASONS if counts[_STATE[r]]}
    n_unusable = sum(unusable.values())
    reason = None
    if n_used < min_samples:
        reason = f"{n_used} labelled predictions, fewer than min_samples={min_samples}"
    return KPIReport(task=inputs.task, kpis=kpis, n_rows=len(inputs.row_state),
                     n_labelled=n_used + n_unusable, n_missing=n_missing, n_used=n_used,
                     n_unusable=n_unusable, unusable=unusable,
                     n_proba=int(inputs.has_proba.sum()),
                     proba_invalid=int(inputs.proba_invalid.sum()), confidence=confidence,
                     reason=reason)


def compute_kpis(rows: Iterable[Any], *, task: str = "classification",
                 prediction_field: str | None = None, label_field: str | None = None,
                 score_field: str | None = None, classes: Sequence[Any] | None = None,
                 min_samples: int = 50, confidence: float = 0.95, n_boot: int = 200,
                 max_boot_n: int = 2000, n_bins: int = 10, seed: int = 0) -> KPIReport:
    """KPIs of joined rows with confidence intervals.

    How rows are read: :func:`kpi_inputs`. Below ``min_samples`` labelled, usable
    predictions no KPI has a value (each says why, and the report keeps the counts);
    the probability KPIs need ``min_samples`` rows with probabilities. ``confidence`` is
    the level of every interval; ``n_boot``, ``max_boot_n`` and ``seed`` drive the
    bootstrap (module docstring); ``n_bins`` is the number of ECE bins.
    Classification KPIs: ``CLASSIFICATION_KPIS``; regression: ``REGRESSION_KPIS``.
    """
    inputs = kpi_inputs(rows, task=task, prediction_field=prediction_field,
                        label_field=label_field, score_field=score_field, classes=classes)
    return kpis_from_inputs(inputs, min_samples=min_samples, confidence=confidence,
                            n_boot=n_boot, max_boot_n=max_boot_n, n_bins=n_bins, seed=seed)


def window_kpis(rows: Iterable[Any], window_s: float, *,
                task: str = "classification", prediction_field: str | None = None,
                label_field: str | None = None, score_field: str | None = None,
                classes: Sequence[Any] | None = None, min_samples: int = 50,
                confidence: float = 0.95, n_boot: int = 200, max_boot_n: int = 2000,
                n_bins: int = 10, seed: int = 0) -> list[KPIReport]:
    """KPIs per tumbling window of prediction time, oldest first.

    Windows are ``[k * window_s, (k + 1) * window_s)`` in epoch seconds, so they do not
    move between runs: read the rows again (``store.joined(model, since_us=...)``, with
    ``since_us`` on a window boundary) and a label that arrived late changes the window
    of its prediction, and only that one. Each window's bootstrap is seeded from
    ``seed`` and the window's start, so unchanged rows give an unchanged report. Only
    windows with at least one row are returned; rows without a timestamp (``ts_us`` or
    an RFC 3339 ``ts``) belong to no window and are left out.
    Other parameters: :func:`compute_kpis`.
    """
    width_us = round(window_s * 1_000_000)
    if width_us <= 0:
        raise ValueError(f"window_s must be positive, got {window_s}")
    inputs = kpi_inputs(rows, task=task, prediction_field=prediction_field,
                        label_field=label_field, score_field=score_field, classes=classes)
    has_ts = inputs.row_ts_us != _NO_TS
    row_window = inputs.row_ts_us // width_us
    used_window = inputs.ts_us // width_us
    reports = []
    for w in np.unique(row_window[has_ts]):
        sub = inputs.subset(has_ts & (row_window == w), (used_window == w)
                            & (inputs.ts_us != _NO_TS))
        start = int(w) * width_us
        report = kpis_from_inputs(sub, min_samples=min_samples, confidence=confidence,
                                  n_boot=n_boot, max_boot_n=max_boot_n, n_bins=n_bins,
                                  seed=[seed, start & 0xFFFF_FFFF_FFFF_FFFF])
        reports.append(replace(report, window_start_us=start, window_end_us=start + width_us))
    return reports
