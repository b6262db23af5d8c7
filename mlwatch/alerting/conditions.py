"""The scheduler's own results against a model's retrain conditions, so retraining can
start without Prometheus: a dataset drift share at or above a bound, named features
drifted, a KPI below (or above) a bound for N consecutive windows with enough samples.

Each check returns None when the condition does not hold (its cause is cleared), or the
reason and the evidence a trigger carries.

>>> from mlwatch.settings.retrain import Condition
>>> report = {"drift_share": 0.5, "features": [
...     {"name": "x", "drifted": True, "method": "ks", "score": 0.4, "threshold": 0.1,
...      "p_value": 0.001}, {"name": "y", "drifted": False, "method": "ks", "score": 0.02,
...      "threshold": 0.1, "p_value": 0.6}]}
>>> drift(Condition("drift_share", drift_share=0.3), report)[0]
'dataset drift share 0.50 >= 0.30 (drifted: x)'
>>> drift(Condition("features", features=("y",)), report) is None
True
"""

from __future__ import annotations

from typing import Any

from mlwatch.settings.retrain import Condition

Breach = tuple[str, dict[str, Any]]


class Unknown:
    """Too little data to say whether a condition holds (fewer KPI windows than it needs,
    or one below its sample size): the cause is neither requested nor cleared."""

    def __init__(self, why: str) -> None:
        self.why = why


def _drifted(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [f for f in report.get("features", []) if f.get("drifted")]


def drift(condition: Condition, report: dict[str, Any]) -> Breach | None:
    """A drift report (``DriftReport.to_dict()``) against a drift_share or features condition."""
    drifted = _drifted(report)
    evidence = {
        "drift_share": report.get("drift_share"),
        "drifted": [
            {k: f.get(k) for k in ("name", "method", "score", "threshold", "p_value")}
            for f in drifted
        ],
    }
    names = ", ".join(f["name"] for f in drifted)
    if condition.kind == "drift_share":
        share, bound = float(report.get("drift_share") or 0.0), condition.drift_share or 1.0
        if share < bound:
            return None
        return f"dataset drift share {share:.2f} >= {bound:.2f} (drifted: {names})", evidence
    hit = [f for f in drifted if f["name"] in condition.features]
    if not hit:
        return None
    return f"feature drift: {', '.join(f['name'] for f in hit)}", evidence


def kpi(
    condition: Condition, windows: list[tuple[int, int, dict[str, Any]]]
) -> Breach | Unknown | None:
    """The newest ``condition.windows`` KPI reports (oldest first, each ``(start_us,
    end_us, report dict)``) all beyond the bound, each with at least ``min_samples``."""
    name = condition.kpi or ""
    recent = windows[-condition.windows :]
    if len(recent) < condition.windows:
        return Unknown(f"{len(recent)} of {condition.windows} windows")
    values = []
    for start, end, report in recent:
        entry = report.get("kpis", {}).get(name) or {}
        value, n = entry.get("value"), int(entry.get("n") or 0)
        if value is None or n < condition.min_samples:
            return Unknown(f"{n} labelled predictions, fewer than {condition.min_samples}")
        beyond = (
            value < condition.below
            if condition.below is not None
            else value > (condition.above or 0)
        )
        if not beyond:
            return None
        values.append(
            {
                "window": [start, end],
                "value": value,
                "n": n,
                "lower": entry.get("lower"),
                "upper": entry.get("upper"),
            }
        )
    bound = f"< {condition.below}" if condition.below is not None else f"> {condition.above}"
    last = values[-1]["value"]
    reason = f"{name} {last:.4g} {bound} for {len(values)} window(s)"
    return reason, {"kpi": name, "bound": bound, "windows": values}
