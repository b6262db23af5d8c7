"""Why a job found nothing to compute, in words: the window it looked at and what the
store does hold. An empty result that looks like success (``{"drift": {}}``, exit 0) is
how a forgotten ``--data-dir`` or a window that misses the traffic goes unnoticed."""

from __future__ import annotations

from mlwatch.store import EmbeddedStore
from mlwatch.times import format_us


def window_text(start: int, end: int) -> str:
    return f"[{format_us(start)}, {format_us(end)})"


def held(store: EmbeddedStore, model: str) -> str:
    """What the store holds of ``model``: a count and a time range, or what it holds instead."""
    n, first, last = store.span(model)
    if n:
        assert first is not None and last is not None
        return (
            f"the store {store.path} holds {n} events of {model} "
            f"from {format_us(first)} to {format_us(last)}"
        )
    others = [m for m in store.models() if m != model]
    if others:
        shown = ", ".join(others[:10]) + (", ..." if len(others) > 10 else "")
        return f"the store {store.path} holds no event of {model} (models there: {shown})"
    return f"the store {store.path} holds no event at all (is --data-dir the sidecar's?)"


def empty_drift(store: EmbeddedStore, model: str, start: int, end: int, source: str) -> str:
    """Why the drift job of ``model`` had no window to compare."""
    what = f"drift {model}: no events in {window_text(start, end)}"
    if source != "store":
        return f"{what} (window_source {source})"
    return f"{what}; {held(store, model)}"


def empty_kpis(store: EmbeddedStore, model: str, start: int, end: int, min_samples: int) -> str:
    """Why the KPI job of ``model`` reported nothing over its windows ``[start, end)``."""
    window = window_text(start, end)
    events = store.count_in(model, since_us=start, until_us=end)
    if events == 0:
        return f"kpi {model}: no events in {window}; {held(store, model)}"
    labelled = store.count_labelled(model, since_us=start, until_us=end)
    return (
        f"kpi {model}: {events} events in {window}, {labelled} with ground truth; a window "
        f"needs kpi.min_samples ({min_samples}) labelled predictions (POST /v1/feedback, "
        "log_feedback)"
    )
