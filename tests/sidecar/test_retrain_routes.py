"""The sidecar's retraining routes: Alertmanager's webhook, a manual request, the
triggers' audit and the status's retrain section."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from mlwatch.alerting import retrain
from mlwatch.settings import ModelSpec
from mlwatch.settings.retrain import Condition, RetrainSpec
from mlwatch.sidecar.app import create_app
from tests.alerting.fakes import ScriptedTarget
from tests.alerting.test_alertmanager import alert, notification
from tests.helpers import wait_until


@pytest.fixture
def target(monkeypatch: pytest.MonkeyPatch) -> ScriptedTarget:
    fake = ScriptedTarget()
    monkeypatch.setattr(retrain, "targets_of", lambda config: {"ci": fake})
    return fake


@pytest.fixture
def client(sidecar_config: Any, target: ScriptedTarget) -> Iterator[TestClient]:
    policy = RetrainSpec(target="ci", on=(Condition("alert", alert="MlwatchDatasetDrift"),))
    cfg = replace(sidecar_config(), models=(ModelSpec(name="churn", retrain=policy),))
    with TestClient(create_app(cfg, registry=CollectorRegistry())) as c:
        yield c


def test_a_firing_alert_becomes_one_delivered_trigger(
    client: TestClient, target: ScriptedTarget
) -> None:
    body = notification(*[alert()] * 5)
    r = client.post("/v1/alerts/alertmanager", json=body)
    assert r.status_code == 200
    assert r.json() == {"triggered": 1, "suppressed": 4, "resolved": 0, "ignored": 0}
    wait_until(lambda: len(target.sent) == 1, what="the trigger sent")
    page = client.get("/v1/models/churn/triggers").json()
    assert page["count"] == 1
    [trig] = page["triggers"]
    wait_until(
        lambda: (
            client.get("/v1/models/churn/triggers").json()["triggers"][0]["state"] == "delivered"
        )
    )
    assert trig["cause"] == "alert:MlwatchDatasetDrift" and trig["created"].endswith("Z")
    status = client.get("/v1/models/churn/status").json()
    assert status["retrain"]["target"] == "ci"
    assert status["retrain"]["last"]["reason"] == "dataset drift share 0.4 on churn 3"
    resolved = client.post("/v1/alerts/alertmanager", json=notification(alert("resolved")))
    assert resolved.json()["resolved"] == 1


def test_a_bad_notification_is_422_naming_the_field(client: TestClient) -> None:
    r = client.post("/v1/alerts/alertmanager", json=notification({"status": "firing"}))
    assert (
        r.status_code == 422
        and r.json()["detail"]
        == "alerts[0].labels: required (an Alertmanager or Grafana webhook notification)"
    )
    r = client.post(
        "/v1/alerts/alertmanager", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert r.status_code == 400 and "invalid JSON" in r.json()["detail"]


def test_a_manual_request(client: TestClient, target: ScriptedTarget) -> None:
    r = client.post("/v1/models/churn/retrain", json={"reason": "new labels arrived"})
    assert r.status_code == 202 and r.json()["state"] == "pending"
    wait_until(lambda: len(target.sent) == 1)
    assert target.sent[0].reason == "new labels arrived" and target.sent[0].cause == "manual"
    r = client.post("/v1/models/churn/retrain", json={"reason": ""})
    assert r.status_code == 422 and r.json()["detail"].startswith("reason:")
    r = client.post("/v1/models/other/retrain", json={"reason": "x"})
    assert r.status_code == 409 and "has no retrain section" in r.json()["detail"]


def test_a_manual_request_with_an_idempotency_key_is_one_trigger(
    client: TestClient, target: ScriptedTarget
) -> None:
    headers = {"Idempotency-Key": "ci-run-4242"}
    first = client.post("/v1/models/churn/retrain", json={"reason": "x"}, headers=headers)
    again = client.post("/v1/models/churn/retrain", json={"reason": "x"}, headers=headers)
    assert first.status_code == again.status_code == 202
    assert first.json()["key"] == again.json()["key"]
    other = client.post("/v1/models/churn/retrain", json={"reason": "x"})
    assert other.json()["key"] != first.json()["key"]
    wait_until(lambda: len(target.sent) == 2)
    assert client.get("/v1/models/churn/triggers").json()["count"] == 2
    bad = client.post(
        "/v1/models/churn/retrain", json={"reason": "x"}, headers={"Idempotency-Key": "a b"}
    )
    assert bad.status_code == 422 and "Idempotency-Key" in bad.text


def test_triggers_of_an_unknown_model_are_404(client: TestClient) -> None:
    assert client.get("/v1/models/nope/triggers").status_code == 404
