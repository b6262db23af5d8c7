"""What a comparison returns: one :class:`Difference` per KPI, and the :class:`Comparison`.

Plain data, rendered elsewhere (the ``mlwatch compare`` table and JSON, the scheduler's
gauges). Infinite bounds (a quantile sequence that has not closed yet) are ``null`` in
:meth:`Comparison.to_dict`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Difference:
    """The difference ``candidate - baseline`` of one KPI, its intervals and verdict.

    ``lower``/``upper`` bound the anytime-valid confidence sequence at ``alpha`` (the
    verdict's interval); ``fixed_lower``/``fixed_upper`` the fixed-sample interval, which
    is valid only when looked at once. ``reason`` says why the verdict is ``not enough
    data`` when a group is too small or the KPI cannot be computed.
    """

    kpi: str
    higher_is_better: bool
    baseline: float | None
    candidate: float | None
    difference: float | None
    lower: float | None
    upper: float | None
    fixed_lower: float | None
    fixed_upper: float | None
    n_baseline: int
    n_candidate: int
    margin: float
    alpha: float
    verdict: str
    gated: bool = True
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: _finite(v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class Comparison:
    """A candidate against a baseline: the differences, the overall verdict (over the
    gated KPIs) and the drift of the candidate's predictions from the baseline's."""

    baseline: str
    candidate: str
    task: str
    verdict: str
    differences: dict[str, Difference]
    prediction_drift: dict[str, Any] | None
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    method: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON of ``mlwatch compare --json`` (docs/compare.md)."""
        return {
            "baseline": self.baseline,
            "candidate": self.candidate,
            "task": self.task,
            "verdict": self.verdict,
            "kpis": [d.to_dict() for d in self.differences.values()],
            "prediction_drift": self.prediction_drift,
            "counts": self.counts,
            "method": self.method,
        }


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
