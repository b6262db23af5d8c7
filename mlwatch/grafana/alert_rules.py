"""Grafana-managed alert rules from the same rule objects as the Prometheus rules.

:func:`mlwatch.alerting.build.build_groups` makes the rules once; this module turns each
alerting rule (recording rules stay in Prometheus, where the alerts' burn-rate series
come from) into a Grafana rule: query ``A`` is the rule's PromQL, ``B`` its last value,
``C`` the condition "A returned this series", so a Grafana rule fires exactly when the
Prometheus rule does, for the same ``for``, with the same labels and annotations.

Grafana sets the label ``alertname`` to the rule's title and wants titles unique in a
folder; two rules of one name (a burn rate's page and ticket) get the severity in their
title, and every rule carries ``mlwatch_alert`` with the name the sidecar's retraining
policies know. See docs/grafana.md.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from mlwatch.alerting.build import build_groups
from mlwatch.alerting.routing import RECEIVER_PATH, sidecar_url
from mlwatch.alerting.rules import Options as AlertOptions
from mlwatch.alerting.rules import Rule, duration
from mlwatch.grafana.common import PROMETHEUS_UID, Options
from mlwatch.settings import Config

#: The label that names the rule as Prometheus names it (``alertname`` is the title).
ALERT_LABEL = "mlwatch_alert"
CONTACT_POINT = "mlwatch sidecar"
CONTACT_UID = "mlwatch-sidecar"
#: Where every alert goes: Grafana's default contact point, until a team names its own.
PEOPLE = "grafana-default-email"
#: The environment variable Grafana reads the sidecar's bearer token from.
TOKEN_VARIABLE = "MLWATCH_TOKEN"
EVALUATE_EVERY = "1m"
LOOKBACK_S = 600  # the range Grafana asks Prometheus about; an instant query uses its end
_UID_MAX = 40
_VALUE = re.compile(r"\$value\b(?!s)")


@dataclass(frozen=True)
class RuleGroup:
    """The rules of one Prometheus rule group, in the folder Grafana keeps them in."""

    name: str
    folder_uid: str
    folder_title: str
    rules: tuple[dict[str, Any], ...]


def alert_options(options: Options) -> AlertOptions:
    """The alert rules' options from the dashboards' (the same job and runbooks)."""
    return AlertOptions(job=options.job, runbook_url=options.runbook_url, source=options.source)


def rule_groups(config: Config, options: Options) -> list[RuleGroup]:
    """Every alerting rule of ``config`` as Grafana rules, a model's in its folder
    (``mlwatch-<model>``, as its dashboards), mlwatch's own in ``mlwatch``."""
    from mlwatch.grafana.sync_dashboards import SHARED, Folder

    models = {f"mlwatch-model-{spec.name}": spec.name for spec in config.models}
    out = []
    for group in build_groups(config, alert_options(options)):
        model = models.get(group.name)
        folder = Folder.named(model) if model else SHARED
        alerts = [rule for rule in group.rules if rule.alert]
        rules = tuple(
            grafana_rule(rule, group.name, folder.uid, title)
            for rule, title in zip(alerts, titles(alerts), strict=True)
        )
        out.append(RuleGroup(group.name, folder.uid, folder.title, rules))
    return out


def titles(rules: list[Rule]) -> list[str]:
    """Each rule's name, and where a group has several of one name, the values of the
    labels they differ in (``MlwatchKPIBelowThreshold (accuracy)``), then a count."""
    by_name: dict[str, list[Rule]] = {}
    for rule in rules:
        by_name.setdefault(str(rule.alert), []).append(rule)
    out = []
    for rule in rules:
        name = str(rule.alert)
        same = by_name[name]
        keys = sorted({k for r in same for k in r.labels if r.labels.get(k) != rule.labels.get(k)})
        parts = [rule.labels[k] for k in keys if k in rule.labels]
        out.append(f"{name} ({', '.join(parts)})" if len(same) > 1 and parts else name)
    total, seen = Counter(out), Counter[str]()
    for i, title in enumerate(out):
        seen[title] += 1
        if total[title] > 1:
            out[i] = f"{title} ({seen[title]})"
    return out


def grafana_rule(rule: Rule, group: str, folder_uid: str, title: str) -> dict[str, Any]:
    """One rule as the alerting provisioning API takes it."""
    name = str(rule.alert)
    return {
        "uid": rule_uid(group, title),
        "title": title,
        "ruleGroup": group,
        "folderUID": folder_uid,
        "orgID": 1,
        "condition": "C",
        "data": queries(rule.expr),
        "noDataState": "OK",  # no series: nothing fires, as in Prometheus
        "execErrState": "Error",
        "for": duration(rule.for_s),
        "labels": {**rule.labels, ALERT_LABEL: name},
        "annotations": {k: _VALUE.sub("$values.B.Value", v) for k, v in rule.annotations.items()},
        "isPaused": False,
    }


def queries(expr: str) -> list[dict[str, Any]]:
    """``A`` the PromQL, ``B`` its last value (a value Prometheus would show as NaN
    counts as 1), ``C`` true for every series ``A`` returned: Prometheus fires on every
    series an alert expression returns, whatever its value."""
    expression = {"datasourceUid": "__expr__", "relativeTimeRange": {"from": 0, "to": 0}}
    return [
        {
            "refId": "A",
            "datasourceUid": PROMETHEUS_UID,
            "relativeTimeRange": {"from": LOOKBACK_S, "to": 0},
            "model": {"refId": "A", "expr": expr, "instant": True, "range": False},
        },
        {
            **expression,
            "refId": "B",
            "model": {
                "refId": "B",
                "type": "reduce",
                "expression": "A",
                "reducer": "last",
                "settings": {"mode": "replaceNN", "replaceWithValue": 1},
            },
        },
        {
            **expression,
            "refId": "C",
            "model": {"refId": "C", "type": "math", "expression": "$B == $B"},
        },
    ]


def rule_uid(group: str, title: str) -> str:
    """A uid that stays the same for the same rule of the same group, whatever rules are
    added or removed around it (Grafana takes 40 characters of ``[A-Za-z0-9_-]``).

    >>> rule_uid("mlwatch-model-churn", "MlwatchNoTraffic")
    'mlwatch-model-churn-01f822693035'
    """
    digest = hashlib.sha256(f"{group}\0{title}".encode()).hexdigest()[:12]
    base = re.sub(r"[^A-Za-z0-9_-]+", "-", group).strip("-")[: _UID_MAX - len(digest) - 1]
    return f"{base}-{digest}"


def all_rules(config: Config, options: Options) -> list[dict[str, Any]]:
    """Every Grafana rule of ``config``, for the provisioning API."""
    return [rule for group in rule_groups(config, options) for rule in group.rules]


def contact_point(config: Config) -> dict[str, Any]:
    """The sidecar's alert receiver as a webhook contact point; the token is the one
    Grafana's environment holds (``$MLWATCH_TOKEN``), never written in the file."""
    return {
        "orgId": 1,
        "name": CONTACT_POINT,
        "receivers": [
            {
                "uid": CONTACT_UID,
                "type": "webhook",
                "disableResolveMessage": False,  # the sidecar's hysteresis needs resolved
                "settings": {
                    "url": sidecar_url(config) + RECEIVER_PATH,
                    "httpMethod": "POST",
                    "authorization_scheme": "Bearer",
                    "authorization_credentials": f"${{{TOKEN_VARIABLE}}}",
                },
            }
        ],
    }


def notification_policy() -> dict[str, Any]:
    """The Alertmanager routing again: retrain alerts to the sidecar and on to people,
    every alert to people (Grafana's default contact point, a placeholder as ``on-call``
    is in alerts/alertmanager.yml). A file-provisioned policy tree replaces the
    organisation's: a team changes the placeholder to its own contact point here."""
    group_by = ["alertname", "model", "version"]
    timing = {"group_wait": "30s", "group_interval": "5m"}
    return {
        "orgId": 1,
        "receiver": PEOPLE,
        "group_by": group_by,
        **timing,
        "repeat_interval": "4h",
        "routes": [
            {
                "receiver": CONTACT_POINT,
                "object_matchers": [["retrain", "=", "true"]],
                "group_by": group_by,
                **timing,
                "repeat_interval": "1h",
                "continue": True,  # and to people: they see what retraining is for
            },
            {"receiver": PEOPLE},
        ],
    }
