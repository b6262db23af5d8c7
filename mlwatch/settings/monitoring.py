"""The monitoring keys of a model spec: reference, schedule, window, settle, sliding,
drift and kpi options, checked into a :class:`~mlwatch.settings.specs.Monitoring`.

>>> parse_duration("5m", "schedule")
300.0
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from mlwatch.errors import ConfigError, TrackingError, ValidationError, did_you_mean
from mlwatch.settings.compare import parse_compare
from mlwatch.settings.durations import parse_duration
from mlwatch.settings.specs import Monitoring
from mlwatch.times import datetime_us, format_us, parse_ts
from mlwatch.tracking.uris import parse_model_uri

DRIFT_KEYS = frozenset({"method", "alpha", "correction", "min_effect", "drift_share"})
KPI_KEYS = frozenset({"min_samples", "lookback"})
MONITORING_KEYS = (
    "reference",
    "schedule",
    "window",
    "sliding",
    "settle",
    "drift",
    "kpi",
    "compare",
)


def _rfc3339(raw: Any, at: str, source: str) -> str:
    """A time from the config as RFC 3339 UTC: YAML reads an unquoted timestamp as a
    datetime, which is accepted too (a naive one is UTC)."""
    if isinstance(raw, datetime):
        return format_us(datetime_us(raw))
    try:
        return parse_ts(raw, line=None)[0]
    except ValidationError:
        raise ConfigError(
            at, f"expected an RFC 3339 time like 2026-11-01T00:00:00Z, got {raw!r}", source=source
        ) from None


def _reference(item: dict[str, Any], at: str, source: str) -> dict[str, Any]:
    ref = item.get("reference")
    if isinstance(ref, str) and ref:
        return {"reference": ref}
    if isinstance(ref, dict) and set(ref) == {"since", "until"}:
        return {
            "reference_window": (
                _rfc3339(ref["since"], f"{at}.reference.since", source),
                _rfc3339(ref["until"], f"{at}.reference.until", source),
            )
        }
    if isinstance(ref, dict) and set(ref) == {"mlflow", "artifact"}:
        return {"reference_mlflow": _mlflow_reference(ref, f"{at}.reference", source)}
    raise ConfigError(
        f"{at}.reference",
        "a monitored model needs a reference: a CSV/Parquet path, "
        "{since: <RFC 3339>, until: <RFC 3339>} or {mlflow: <model URI>, artifact: <path>}",
        source=source,
    )


def _mlflow_reference(ref: dict[str, Any], at: str, source: str) -> tuple[str, str]:
    """(model URI, artifact path): a CSV or Parquet file logged with the model's run."""
    uri, artifact = ref["mlflow"], ref["artifact"]
    try:
        parse_model_uri(uri)
    except TrackingError as exc:
        raise ConfigError(f"{at}.mlflow", str(exc), source=source) from None
    if not isinstance(artifact, str) or not artifact.strip("/") or ".." in artifact.split("/"):
        raise ConfigError(
            f"{at}.artifact",
            f"expected the path of a CSV or Parquet artifact of the run, got {artifact!r}",
            source=source,
        )
    return str(uri), artifact.strip("/")


def _timing(item: dict[str, Any], at: str, source: str) -> dict[str, Any]:
    """``schedule`` (an interval or ``{cron: ...}``), ``window``, ``settle``, ``sliding``."""
    values: dict[str, Any] = {}
    schedule = item.get("schedule", "5m")
    if (
        isinstance(schedule, dict)
        and set(schedule) == {"cron"}
        and isinstance(schedule["cron"], str)
    ):
        if len(schedule["cron"].split()) != 5:
            raise ConfigError(
                f"{at}.schedule.cron",
                f"expected five crontab fields, got {schedule['cron']!r}",
                source=source,
            )
        values["cron"], values["every_s"] = schedule["cron"], None
    else:
        values["every_s"] = parse_duration(schedule, f"{at}.schedule", source)
    if "window" in item:
        values["window_s"] = parse_duration(item["window"], f"{at}.window", source)
    if "settle" in item:
        values["settle_s"] = (
            0.0
            if item["settle"] in (0, "0", "0s")
            else parse_duration(item["settle"], f"{at}.settle", source)
        )
    if "sliding" in item:
        if not isinstance(item["sliding"], bool):
            raise ConfigError(f"{at}.sliding", "expected true or false", source=source)
        values["sliding"] = item["sliding"]
    return values


def _section(
    item: dict[str, Any], key: str, allowed: frozenset[str], at: str, source: str
) -> dict[str, Any]:
    sub = item.get(key) or {}
    if not isinstance(sub, dict):
        raise ConfigError(at, "drift and kpi must be mappings", source=source)
    if unknown := set(sub) - allowed:
        name = sorted(unknown)[0]
        hint = did_you_mean(str(name), allowed)
        raise ConfigError(f"{at}.{key}.{name}", f"unknown key{hint}", source=source)
    return sub


def _drift(item: dict[str, Any], at: str, source: str) -> dict[str, Any]:
    drift = _section(item, "drift", DRIFT_KEYS, at, source)
    values: dict[str, Any] = {}
    if drift.get("method") is not None:
        values["method"] = str(drift["method"])
    if drift.get("correction") not in (None, "bonferroni", "bh"):
        raise ConfigError(f"{at}.drift.correction", "must be bonferroni or bh", source=source)
    values["correction"] = drift.get("correction")
    for key, lo, hi in (("alpha", 0.0, 1.0), ("drift_share", 0.0, 1.0), ("min_effect", 0.0, None)):
        if drift.get(key) is None:
            continue
        value = drift[key]
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not (lo < value and (hi is None or value <= hi))
        ):
            raise ConfigError(
                f"{at}.drift.{key}",
                f"expected a number in ({lo}, {hi or 'inf'}], got {value!r}",
                source=source,
            )
        values[key] = float(value)
    return values


def _kpi(item: dict[str, Any], at: str, source: str) -> dict[str, Any]:
    kpi = _section(item, "kpi", KPI_KEYS, at, source)
    values: dict[str, Any] = {}
    for key, field_name in (("min_samples", "kpi_min_samples"), ("lookback", "kpi_lookback")):
        if key in kpi:
            if isinstance(kpi[key], bool) or not isinstance(kpi[key], int) or kpi[key] < 1:
                raise ConfigError(
                    f"{at}.kpi.{key}",
                    f"expected a positive integer, got {kpi[key]!r}",
                    source=source,
                )
            values[field_name] = kpi[key]
    return values


def parse_monitoring(item: dict[str, Any], at: str, source: str) -> Monitoring:
    """The monitoring of the model spec ``item`` (at ``models[i]``); the keys are checked
    in the order an error names the first problem: reference, timing, the drift and kpi
    sections' keys, then their values."""
    values = {**_reference(item, at, source), **_timing(item, at, source)}
    _section(item, "drift", DRIFT_KEYS, at, source)
    _section(item, "kpi", KPI_KEYS, at, source)
    if item.get("compare") not in (None, False):
        raw = item["compare"]
        since = raw.get("since") if isinstance(raw, dict) else None
        since = None if since is None else _rfc3339(since, f"{at}.compare.since", source)
        values["compare"] = parse_compare(raw, f"{at}.compare", source, since)
    return Monitoring(**values, **_drift(item, at, source), **_kpi(item, at, source))
