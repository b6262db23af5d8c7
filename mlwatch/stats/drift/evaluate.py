"""One feature scored (:func:`_evaluate`), then the dataset decided (:func:`_finish`).

:func:`_evaluate` computes a feature's statistic with its threshold before any
correction, and ``drifted`` is left False; :func:`_finish` applies the multiple-testing
correction and ``min_effect`` across the features, marks features that broke
(:func:`_broken`) and computes the drift share and the dataset-level decision — the
rules are in the docstring of :mod:`.drift`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from mlwatch.stats.columns import Quality
from mlwatch.stats.drift.options import _effect, _Options
from mlwatch.stats.drift.report import DriftReport, FeatureDrift
from mlwatch.stats.pairs import CategoryTable, NumericPair, Score
from mlwatch.stats.registry import TEST, DriftMethod, get_method


def _evaluate(
    name: str,
    kind: str,
    data: NumericPair | CategoryTable,
    q_ref: Quality,
    q_cur: Quality,
    opts: _Options,
    extra_flags: tuple[str, ...],
    method: DriftMethod,
) -> FeatureDrift:
    threshold = opts.threshold_for(method)
    if data.n_ref == 0 or data.n_cur == 0:
        flag = "no_reference_data" if data.n_ref == 0 else "no_current_data"
        score = Score(None, None, {}, (flag,))
    else:
        with np.errstate(all="ignore"):
            score = method.compute(data, bins=opts.bins)
    effect = None
    if opts.min_effect is not None and score.score is not None:
        effect = _effect(method, data, score)
    unseen: tuple[str, ...] = ()
    unseen_count = 0
    flags = extra_flags + score.flags
    if isinstance(data, CategoryTable):
        unseen, unseen_count = data.unseen, data.unseen_count
        if unseen_count:
            flags += ("unseen_categories",)
        if data.truncated:
            flags += ("reference_categories_truncated",)
    score_value = None if score.score is None else float(score.score)
    if score_value is not None and math.isnan(score_value):
        score_value = None
    return FeatureDrift(
        name,
        kind,
        method.name,
        method.kind,
        score_value,
        None if score.p_value is None else float(score.p_value),
        threshold,
        False,
        effect,
        q_ref,
        q_cur,
        unseen,
        unseen_count,
        score.details,
        flags,
    )


def _finish(results: Sequence[FeatureDrift], opts: _Options) -> DriftReport:
    """Apply thresholds, the multiple-testing correction and ``min_effect``; decide."""
    tested = [r for r in results if r.kind == TEST and r.p_value is not None]
    m = len(tested)
    corrected: float | None = None
    cutoff: dict[str, float] = {}
    if opts.correction == "bonferroni" and m:
        corrected = opts.alpha / m
        cutoff = {r.name: r.threshold / m for r in tested}
    elif opts.correction == "bh" and m:
        p = np.sort(np.array([r.p_value for r in tested], dtype=np.float64))
        below = np.flatnonzero(p <= np.arange(1, m + 1) * opts.alpha / m)
        k = int(below[-1]) + 1 if below.size else 0
        corrected = max(k, 1) * opts.alpha / m
        cutoff = {r.name: corrected for r in tested}
    out = []
    for r in results:
        threshold = cutoff.get(r.name, r.threshold)
        method = get_method(r.method)
        if opts.correction == "bh" and r.name in cutoff:
            drifted = r.p_value is not None and r.p_value <= threshold
        else:
            drifted = method.is_drifted(Score(r.score, r.p_value), threshold)
        if opts.min_effect is not None:
            drifted = drifted and r.effect is not None and r.effect >= opts.min_effect
        if _broken(r):  # rows arrived, none usable: the feature broke, which is drift too
            drifted = True
        out.append(replace(r, threshold=threshold, drifted=bool(drifted)))
    evaluated = [r for r in out if r.score is not None or r.drifted]
    share = sum(r.drifted for r in evaluated) / len(evaluated) if evaluated else 0.0
    return DriftReport(
        tuple(out),
        share,
        bool(evaluated) and share >= opts.drift_share,
        opts.drift_share,
        opts.alpha,
        opts.correction,
        corrected,
        opts.min_effect,
    )


def _broken(r: FeatureDrift) -> bool:
    """The reference had values and the current window has rows but no usable value of
    the feature (all missing, all non-finite, or all of the wrong type)."""
    return (
        "no_current_data" in r.flags
        and r.current_quality.count > 0
        and r.reference_quality.used > 0
    )
