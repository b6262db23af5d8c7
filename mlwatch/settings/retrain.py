"""A model spec's ``retrain`` section: what starts retraining, how often at most, and
which target (``targets``) it goes to.

::

    retrain:
      target: github            # a name from the top-level targets list
      on:
        - {alert: MlwatchDatasetDrift}          # from Alertmanager (POST /v1/alerts/alertmanager)
        - {drift_share: 0.3}                    # the scheduler's own results: no Prometheus needed
        - {features: [tenure_months, plan]}
        - {kpi: accuracy, below: 0.8, windows: 3, min_samples: 200}
      cooldown: 6h              # no second trigger for one cause before, unless it cleared
      max_per_day: 3
      dry_run: false            # record the trigger, never send it
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlwatch.errors import ConfigError, did_you_mean
from mlwatch.settings.durations import parse_duration

RETRAIN_KEYS = frozenset({"target", "on", "cooldown", "max_per_day", "dry_run"})
CONDITION_KEYS = {
    "alert": frozenset({"alert"}),
    "drift_share": frozenset({"drift_share"}),
    "features": frozenset({"features"}),
    "kpi": frozenset({"kpi", "below", "above", "windows", "min_samples"}),
}


@dataclass(frozen=True)
class Condition:
    """One thing that starts retraining. ``cause`` names it: what the cooldown, the
    hysteresis and the storm guard compare (``alert:MlwatchDatasetDrift``, ``kpi:accuracy``)."""

    kind: str  # alert, drift_share, features or kpi
    alert: str | None = None
    drift_share: float | None = None
    features: tuple[str, ...] = ()
    kpi: str | None = None
    below: float | None = None
    above: float | None = None
    windows: int = 1
    min_samples: int = 100

    @property
    def cause(self) -> str:
        return {
            "alert": f"alert:{self.alert}",
            "drift_share": "drift_share",
            "features": "features",
            "kpi": f"kpi:{self.kpi}",
        }[self.kind]


@dataclass(frozen=True)
class RetrainSpec:
    """One model's retraining policy."""

    target: str
    on: tuple[Condition, ...] = ()
    cooldown_s: float = 6 * 3600.0
    max_per_day: int = 3
    dry_run: bool = False

    def condition(self, cause: str) -> Condition | None:
        return next((c for c in self.on if c.cause == cause), None)


def parse_retrain(raw: Any, at: str, source: str) -> RetrainSpec:
    """``models[i].retrain``; every error names the key."""
    if not isinstance(raw, dict):
        raise ConfigError(at, "expected a mapping with at least 'target'", source=source)
    _known(raw, RETRAIN_KEYS, at, source)
    target = raw.get("target")
    if not isinstance(target, str) or not target:
        raise ConfigError(f"{at}.target", "expected the name of a target", source=source)
    on = raw.get("on", [])
    if not isinstance(on, list):
        raise ConfigError(f"{at}.on", "expected a list of conditions", source=source)
    max_per_day = raw.get("max_per_day", 3)
    if type(max_per_day) is not int or max_per_day < 1:
        raise ConfigError(f"{at}.max_per_day", "expected a positive integer", source=source)
    dry_run = raw.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise ConfigError(f"{at}.dry_run", "expected true or false", source=source)
    conditions = tuple(_condition(c, f"{at}.on[{i}]", source) for i, c in enumerate(on))
    causes = [c.cause for c in conditions]
    if dup := next((c for c in causes if causes.count(c) > 1), None):
        raise ConfigError(f"{at}.on", f"{dup!r} is listed twice", source=source)
    return RetrainSpec(
        target=target,
        on=conditions,
        cooldown_s=parse_duration(raw.get("cooldown", "6h"), f"{at}.cooldown", source),
        max_per_day=max_per_day,
        dry_run=dry_run,
    )


def _known(raw: dict[str, Any], keys: frozenset[str], at: str, source: str) -> None:
    if unknown := set(raw) - keys:
        key = str(sorted(unknown, key=str)[0])
        raise ConfigError(f"{at}.{key}", f"unknown key{did_you_mean(key, keys)}", source=source)


def _condition(raw: Any, at: str, source: str) -> Condition:
    kind = next((k for k in CONDITION_KEYS if isinstance(raw, dict) and k in raw), None)
    if kind is None:
        raise ConfigError(
            at, "expected one of {alert}, {drift_share}, {features} or {kpi}", source=source
        )
    _known(raw, CONDITION_KEYS[kind], at, source)
    if kind == "alert":
        if not isinstance(raw["alert"], str) or not raw["alert"]:
            raise ConfigError(f"{at}.alert", "expected an alert name", source=source)
        return Condition("alert", alert=raw["alert"])
    if kind == "drift_share":
        return Condition("drift_share", drift_share=_fraction(raw["drift_share"], at, source))
    if kind == "features":
        names = raw["features"]
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise ConfigError(f"{at}.features", "expected a list of feature names", source=source)
        return Condition("features", features=tuple(names))
    return _kpi_condition(raw, at, source)


def _fraction(value: Any, at: str, source: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise ConfigError(f"{at}.drift_share", "expected a share in (0, 1]", source=source)
    return float(value)


def _kpi_condition(raw: dict[str, Any], at: str, source: str) -> Condition:
    kpi = raw["kpi"]  # its name is checked against the KPIs where they are known (alerting)
    if not isinstance(kpi, str) or not kpi:
        raise ConfigError(f"{at}.kpi", "expected a KPI name such as accuracy", source=source)
    bounds = {k: raw[k] for k in ("below", "above") if k in raw}
    if len(bounds) != 1 or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in bounds.values()
    ):
        raise ConfigError(at, "expected exactly one number, below or above", source=source)
    for key in ("windows", "min_samples"):
        if key in raw and (type(raw[key]) is not int or raw[key] < 1):
            raise ConfigError(f"{at}.{key}", "expected a positive integer", source=source)
    return Condition(
        "kpi",
        kpi=kpi,
        below=float(bounds["below"]) if "below" in bounds else None,
        above=float(bounds["above"]) if "above" in bounds else None,
        windows=raw.get("windows", 1),
        min_samples=raw.get("min_samples", 100),
    )
