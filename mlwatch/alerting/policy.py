"""Whether a cause may start retraining now: the cooldown, the hysteresis and the daily
bound, stated once.

A cause (``alert:MlwatchDatasetDrift``, ``kpi:accuracy``, ``drift_share``) that fires
again while it is still active starts no second trigger before its cooldown has passed:
a storm of alerts for one cause is one trigger. Once the condition has cleared (a
resolved alert, a drift run below the bound), it may trigger again. At most
``max_per_day`` triggers a model in any 24 hours, whatever their causes.

>>> decide(None, now_us=10, cooldown_us=5, recent=0, max_per_day=3) is None
True
>>> decide({"active": 1, "last_trigger_us": 8}, now_us=10, cooldown_us=5, recent=1, max_per_day=3)
'the cause is still active and triggered 0 s ago (cooldown 0 s)'
>>> decide({"active": 0, "last_trigger_us": 8}, now_us=10, cooldown_us=5, recent=3, max_per_day=3)
'max_per_day (3) reached'
"""

from __future__ import annotations

from typing import Any

DAY_US = 86_400_000_000


def decide(
    state: dict[str, Any] | None,
    *,
    now_us: int,
    cooldown_us: int,
    recent: int,
    max_per_day: int,
) -> str | None:
    """None when the cause may trigger now, else why not (said in the audit record)."""
    last = None if state is None else state.get("last_trigger_us")
    active = state is not None and bool(state.get("active"))
    if active and last is not None and now_us - last < cooldown_us:
        return (
            f"the cause is still active and triggered {(now_us - last) // 1_000_000} s ago "
            f"(cooldown {cooldown_us // 1_000_000} s)"
        )
    if recent >= max_per_day:
        return f"max_per_day ({max_per_day}) reached"
    return None


def backoff_s(attempts: int, rng: float, *, base_s: float = 5.0, max_s: float = 600.0) -> float:
    """The wait before attempt ``attempts + 1``: exponential with full jitter.

    >>> backoff_s(0, 1.0), backoff_s(3, 0.5), backoff_s(20, 1.0)
    (5.0, 20.0, 600.0)
    """
    return float(min(max_s, base_s * 2.0**attempts) * rng)
