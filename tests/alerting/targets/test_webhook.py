"""The webhook target: a CloudEvent signed per Standard Webhooks, checked by a receiver
that verifies with the ``standardwebhooks`` package."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from mlwatch.alerting.trigger import Outcome, Target
from tests.alerting.providers import FakeWebhookReceiver, new_whsec, sample_trigger
from tests.alerting.targets.conftest import WEBHOOK_SECRET, spec_of, target_of


def webhook_target(fake: FakeWebhookReceiver, **overrides: Any) -> Target:
    return target_of(
        {
            "name": "hook",
            "kind": "webhook",
            "url": fake.url,
            "source": "//mlwatch.prod.example/sidecar",
            "secret_env": "RETRAIN_WEBHOOK_SECRET",
            **overrides,
        }
    )


def test_a_signed_cloudevent_is_delivered(receiver: FakeWebhookReceiver) -> None:
    trigger = sample_trigger()
    before = int(time.time())
    attempt = webhook_target(receiver).send(trigger, timeout_s=5)
    assert attempt.outcome is Outcome.DELIVERED and attempt.status == 204, attempt
    [request] = receiver.requests
    assert request.method == "POST" and request.path == "/hooks/retrain"
    assert request.header("Content-Type") == "application/cloudevents+json"
    assert request.header("webhook-id") == trigger.key
    assert before <= int(request.header("webhook-timestamp") or 0) <= time.time() + 1
    assert (request.header("webhook-signature") or "").startswith("v1,")
    # verified again here, with the package a receiver would use
    event = Webhook(WEBHOOK_SECRET).verify(request.body, request.headers)
    assert event == {
        "specversion": "1.0",
        "type": "io.mlwatch.retrain.requested",
        "source": "//mlwatch.prod.example/sidecar",
        "id": trigger.key,
        "time": trigger.created,
        "subject": "churn",
        "datacontenttype": "application/json",
        "data": trigger.payload(),
    }
    assert receiver.effect_keys() == [trigger.key]


def test_time_defaults_to_now_and_source_to_mlwatch(receiver: FakeWebhookReceiver) -> None:
    target = target_of(
        {
            "name": "h",
            "kind": "webhook",
            "url": receiver.url,
            "secret_env": "RETRAIN_WEBHOOK_SECRET",
        }
    )
    assert target.send(sample_trigger(created=""), timeout_s=5).outcome is Outcome.DELIVERED
    event = receiver.requests[0].json()
    assert event["source"] == "/mlwatch"
    when = datetime.fromisoformat(event["time"].replace("Z", "+00:00"))
    assert abs(when.timestamp() - time.time()) < 60


def test_a_wrong_secret_is_rejected_by_the_receiver(receiver: FakeWebhookReceiver) -> None:
    other = new_whsec()
    spec = spec_of(
        {"name": "h", "kind": "webhook", "url": receiver.url, "secret_env": "S"}, env={"S": other}
    )
    from mlwatch.alerting.targets import build_target

    attempt = build_target(spec).send(sample_trigger(), timeout_s=5)
    assert attempt.outcome is Outcome.REJECTED and attempt.status == 401
    assert "No matching signature found" in attempt.detail
    assert other not in attempt.detail and other[6:] not in attempt.detail
    assert receiver.effects == []


def test_our_signature_is_what_the_package_computes() -> None:
    from mlwatch.alerting.targets.webhook import WebhookTarget

    target = WebhookTarget(
        spec_of(
            {
                "name": "h",
                "kind": "webhook",
                "url": "https://example.invalid/h",
                "secret_env": "RETRAIN_WEBHOOK_SECRET",
            }
        )
    )
    now = time.time()
    headers, body = target.request(sample_trigger(), now=now)
    Webhook(WEBHOOK_SECRET).verify(body, headers)
    tampered = body.replace(b"churn", b"churm")
    with pytest.raises(WebhookVerificationError):
        Webhook(WEBHOOK_SECRET).verify(tampered, headers)


def test_a_retried_delivery_has_one_effect(receiver: FakeWebhookReceiver) -> None:
    receiver.fail_next(1, 503, retry_after="1")
    target = webhook_target(receiver)
    first = target.send(sample_trigger(), timeout_s=5)
    assert first.outcome is Outcome.RETRY and first.retry_after_s == 1.0
    assert target.send(sample_trigger(), timeout_s=5).outcome is Outcome.DELIVERED
    assert target.send(sample_trigger(), timeout_s=5).outcome is Outcome.DELIVERED  # lost answer
    assert receiver.effect_keys() == [sample_trigger().key] and receiver.duplicates == 1
    ids = {r.header("webhook-id") for r in receiver.requests}
    assert ids == {sample_trigger().key}


def test_gone_is_rejected(receiver: FakeWebhookReceiver) -> None:
    receiver.fail_next(1, 410, message="endpoint disabled")
    attempt = webhook_target(receiver).send(sample_trigger(), timeout_s=5)
    assert attempt.outcome is Outcome.REJECTED and "endpoint disabled" in attempt.detail


def test_the_documented_receiver_snippet_verifies_our_deliveries(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """docs/retraining.md's Python snippet, run as written, against what mlwatch sends."""
    from mlwatch.alerting.targets.webhook import WebhookTarget
    from tests.helpers import REPO

    text = (REPO / "docs" / "retraining.md").read_text(encoding="utf-8")
    [snippet] = [
        block.split("\n", 1)[1]
        for block in text.split("```")[1:]
        if block.startswith("python\n") and "standardwebhooks" in block
    ]
    monkeypatch.setenv("RETRAIN_WEBHOOK_SECRET", WEBHOOK_SECRET)
    namespace: dict[str, Any] = {}
    exec(compile(snippet, "docs/retraining.md", "exec"), namespace)
    receive = namespace["receive"]
    target = WebhookTarget(
        spec_of(
            {
                "name": "h",
                "kind": "webhook",
                "url": "https://example.invalid/h",
                "secret_env": "RETRAIN_WEBHOOK_SECRET",
            }
        )
    )
    headers, body = target.request(sample_trigger())
    assert receive(body.replace(b"churn", b"churm"), headers) == 401
    assert receive(body, headers) == 202
    assert receive(body, headers) == 204  # the retry of the same trigger
    stale_headers, stale_body = target.request(sample_trigger(key="k2"), now=time.time() - 600)
    assert receive(stale_body, stale_headers) == 401
