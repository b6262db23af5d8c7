"""The drift part of a report, from the result of ``mlwatch drift`` (its JSON dictionary).

The figures are not recomputed: each section carries its feature's dictionary as the
command printed it. Two things are added for the eye — the distributions (from the
prepared columns, when the report was made from files) and the effect the sections are
sorted by: the one ``--min-effect`` uses (normalised Wasserstein distance for numeric
features, JS distance for categorical ones), taken from the result when it is there
(``--min-effect``, or the auto distances, whose score it is) and otherwise computed by
the same statistic on the same prepared columns.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from mlwatch.report.distributions import category_shares, histogram
from mlwatch.report.model import DriftSection, FeatureSection
from mlwatch.stats.drift import PreparedColumn, PreparedData, compare

SUMMARY_KEYS = (
    "dataset_drift",
    "drift_share",
    "drift_share_threshold",
    "n_features",
    "n_evaluated",
    "n_drifted",
    "alpha",
    "correction",
    "corrected_threshold",
    "min_effect",
    "not_compared",
    "files",
    "rows",
)
EFFECT_METHOD = {"numeric": "wasserstein", "categorical": "js"}
TOP_CHANGED = 5


def drift_section(
    result: Mapping[str, Any],
    reference: Mapping[str, PreparedColumn] | None = None,
    current: Mapping[str, PreparedColumn] | None = None,
    *,
    window: list[str] | None = None,
    version: str | None = None,
    sampled: bool = False,
) -> DriftSection:
    """The section of a drift result; with the prepared columns, with distributions.
    ``sampled``: the columns are samples (a stored profile's), drawn but not measured, so
    that no figure of the report comes from a sample."""
    features = [
        _feature(f, (reference or {}).get(f["name"]), (current or {}).get(f["name"]), sampled)
        for f in result["features"]
    ]
    features.sort(key=_order)
    summary = {k: result[k] for k in SUMMARY_KEYS if k in result}
    summary["top_changed"] = [f.name for f in features[:TOP_CHANGED] if f.effect]
    return DriftSection(summary, features, window=window, version=version, sampled=sampled)


def _order(f: FeatureSection) -> tuple[bool, float, str]:
    """Drifted first, then by decreasing effect (unknown last), then by name."""
    effect = f.effect if f.effect is not None and math.isfinite(f.effect) else -1.0
    return (not f.figures["drifted"], -effect, f.name)


def _feature(
    figures: Mapping[str, Any],
    ref: PreparedColumn | None,
    cur: PreparedColumn | None,
    sampled: bool = False,
) -> FeatureSection:
    hist = cats = None
    if ref is not None and cur is not None:
        if ref.values is not None and cur.values is not None:
            hist = histogram(ref.values, cur.values)
        elif ref.counts is not None and cur.counts is not None:
            cats = category_shares(ref.counts, cur.counts)
    return FeatureSection(
        name=str(figures["name"]),
        figures=dict(figures),
        effect=_effect(figures, None, None) if sampled else _effect(figures, ref, cur),
        histogram=hist,
        categories=cats,
    )


def _effect(
    figures: Mapping[str, Any], ref: PreparedColumn | None, cur: PreparedColumn | None
) -> float | None:
    if figures.get("effect") is not None:
        return float(figures["effect"])
    if figures["score"] is None:
        return None
    if figures["method"] == EFFECT_METHOD.get(figures["type"]):
        return float(figures["score"])
    if ref is None or cur is None:
        return None
    return _computed_effect(ref, cur)


def _computed_effect(ref: PreparedColumn, cur: PreparedColumn) -> float | None:
    """The effect by the statistic ``--min-effect`` uses, on the prepared columns."""
    method = EFFECT_METHOD[ref.type]
    with np.errstate(all="ignore"):
        report = compare(
            PreparedData({"x": ref}), PreparedData({"x": cur}), method=method, workers=1
        )
    score = report.features[0].score
    return None if score is None or not math.isfinite(score) else float(score)
