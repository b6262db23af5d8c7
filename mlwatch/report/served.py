"""The served-model part of a report, from the embedded store: the stored KPI and drift
results of each window in the period, traffic per time bucket, the versions served and
the retrain triggers. Nothing is recomputed: the figures are those the scheduler stored
(and showed as gauges), so the report agrees with Grafana and ``mlwatch status``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from mlwatch.report.drift import drift_section
from mlwatch.report.model import DriftSection, ServedSection
from mlwatch.report.profiles import profile_columns
from mlwatch.store.outbox import trigger_view
from mlwatch.times import format_us

MAX_TRIGGERS = 200
TARGET_BUCKETS = 96  # traffic plots: about this many bars over the period


class _Store(Protocol):
    def results_in(
        self, model: str, kind: str, *, since_us: int | None = ..., until_us: int | None = ...
    ) -> list[dict[str, Any]]: ...
    def traffic(
        self,
        model: str,
        bucket_us: int,
        *,
        since_us: int | None = ...,
        until_us: int | None = ...,
        environment: str | None = ...,
    ) -> list[dict[str, Any]]: ...
    def registrations(self, model: str) -> list[dict[str, Any]]: ...
    def triggers(
        self,
        model: str,
        *,
        limit: int = ...,
        since_us: int | None = ...,
        until_us: int | None = ...,
    ) -> list[dict[str, Any]]: ...
    def has_triggers(self) -> bool: ...


def served_section(
    store: _Store,
    model: str,
    *,
    since_us: int,
    until_us: int,
    bucket_s: int | None = None,
    kpi_thresholds: Mapping[str, list[dict[str, Any]]] | None = None,
    environment: str | None = None,
) -> ServedSection:
    """What ``model`` did in ``[since_us, until_us)``; ``bucket_s`` the traffic bucket
    (default: the period in about :data:`TARGET_BUCKETS` buckets, at least a minute). With
    ``environment``, the traffic is that environment's; the stored KPI and drift results
    are the scheduler's, which computes over its own environment."""
    bucket_s = bucket_s or auto_bucket_s(until_us - since_us)
    window = {"since_us": since_us, "until_us": until_us}
    traffic = store.traffic(model, bucket_s * 1_000_000, **window, environment=environment)
    for row in traffic:
        row["start"] = format_us(row["start_us"])
    kpis = [_kpi_row(r) for r in store.results_in(model, "kpi", **window)]
    drift = [_drift_row(r) for r in store.results_in(model, "drift", **window)]
    triggers = []
    if store.has_triggers():
        triggers = [trigger_view(t) for t in store.triggers(model, limit=MAX_TRIGGERS, **window)]
    return ServedSection(
        model=model,
        since=format_us(since_us),
        until=format_us(until_us),
        kpis=kpis,
        kpi_thresholds=dict(kpi_thresholds or {}),
        traffic=traffic,
        bucket_s=bucket_s,
        drift_windows=drift,
        versions=_versions(store.registrations(model), traffic),
        triggers=list(reversed(triggers)),  # oldest first, as every other list here
    )


def latest_drift(
    store: _Store,
    model: str,
    *,
    since_us: int,
    until_us: int,
    profiles: Callable[[Mapping[str, Any]], Any] | None = None,
) -> DriftSection | None:
    """The drift of the newest window in the period (of the version with the most rows
    there), as a report section; with its distributions when ``profiles`` gives the
    reference and window profiles of that result row (``(reference, window)`` or None)."""
    rows = store.results_in(model, "drift", since_us=since_us, until_us=until_us)
    if not rows:
        return None
    newest = max(r["start_us"] for r in rows)
    row = max(
        (r for r in rows if r["start_us"] == newest),
        key=lambda r: (r["body"].get("rows", 0), r["version"]),
    )
    window = [format_us(row["start_us"]), format_us(row["end_us"])]
    pair = profiles(row) if profiles is not None else None
    ref, cur = (profile_columns(pair[0]), profile_columns(pair[1])) if pair else (None, None)
    return drift_section(row["body"], ref, cur, window=window, version=row["version"], sampled=True)


def auto_bucket_s(span_us: int) -> int:
    """A round bucket width (1, 5, 15 min, 1, 6 h, 1 d) giving at most about
    :data:`TARGET_BUCKETS` buckets over ``span_us``."""
    for width in (60, 300, 900, 3600, 6 * 3600, 86400):
        if span_us / (width * 1_000_000) <= TARGET_BUCKETS:
            return width
    return 86400


def _kpi_row(r: Mapping[str, Any]) -> dict[str, Any]:
    body = r["body"]
    return {
        "start_us": r["start_us"],
        "start": format_us(r["start_us"]),
        "end": format_us(r["end_us"]),
        "version": r["version"],
        "n_rows": body.get("n_rows", 0),
        "n_used": body.get("n_used", 0),
        "reason": body.get("reason"),
        "kpis": {
            name: {k: kpi.get(k) for k in ("value", "lower", "upper", "n", "reason")}
            for name, kpi in body.get("kpis", {}).items()
        },
    }


def _drift_row(r: Mapping[str, Any]) -> dict[str, Any]:
    body = r["body"]
    return {
        "start_us": r["start_us"],
        "start": format_us(r["start_us"]),
        "version": r["version"],
        "drift_share": body.get("drift_share"),
        "dataset_drift": body.get("dataset_drift"),
        "threshold": body.get("drift_share_threshold"),
        "drifted": [f["name"] for f in body.get("features", []) if f.get("drifted")],
    }


def _versions(
    registrations: Sequence[Mapping[str, Any]], traffic: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Each version served in the period (events, errors) with its registration, if any."""
    served: dict[str, dict[str, int]] = {}
    for row in traffic:
        v = served.setdefault(row["version"], {"events": 0, "errors": 0})
        v["events"] += row["count"]
        v["errors"] += row["errors"]
    regs: dict[str, Mapping[str, Any]] = {}
    for r in registrations:  # newest registration of each version first
        regs.setdefault(r["version"], r)
    out = []
    for version in sorted(served):
        reg = regs.get(version, {})
        out.append(
            {
                "version": version,
                **served[version],
                "code_version": reg.get("code_version") or None,
                "run_id": reg.get("run_id") or None,
                "first_seen": format_us(reg["first_seen_us"]) if reg else None,
                "last_seen": format_us(reg["last_seen_us"]) if reg else None,
            }
        )
    return out
