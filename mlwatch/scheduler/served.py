"""One served version as a comparison :class:`~mlwatch.stats.canary.Sample`: its events
of a window joined to their labels, read from the store.

The rows are read as the KPI job reads them (:func:`mlwatch.stats.kpi.kpi_inputs`, with
the model spec's ``task``, ``score_field`` and ``classes``), so a comparison scores a
prediction exactly as the KPI gauges do; the error ratio and the latency come from every
event of the window, labelled or not.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mlwatch.settings import ModelSpec
from mlwatch.stats.canary import Sample
from mlwatch.store import EmbeddedStore


def served_sample(
    store: EmbeddedStore,
    spec: ModelSpec,
    version: str,
    *,
    since_us: int | None = None,
    until_us: int | None = None,
    environment: str | None = None,
) -> Sample:
    """The events of ``version`` in ``[since_us, until_us)`` with their labels."""
    from mlwatch.stats.kpi import kpi_inputs

    rows = list(
        store.served_predictions(
            spec.name,
            since_us=since_us,
            until_us=until_us,
            version=version,
            environment=environment,
        )
    )
    inputs = kpi_inputs(rows, task=spec.task, score_field=spec.score_field, classes=spec.classes)
    proba: Any = None
    if inputs.proba is not None and inputs.has_proba.any():
        proba = np.where(inputs.has_proba[:, None], inputs.proba, np.nan)
    latency = np.fromiter((float(e["latency_ms"]) for e, _ in rows), dtype=np.float64)
    return Sample(
        task=spec.task,
        y_true=inputs.y_true,
        y_pred=inputs.y_pred,
        proba=proba,
        classes=inputs.classes,
        latency_ms=latency,
        n_events=len(rows),
        n_errors=sum(1 for e, _ in rows if e.get("status") == "error"),
    )


def live_pair(
    store: EmbeddedStore,
    model: str,
    *,
    baseline: str | None = None,
    candidate: str | None = None,
    since_us: int | None = None,
    until_us: int | None = None,
    environment: str | None = None,
) -> tuple[str, str] | None:
    """``(baseline, candidate)``: a version given is kept; a missing candidate is the
    version served most recently in the window (of ``environment``, when given), a
    missing baseline the most recently served other than the candidate. None when no
    second version is there to fill in."""
    versions = store.recent_versions(
        model, since_us=since_us, until_us=until_us, environment=environment
    )
    if candidate is None:
        candidate = next((v for v in versions if v != baseline), None)
    if baseline is None:
        baseline = next((v for v in versions if v != candidate), None)
    return None if baseline is None or candidate is None else (baseline, candidate)
