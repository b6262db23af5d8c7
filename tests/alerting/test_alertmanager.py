"""Alertmanager's webhook (payload version 4): checked field by field, each alert mapped
to a model and a policy by its labels; only firing alerts trigger, resolved ones clear."""

from __future__ import annotations

from typing import Any

import pytest

from mlwatch.alerting import alertmanager
from mlwatch.errors import IngestError


def notification(*alerts: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    """As Alertmanager 0.25 sends it (docs: "webhook_config")."""
    body = {
        "version": "4",
        "groupKey": '{}/{retrain="true"}:{alertname="MlwatchDatasetDrift"}',
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "mlwatch-retrain",
        "groupLabels": {"alertname": "MlwatchDatasetDrift"},
        "commonLabels": {"alertname": "MlwatchDatasetDrift"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": list(alerts),
    }
    return body | overrides


def alert(status: str = "firing", **labels: str) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {"alertname": "MlwatchDatasetDrift", "model": "churn", "version": "3"} | labels,
        "annotations": {"summary": "dataset drift share 0.4 on churn 3"},
        "startsAt": "2026-12-05T10:00:00.123456789Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph?g0.expr=...",
        "fingerprint": "c0ffee",
    }


class Policies:
    def __init__(self, wanted: set[tuple[str, str]]) -> None:
        self.wanted = wanted
        self.requests: list[tuple[str, str, str, dict[str, Any], str | None]] = []
        self.cleared: list[tuple[str, str, str | None]] = []
        self.instances: list[str] = []

    def wants(self, model: str, cause: str) -> bool:
        return (model, cause) in self.wanted

    def request(
        self,
        model: str,
        cause: str,
        reason: str,
        evidence: dict[str, Any],
        *,
        version: str | None,
        instance: str,
    ) -> dict[str, Any]:
        self.requests.append((model, cause, reason, evidence, version))
        self.instances.append(instance)
        return {"key": "k"} if len(self.requests) == 1 else {"suppressed": "cooldown"}

    def clear(self, model: str, cause: str, *, instance: str | None = None) -> None:
        self.cleared.append((model, cause, instance))


def test_firing_alerts_request_resolved_ones_clear_others_are_ignored() -> None:
    policies = Policies({("churn", "alert:MlwatchDatasetDrift")})
    notices = alertmanager.parse(
        notification(
            alert(),
            alert(),  # the same cause again: the policy decides (here: suppressed)
            alert("resolved"),
            alert(alertname="MlwatchHighLatency"),  # no policy names it
            alert(model="other"),
            {"status": "firing", "labels": {"alertname": "MlwatchSidecarDown"}},  # no model
        )
    )
    counts = alertmanager.receive(notices, policies)
    assert counts == {"triggered": 1, "suppressed": 1, "resolved": 1, "ignored": 3}
    model, cause, reason, evidence, version = policies.requests[0]
    assert (model, cause, version) == ("churn", "alert:MlwatchDatasetDrift", "3")
    assert reason == "dataset drift share 0.4 on churn 3"
    assert evidence["fingerprint"] == "c0ffee" and evidence["labels"]["model"] == "churn"
    assert policies.cleared == [("churn", "alert:MlwatchDatasetDrift", "c0ffee")]
    assert policies.instances == ["c0ffee", "c0ffee"]  # the alert's fingerprint


def test_grafana_webhook_notifications_are_read_by_the_rule_name_mlwatch_gave() -> None:
    """Grafana's webhook contact point (docs: "webhook notifier", payload version 1): its
    own fields beside Alertmanager's; ``alertname`` is the rule's title, which may carry
    the severity, so the policy is found by ``mlwatch_alert``."""
    firing = alert(
        alertname="MlwatchQualityBudgetBurn (page)", mlwatch_alert="MlwatchQualityBudgetBurn"
    )
    firing |= {
        "silenceURL": "http://grafana:3000/alerting/silence/new",
        "dashboardURL": "",
        "panelURL": "",
        "values": {"B": 0.73, "C": 1},
        "valueString": "[ var='B' labels={model=churn} value=0.73 ]",
    }
    body = notification(firing, version="1") | {
        "orgId": 1,
        "state": "alerting",
        "title": "[FIRING:1] MlwatchQualityBudgetBurn (page) churn 3",
        "message": "**Firing**",
    }
    policies = Policies({("churn", "alert:MlwatchQualityBudgetBurn")})
    counts = alertmanager.receive(alertmanager.parse(body), policies)
    assert counts["triggered"] == 1
    assert policies.requests[0][1] == "alert:MlwatchQualityBudgetBurn"


def test_grafanas_datasource_error_alerts_are_not_the_rules_alerts() -> None:
    """A rule Grafana cannot evaluate sends DatasourceError with the rule's labels
    (mlwatch_alert and model included): that is no drift, nothing is requested."""
    labels = {"rulename": "MlwatchJobStale (ticket)", "mlwatch_alert": "MlwatchJobStale"}
    error = alert(alertname="DatasourceError", **labels)
    policies = Policies({("churn", "alert:MlwatchJobStale")})
    assert alertmanager.parse(notification(error, version="1")) == []
    assert alertmanager.receive(alertmanager.parse(notification(error, version="1")), policies)
    assert policies.requests == []


def test_an_alertmanager_alert_is_named_by_alertname_whatever_its_labels() -> None:
    named = alert(mlwatch_alert="MlwatchJobStale")  # a label of Prometheus's, not a name
    [notice] = alertmanager.parse(notification(named))
    assert notice.name == "MlwatchDatasetDrift"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "body: expected an Alertmanager webhook notification"),
        (notification(version="3"), 'version: expected "4"'),
        ({k: v for k, v in notification().items() if k != "alerts"}, "alerts: required"),
        (notification(alerts={}), "alerts: expected a list"),
        (
            notification(alert() | {"status": "pending"}),
            "alerts[0].status: expected firing or resolved",
        ),
        (notification({"status": "firing"}), "alerts[0].labels: required"),
        (
            notification(alert() | {"labels": {"model": 1}}),
            "alerts[0].labels.model: expected a string",
        ),
        (notification(alert() | {"annotations": []}), "alerts[0].annotations: expected an object"),
    ],
    ids=repr,
)
def test_a_bad_payload_names_the_field(body: Any, message: str) -> None:
    with pytest.raises(IngestError, match=message.replace("[", r"\[").replace("]", r"\]")) as exc:
        alertmanager.parse(body)
    assert exc.value.status == 422


def test_fields_of_later_versions_are_ignored() -> None:
    body = notification(alert() | {"silenceURL": "x"}, futureField={"a": 1})
    assert len(alertmanager.parse(body)) == 1


def test_more_than_ten_thousand_alerts_is_413() -> None:
    with pytest.raises(IngestError) as exc:
        alertmanager.parse(notification(*[alert()] * 10_001))
    assert exc.value.status == 413


def test_alerts_of_another_environment_are_ignored() -> None:
    """One Alertmanager for dev and prod, its webhook on the prod sidecar: dev's drift must
    not retrain (nor clear the cause of) the model prod serves. An alert without the
    label (rules built before environments) is still the receiver's."""
    policies = Policies({("churn", "alert:MlwatchDatasetDrift")})
    notices = alertmanager.parse(
        notification(
            alert(environment="dev"),
            alert("resolved", environment="dev"),
            alert(environment="prod"),
            alert(),  # no environment label
        )
    )
    counts = alertmanager.receive(notices, policies, environment="prod")
    assert counts == {"triggered": 1, "suppressed": 1, "resolved": 0, "ignored": 2}
    assert [e["labels"].get("environment") for _, _, _, e, _ in policies.requests] == [
        "prod",
        None,
    ]
    assert policies.cleared == []
