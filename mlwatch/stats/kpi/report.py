"""The KPIs of joined rows: :func:`compute_kpis`, per window :func:`window_kpis`.

Both read the rows with :func:`~mlwatch.stats.kpi.inputs.kpi_inputs` and return
:class:`~mlwatch.stats.kpi.results.KPIReport` objects. :func:`window_kpis` seeds each
window's bootstrap from ``seed`` and the window's start, so a window's intervals depend
only on its own rows: reading the rows again after a late label changes the report of
that label's window, and of no other.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from mlwatch.stats.kpi.estimates import _Boot, _classification_kpis, _regression_kpis
from mlwatch.stats.kpi.inputs import KPIInputs, kpi_inputs
from mlwatch.stats.kpi.results import KPIReport
from mlwatch.stats.kpi.rows import _MISSING_LABEL, _NO_TS, _STATE, _USED, REASONS


def kpis_from_inputs(
    inputs: KPIInputs,
    *,
    min_samples: int = 50,
    confidence: float = 0.95,
    n_boot: int = 200,
    max_boot_n: int = 2000,
    n_bins: int = 10,
    seed: int | Sequence[int] = 0,
) -> KPIReport:
    """The KPIs of prepared inputs (see :func:`compute_kpis` for the parameters)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_boot < 10 or max_boot_n < 10 or n_bins < 1 or min_samples < 1:
        raise ValueError(
            "n_boot and max_boot_n must be at least 10, n_bins and min_samples at least 1"
        )
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
    return KPIReport(
        task=inputs.task,
        kpis=kpis,
        n_rows=len(inputs.row_state),
        n_labelled=n_used + n_unusable,
        n_missing=n_missing,
        n_used=n_used,
        n_unusable=n_unusable,
        unusable=unusable,
        n_proba=int(inputs.has_proba.sum()),
        proba_invalid=int(inputs.proba_invalid.sum()),
        confidence=confidence,
        reason=reason,
    )


def compute_kpis(
    rows: Iterable[Any],
    *,
    task: str = "classification",
    prediction_field: str | None = None,
    label_field: str | None = None,
    score_field: str | None = None,
    classes: Sequence[Any] | None = None,
    min_samples: int = 50,
    confidence: float = 0.95,
    n_boot: int = 200,
    max_boot_n: int = 2000,
    n_bins: int = 10,
    seed: int = 0,
) -> KPIReport:
    """KPIs of joined rows with confidence intervals.

    How rows are read: :func:`kpi_inputs`. Below ``min_samples`` labelled, usable
    predictions no KPI has a value (each says why, and the report keeps the counts);
    the probability KPIs need ``min_samples`` rows with probabilities. ``confidence`` is
    the level of every interval; ``n_boot``, ``max_boot_n`` and ``seed`` drive the
    bootstrap (module docstring); ``n_bins`` is the number of ECE bins.
    Classification KPIs: ``CLASSIFICATION_KPIS``; regression: ``REGRESSION_KPIS``.
    """
    inputs = kpi_inputs(
        rows,
        task=task,
        prediction_field=prediction_field,
        label_field=label_field,
        score_field=score_field,
        classes=classes,
    )
    return kpis_from_inputs(
        inputs,
        min_samples=min_samples,
        confidence=confidence,
        n_boot=n_boot,
        max_boot_n=max_boot_n,
        n_bins=n_bins,
        seed=seed,
    )


def window_kpis(
    rows: Iterable[Any],
    window_s: float,
    *,
    task: str = "classification",
    prediction_field: str | None = None,
    label_field: str | None = None,
    score_field: str | None = None,
    classes: Sequence[Any] | None = None,
    min_samples: int = 50,
    confidence: float = 0.95,
    n_boot: int = 200,
    max_boot_n: int = 2000,
    n_bins: int = 10,
    seed: int = 0,
) -> list[KPIReport]:
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
    inputs = kpi_inputs(
        rows,
        task=task,
        prediction_field=prediction_field,
        label_field=label_field,
        score_field=score_field,
        classes=classes,
    )
    has_ts = inputs.row_ts_us != _NO_TS
    row_window = inputs.row_ts_us // width_us
    used_window = inputs.ts_us // width_us
    reports = []
    for w in np.unique(row_window[has_ts]):
        sub = inputs.subset(
            has_ts & (row_window == w), (used_window == w) & (inputs.ts_us != _NO_TS)
        )
        start = int(w) * width_us
        report = kpis_from_inputs(
            sub,
            min_samples=min_samples,
            confidence=confidence,
            n_boot=n_boot,
            max_boot_n=max_boot_n,
            n_bins=n_bins,
            seed=[seed, start & 0xFFFF_FFFF_FFFF_FFFF],
        )
        reports.append(replace(report, window_start_us=start, window_end_us=start + width_us))
    return reports
