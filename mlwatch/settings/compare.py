"""The ``compare`` key of a monitored model spec: the scheduler's canary / A-B job.

    compare:
      baseline: v1            # default: the most recently served version but the candidate
      candidate: v2           # default: the most recently served version but the baseline
      since: 2026-11-01T00:00:00Z   # default: the candidate's first event
      alpha: 0.05
      margins: {accuracy: 0.01, latency_p99: 5}
      gate: [accuracy, error_ratio]  # default: the task's KPIs and error_ratio
      min_samples: 100
      tune_n: 1000

The data is every event from ``since`` on, a sample that only grows, as the anytime-valid
sequences of :mod:`mlwatch.stats.canary` need.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from mlwatch.errors import ConfigError, did_you_mean

COMPARE_KEYS = frozenset(
    {"baseline", "candidate", "since", "alpha", "margins", "gate", "min_samples", "tune_n"}
)

#: The KPIs a comparison has (:mod:`mlwatch.stats.canary`; kept here so that reading the
#: settings imports no numpy, and tested equal).
COMPARE_KPIS = (
    "accuracy", "log_loss", "brier", "mae", "mse", "mape",
    "error_ratio", "latency_p50", "latency_p99",
)  # fmt: skip


@dataclass(frozen=True)
class CompareSpec:
    """The compare job of one model (defaults as ``mlwatch compare``'s)."""

    baseline: str | None = None
    candidate: str | None = None
    since: str | None = None  # RFC 3339; None: from the candidate's first event
    alpha: float = 0.05
    margins: tuple[tuple[str, float], ...] = ()
    gate: tuple[str, ...] | None = None
    min_samples: int = 100
    tune_n: int = 1000


def _number(value: Any, at: str, source: str, *, upper: float | None = None) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
        or (upper is not None and not 0 < value < upper)
    ):
        bound = f"in (0, {upper})" if upper else ">= 0"
        raise ConfigError(at, f"expected a number {bound}, got {value!r}", source=source)
    return float(value)


def _count(value: Any, at: str, source: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(at, f"expected a positive integer, got {value!r}", source=source)
    return value


def parse_compare(raw: Any, at: str, source: str, since: Any = None) -> CompareSpec:
    """The ``compare`` mapping at ``at`` (``models[i].compare``); ``since`` is the key's
    value already checked as RFC 3339 by the caller."""
    if raw is True or raw == {}:
        return CompareSpec()
    if not isinstance(raw, dict):
        raise ConfigError(at, "expected a mapping (or true for the defaults)", source=source)
    if unknown := set(raw) - COMPARE_KEYS:
        name = sorted(map(str, unknown))[0]
        raise ConfigError(
            f"{at}.{name}", f"unknown key{did_you_mean(name, COMPARE_KEYS)}", source=source
        )
    margins = raw.get("margins") or {}
    if not isinstance(margins, dict):
        raise ConfigError(f"{at}.margins", "expected a mapping of KPI to margin", source=source)
    for kpi in margins:
        if kpi not in COMPARE_KPIS:
            raise ConfigError(
                f"{at}.margins.{kpi}",
                f"no such KPI{did_you_mean(str(kpi), COMPARE_KPIS)}; the KPIs are "
                + ", ".join(COMPARE_KPIS),
                source=source,
            )
    gate = raw.get("gate")
    if gate is not None and not (isinstance(gate, list) and all(isinstance(g, str) for g in gate)):
        raise ConfigError(f"{at}.gate", "expected a list of KPI names", source=source)
    if gate is not None and not gate:
        raise ConfigError(f"{at}.gate", "expected at least one KPI (or no gate key)", source=source)
    if gate and (unknown_kpis := [g for g in gate if g not in COMPARE_KPIS]):
        raise ConfigError(
            f"{at}.gate",
            f"no such KPI: {', '.join(unknown_kpis)}; the KPIs are {', '.join(COMPARE_KPIS)}",
            source=source,
        )
    return CompareSpec(
        baseline=None if raw.get("baseline") is None else str(raw["baseline"]),
        candidate=None if raw.get("candidate") is None else str(raw["candidate"]),
        since=since,
        alpha=_number(raw.get("alpha", 0.05), f"{at}.alpha", source, upper=1.0),
        margins=tuple(
            (str(k), _number(v, f"{at}.margins.{k}", source)) for k, v in margins.items()
        ),
        gate=None if gate is None else tuple(gate),
        min_samples=_count(raw.get("min_samples", 100), f"{at}.min_samples", source),
        tune_n=_count(raw.get("tune_n", 1000), f"{at}.tune_n", source),
    )
