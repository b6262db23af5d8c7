"""The KPIs of one sample, each with its interval: a bootstrap shared by all of them.

The resamples are drawn once per sample (seeded: ``seed``; ``n_boot`` of them, 200 by
default), and every KPI of that sample is computed on the same ones by the batched
kernels of :mod:`.kernels`. A sample larger than ``max_boot_n`` (2,000) is resampled
with ``max_boot_n`` draws and the interval rescaled, see :mod:`.intervals`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from mlwatch.stats.kpi.inputs import KPIInputs
from mlwatch.stats.kpi.intervals import _percentile_interval, wilson_interval
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
from mlwatch.stats.kpi.results import CLASSIFICATION_KPIS, KPI, PROBA_KPIS, REGRESSION_KPIS


def _none(names: Iterable[str], n: int, reason: str) -> dict[str, KPI]:
    return {name: KPI(name, None, None, None, n, None, reason) for name in names}


def _with_bootstrap(
    name: str,
    value: float | None,
    n: int,
    replicates: FloatArray,
    scale: float,
    confidence: float,
    undefined: str = "undefined",
) -> KPI:
    if value is None or not math.isfinite(value):
        return KPI(name, None, None, None, n, None, undefined)
    interval = _percentile_interval(name, value, replicates, scale, confidence)
    if interval is None:
        return KPI(
            name, value, None, None, n, None, "too few bootstrap resamples where the KPI is defined"
        )
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


def _classification_kpis(
    inp: KPIInputs, min_samples: int, boot: _Boot, n_bins: int
) -> dict[str, KPI]:
    n, k = len(inp.y_true), len(inp.classes)
    conf = boot.confidence
    out: dict[str, KPI] = {}
    if n < min_samples:
        return _none(
            CLASSIFICATION_KPIS,
            n,
            f"{n} labelled predictions, fewer than min_samples={min_samples}",
        )
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
        reason = "no usable class probabilities: log the predict_proba vector, or set score_field"
        out.update(_none(PROBA_KPIS, 0, reason))
        return out
    if nq < min_samples:
        out.update(
            _none(
                PROBA_KPIS,
                nq,
                f"{nq} labelled predictions with probabilities, "
                f"fewer than min_samples={min_samples}",
            )
        )
        return out
    out.update(_proba_kpis(y[inp.has_proba], inp.proba[inp.has_proba], k, boot, n_bins))
    return out


def _proba_kpis(yq: IntArray, pq: FloatArray, k: int, boot: _Boot, n_bins: int) -> dict[str, KPI]:
    """ROC AUC, log loss, Brier and ECE of the rows with probabilities (enough of them)."""
    nq, conf = len(yq), boot.confidence
    full, idx, scale = boot.draw(nq)
    present = [int(c) for c in np.unique(yq)]
    one_class = "only one class among the labels: ROC AUC is undefined"

    def auc(ix: IntArray) -> FloatArray:
        if k == 2:
            return _auc_resampled(yq == 1, pq[:, 1], ix)
        return _ovr_auc_resampled(yq, pq, ix, present)

    out: dict[str, KPI] = {}
    point_auc = float(auc(full)[0]) if len(present) >= 2 else math.nan
    out["roc_auc"] = _with_bootstrap(
        "roc_auc",
        point_auc,
        nq,
        auc(idx) if math.isfinite(point_auc) else np.empty(0),
        scale,
        conf,
        one_class,
    )
    clipped = np.clip(pq[np.arange(nq), yq], LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS)
    per_row: dict[str, FloatArray] = {"log_loss": -np.log(clipped), "brier": _brier_terms(yq, pq)}
    for name, terms in per_row.items():
        out[name] = _with_bootstrap(
            name, float(terms.mean()), nq, terms[idx].mean(axis=1), scale, conf
        )
    top = pq.max(axis=1)
    correct = np.argmax(pq, axis=1) == yq
    ece = float(_ece_batched(top[full], correct[full], n_bins)[0])
    out["ece"] = _with_bootstrap(
        "ece", ece, nq, _ece_batched(top[idx], correct[idx], n_bins), scale, conf
    )
    return out


def _regression_kpis(inp: KPIInputs, min_samples: int, boot: _Boot) -> dict[str, KPI]:
    n = len(inp.y_true)
    if n < min_samples:
        return _none(
            REGRESSION_KPIS, n, f"{n} labelled predictions, fewer than min_samples={min_samples}"
        )
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
        out[name] = _with_bootstrap(
            name,
            value,
            n,
            reps,
            scale,
            boot.confidence,
            "the labels are constant: R^2 is undefined",
        )
    return out
