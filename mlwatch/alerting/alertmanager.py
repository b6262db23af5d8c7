"""Alertmanager's webhook (payload version 4) into retraining: each alert is mapped to a
model by its ``model`` label and to a policy by its ``alertname``; a firing alert that
the model's ``retrain.on`` names requests a trigger, a resolved one clears its cause.
Alerts whose ``environment`` label names another environment than the sidecar's are
ignored.
Grafana's webhook contact point sends the same payload as version 1: there a rule's name
is its label ``mlwatch_alert`` (Grafana makes ``alertname`` the rule's title), and
Grafana's own ``DatasourceError`` / ``DatasourceNoData`` alerts, which carry the labels of
the rule that could not be evaluated, are ignored: they say nothing about the model.

The payload is checked field by field (an error names the field: ``alerts[2].labels``);
fields Alertmanager may add later are ignored, so an upgrade does not break the receiver.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

from mlwatch.errors import IngestError

ALERTMANAGER, GRAFANA = "4", "1"  # the webhook payload versions
VERSIONS = (ALERTMANAGER, GRAFANA)
GRAFANA_STATE_ALERTS = frozenset({"DatasourceError", "DatasourceNoData"})
MAX_ALERTS = 10_000  # per notification (Alertmanager sends all of a group unless max_alerts)
_ROOT: dict[str, type] = {"version": str, "status": str, "receiver": str, "alerts": list}
_ROOT_OPTIONAL: dict[str, type | tuple[type, ...]] = {
    "groupKey": str,
    "truncatedAlerts": (int, float),  # 3.0 is JSON's integer 3
    "groupLabels": dict,
    "commonLabels": dict,
    "commonAnnotations": dict,
    "externalURL": str,
}
_ALERT: dict[str, type] = {"status": str, "labels": dict}
_OPTIONAL: dict[str, type] = {
    "annotations": dict,
    "startsAt": str,
    "endsAt": str,
    "generatorURL": str,
    "fingerprint": str,
}


@dataclass(frozen=True)
class Notice:
    """One alert of a notification."""

    status: str  # firing or resolved
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: str
    fingerprint: str
    generator_url: str
    name: str = ""  # the alert rule's name: alertname, or Grafana's mlwatch_alert

    @property
    def model(self) -> str | None:
        return self.labels.get("model")

    @property
    def instance(self) -> str:
        """Which alert of its name this is (one per feature, per KPI, per window pair):
        Alertmanager's fingerprint of the labels, else the labels themselves."""
        return self.fingerprint or json.dumps(self.labels, sort_keys=True)


class Policies(Protocol):
    """What the receiver needs of the retrainer."""

    def wants(self, model: str, cause: str) -> bool: ...

    def request(
        self,
        model: str,
        cause: str,
        reason: str,
        evidence: dict[str, Any],
        *,
        version: str | None,
        instance: str,
    ) -> dict[str, Any]: ...

    def clear(self, model: str, cause: str, *, instance: str | None = None) -> None: ...


def _typed(
    obj: dict[str, Any],
    fields: dict[str, type] | dict[str, type | tuple[type, ...]],
    where: str,
    *,
    required: bool,
) -> None:
    for key, kind in fields.items():
        if key not in obj:
            if required:
                raise IngestError(
                    422, f"{where}{key}: required (an Alertmanager or Grafana webhook notification)"
                )
            continue
        if not isinstance(obj[key], kind):
            what = {dict: "an object", list: "a list", str: "a string"}.get(kind, "a number")  # type: ignore[call-overload]
            raise IngestError(422, f"{where}{key}: expected {what}")


def _strings(obj: dict[str, Any], where: str) -> dict[str, str]:
    for key, value in obj.items():
        if not isinstance(value, str):
            raise IngestError(422, f"{where}.{key}: expected a string")
    return obj


def parse(payload: Any) -> list[Notice]:
    """The alerts of a webhook notification; IngestError (422) naming the first bad field."""
    if not isinstance(payload, dict):
        raise IngestError(422, "body: expected an Alertmanager webhook notification (an object)")
    _typed(payload, _ROOT, "", required=True)
    _typed(payload, _ROOT_OPTIONAL, "", required=False)
    for key in ("groupLabels", "commonLabels", "commonAnnotations"):
        _strings(payload.get(key, {}), key)
    truncated = payload.get("truncatedAlerts", 0)
    if isinstance(truncated, bool) or truncated < 0 or truncated != int(truncated):
        raise IngestError(422, "truncatedAlerts: expected a count")
    if payload["status"] not in ("firing", "resolved"):
        raise IngestError(422, "status: expected firing or resolved")
    if payload["version"] not in VERSIONS:
        got = payload["version"][:20]
        raise IngestError(
            422, f'version: expected "4" (Alertmanager) or "1" (Grafana), got {got!r}'
        )
    alerts = payload["alerts"]
    if len(alerts) > MAX_ALERTS:
        raise IngestError(413, f"alerts: {len(alerts)} alerts, at most {MAX_ALERTS}")
    out = []
    for i, alert in enumerate(alerts):
        where = f"alerts[{i}]."
        if not isinstance(alert, dict):
            raise IngestError(422, f"alerts[{i}]: expected an object")
        _typed(alert, _ALERT, where, required=True)
        _typed(alert, _OPTIONAL, where, required=False)
        if alert["status"] not in ("firing", "resolved"):
            raise IngestError(422, f"{where}status: expected firing or resolved")
        labels = _strings(alert["labels"], f"{where}labels")
        if payload["version"] == GRAFANA and labels.get("alertname") in GRAFANA_STATE_ALERTS:
            continue
        name = labels.get("alertname", "")
        if payload["version"] == GRAFANA:
            name = labels.get("mlwatch_alert") or name
        out.append(
            Notice(
                name=name,
                status=alert["status"],
                labels=labels,
                annotations=_strings(alert.get("annotations", {}), f"{where}annotations"),
                starts_at=alert.get("startsAt", ""),
                fingerprint=alert.get("fingerprint", ""),
                generator_url=alert.get("generatorURL", ""),
            )
        )
    return out


def receive(
    notices: list[Notice], policies: Policies, *, environment: str | None = None
) -> dict[str, int]:
    """Act on a notification: what was triggered, suppressed (cooldown, daily bound),
    resolved, and ignored (no model label, an alert no policy names, or one of another
    ``environment`` than the receiver's: an Alertmanager shared by dev and prod must not
    retrain prod's model on dev's drift; an alert without the label is the receiver's)."""
    counts = {"triggered": 0, "suppressed": 0, "resolved": 0, "ignored": 0}
    for notice in notices:
        model, cause = notice.model, f"alert:{notice.name}"
        elsewhere = notice.labels.get("environment", environment) != environment
        if not model or elsewhere or not policies.wants(model, cause):
            counts["ignored"] += 1
        elif notice.status == "resolved":  # this instance only: others may still fire
            policies.clear(model, cause, instance=notice.instance)
            counts["resolved"] += 1
        else:
            reason = notice.annotations.get("summary") or f"alert {notice.name} is firing"
            evidence = {
                "alert": notice.name,
                "labels": notice.labels,
                "annotations": notice.annotations,
                "starts_at": notice.starts_at,
                "fingerprint": notice.fingerprint,
                "generator_url": notice.generator_url,
            }
            done = policies.request(
                model,
                cause,
                reason,
                evidence,
                version=notice.labels.get("version"),
                instance=notice.instance,
            )
            counts["suppressed" if "suppressed" in done else "triggered"] += 1
    return counts
