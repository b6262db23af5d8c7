"""Grafana-managed alert rules from the same rule objects as the Prometheus rules.

:func:`mlwatch.alerting.build.build_groups` makes the rules once; this module turns each
alerting rule (recording rules stay in Prometheus, where the alerts' burn-rate series
come from) into a Grafana rule: query ``A`` is the rule's PromQL, ``B`` its value, ``C``
the condition "A returned this series", so a Grafana rule fires on what the Prometheus
rule fires on, for the same ``for``, with the same labels and annotations.

Grafana sets the label ``alertname`` to the rule's title and wants titles unique in a
folder; titles carry the KPI and the severity (a burn rate's page and ticket), and every
rule carries ``mlwatch_alert`` with the name the sidecar's retraining policies know. The
contact point and the notification policy are the Alertmanager routing of
:mod:`mlwatch.alerting.routing` again. See docs/grafana.md.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from mlwatch.alerting.build import build_groups
from mlwatch.alerting.routing import (
    DEFAULT_RECEIVER,
    RECEIVER_PATH,
    RETRAIN_RECEIVER,
    alertmanager_config,
    sidecar_url,
)
from mlwatch.alerting.rules import Options as AlertOptions
from mlwatch.alerting.rules import Rule, duration
from mlwatch.grafana.common import PROMETHEUS_UID, SHARED, Options, model_folders
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
_VALUE = re.compile(r"\$value\b")
_EQUALS = re.compile(r'(\w+)="([^"]*)"')
#: The labels a title shows: they tell apart the rules of one name (per KPI, page/ticket).
TITLE_LABELS = ("kpi", "severity")
#: Condition C: every series of A, whatever its value.
FIRES = "is_number($B) || is_nan($B) || is_inf($B)"


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
    folders = model_folders([spec.name for spec in config.models])
    models = {f"mlwatch-model-{spec.name}": spec.name for spec in config.models}
    out = []
    for group in build_groups(config, alert_options(options)):
        model = models.get(group.name)
        folder = folders[model] if model else SHARED
        alerts = [rule for rule in group.rules if rule.alert]
        rules = tuple(
            grafana_rule(rule, group.name, folder.uid, title, uid)
            for rule, (title, uid) in zip(alerts, names(group.name, alerts), strict=True)
        )
        out.append(RuleGroup(group.name, folder.uid, folder.title, rules))
    return out


def names(group: str, rules: list[Rule]) -> list[tuple[str, str]]:
    """(title, uid) of each rule. The title is the name with the KPI and the severity
    (``MlwatchKPIBelowThreshold (accuracy, ticket)``), which tell most rules of one name
    apart; the uid a hash of the group, the name and the labels. Neither depends on the
    other rules, so adding or removing one leaves the rest alone; rules equal in both get
    a count, in the order the group has them."""
    out = []
    seen: Counter[str] = Counter()
    for rule in rules:
        parts = [rule.labels[k] for k in TITLE_LABELS if k in rule.labels]
        title = f"{rule.alert} ({', '.join(parts)})" if parts else str(rule.alert)
        identity = json.dumps([group, rule.alert, sorted(rule.labels.items())])
        seen[identity] += 1
        if seen[identity] > 1:
            title, identity = f"{title} #{seen[identity]}", f"{identity}#{seen[identity]}"
        out.append((title, rule_uid(group, identity)))
    return out


def grafana_rule(rule: Rule, group: str, folder_uid: str, title: str, uid: str) -> dict[str, Any]:
    """One rule as the alerting provisioning API takes it."""
    name = str(rule.alert)
    return {
        "uid": uid,
        "title": title,
        "ruleGroup": group,
        "folderUID": folder_uid,
        "orgID": 1,
        "condition": "C",
        "data": queries(rule.expr),
        "noDataState": "OK",  # no series: nothing fires, as in Prometheus
        # a failed evaluation keeps the state, as Prometheus does (no alert on an outage)
        "execErrState": "KeepLast",
        "for": duration(rule.for_s),
        "labels": {**rule.labels, ALERT_LABEL: name},
        "annotations": {k: _VALUE.sub("$values.B.Value", v) for k, v in rule.annotations.items()},
        "isPaused": False,
    }


def queries(expr: str) -> list[dict[str, Any]]:
    """``A`` the PromQL, ``B`` each series' value, ``C`` true for every series ``A``
    returned, NaN and infinities included: Prometheus fires on every series an alert
    expression returns, whatever its value (the ``0`` of "no traffic" too, which a
    threshold ``> 0`` would miss)."""
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
            "model": {"refId": "B", "type": "reduce", "expression": "A", "reducer": "last"},
        },
        {
            **expression,
            "refId": "C",
            "model": {"refId": "C", "type": "math", "expression": FIRES},
        },
    ]


def rule_uid(group: str, identity: str) -> str:
    """The group's name and a hash of what makes the rule itself (Grafana takes 40
    characters of ``[A-Za-z0-9_-]``).

    >>> rule_uid("mlwatch-model-churn", "MlwatchNoTraffic")
    'mlwatch-model-churn-01f822693035'
    """
    digest = hashlib.sha256(f"{group}\0{identity}".encode()).hexdigest()[:12]
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


def notification_policy(config: Config, options: Options) -> dict[str, Any]:
    """The Alertmanager routing (:func:`~mlwatch.alerting.routing.alertmanager_config`)
    as Grafana's policy tree: its retrain route to the sidecar's contact point, the rest
    to Grafana's default contact point (a placeholder, as ``on-call`` is there). A
    file-provisioned tree replaces the organisation's: a team changes the placeholder."""
    route = alertmanager_config(config, alert_options(options))["route"]
    receivers = {RETRAIN_RECEIVER: CONTACT_POINT, DEFAULT_RECEIVER: PEOPLE}

    def policy(node: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in node.items() if k not in ("matchers", "routes", "receiver")}
        out["receiver"] = receivers[node["receiver"]]
        matchers = [_EQUALS.fullmatch(m) for m in node.get("matchers", [])]
        if matchers:
            assert all(matchers), f'only label="value" matchers: {node["matchers"]}'
            out["object_matchers"] = [[m[1], "=", m[2]] for m in matchers if m]
        if node.get("routes"):
            out["routes"] = [policy(child) for child in node["routes"]]
        return out

    return {"orgId": 1, **policy(route)}
