"""Nothing acknowledged is lost, for retraining triggers too: a real sidecar process takes
an Alertmanager notification (202 means the trigger is recorded), and the trigger reaches
a Standard Webhooks receiver exactly once — through the receiver's outage, through a
``kill -9`` of the sidecar while it retries, and never again after a 4xx."""

from __future__ import annotations

import json
import signal
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.alerting.providers import FakeWebhookReceiver, new_whsec
from tests.alerting.test_alertmanager import alert, notification
from tests.helpers import wait_until
from tests.integration.servers import SidecarProcess

pytestmark = pytest.mark.integration
TOKEN = "durable-token-123456"


@pytest.fixture
def receiver() -> Iterator[FakeWebhookReceiver]:
    secret = new_whsec()
    with FakeWebhookReceiver(secret=secret) as fake:
        fake.secret_text = secret  # type: ignore[attr-defined]  # what the sidecar's file holds
        yield fake


def sidecar(tmp_path: Path, receiver: FakeWebhookReceiver) -> SidecarProcess:
    secret = tmp_path / "hook.secret"
    secret.write_text(receiver.secret_text)  # type: ignore[attr-defined]
    config = {
        "models": [
            {
                "name": "churn",
                "retrain": {"target": "hook", "on": [{"alert": "MlwatchDatasetDrift"}]},
            }
        ],
        "targets": [
            {"name": "hook", "kind": "webhook", "url": receiver.url, "secret_file": str(secret)}
        ],
        "retrain_backoff_s": 0.2,
    }
    path = tmp_path / "mlwatch.yaml"
    path.write_text(json.dumps(config))
    return SidecarProcess(tmp_path / "data", MLWATCH_TOKEN=TOKEN, MLWATCH_CONFIG=str(path))


def post(sc: SidecarProcess, path: str, body: Any) -> dict[str, Any]:
    req = urllib.request.Request(
        sc.url + path,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return dict(json.loads(r.read()))


def triggers(sc: SidecarProcess) -> list[dict[str, Any]]:
    req = urllib.request.Request(
        sc.url + "/v1/models/churn/triggers", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return list(json.loads(r.read())["triggers"])


def test_through_an_outage_of_the_receiver_exactly_once(
    tmp_path: Path, receiver: FakeWebhookReceiver
) -> None:
    receiver.fail_next(4, 503)
    sc = sidecar(tmp_path, receiver).start()
    try:
        assert post(sc, "/v1/alerts/alertmanager", notification(alert()))["triggered"] == 1
        wait_until(lambda: len(receiver.effect_keys()) == 1, timeout=60, what="delivered")
        [trig] = triggers(sc)
        assert trig["state"] == "delivered"
        assert [a["status"] for a in trig["attempts"]] == [503, 503, 503, 503, 204]
        assert receiver.effect_keys() == [trig["key"]]
        assert TOKEN not in sc.log() and "whsec_" not in sc.log()
    finally:
        sc.stop()


def test_a_kill_while_retrying_delivers_once_after_the_restart(
    tmp_path: Path, receiver: FakeWebhookReceiver
) -> None:
    receiver.fail_next(1000, 503)  # down until told otherwise
    sc = sidecar(tmp_path, receiver).start()
    assert post(sc, "/v1/alerts/alertmanager", notification(alert()))["triggered"] == 1
    wait_until(lambda: len(receiver.requests) >= 2, timeout=30, what="two attempts")
    assert sc.proc is not None
    sc.proc.send_signal(signal.SIGKILL)
    sc.proc.wait(10)
    with receiver.lock:
        receiver._forced.clear()  # the receiver is back
    again = sidecar(tmp_path, receiver).start()
    try:
        wait_until(lambda: len(receiver.effect_keys()) == 1, timeout=60, what="delivered")
        [trig] = triggers(again)
        assert trig["state"] == "delivered" and receiver.effect_keys() == [trig["key"]]
        keys = {r.header("webhook-id") for r in receiver.requests}
        assert keys == {trig["key"]}  # every attempt, before and after the kill, one key
    finally:
        again.stop()


def test_a_refusal_is_recorded_and_not_retried(
    tmp_path: Path, receiver: FakeWebhookReceiver
) -> None:
    receiver.fail_next(1, 400, message="unknown event type")
    sc = sidecar(tmp_path, receiver).start()
    try:
        post(sc, "/v1/alerts/alertmanager", notification(alert()))
        wait_until(lambda: triggers(sc)[0]["state"] == "rejected", timeout=30)
        [trig] = triggers(sc)
        assert "unknown event type" in trig["detail"] and len(trig["attempts"]) == 1
        assert len(receiver.requests) == 1 and receiver.effect_keys() == []
    finally:
        sc.stop()
