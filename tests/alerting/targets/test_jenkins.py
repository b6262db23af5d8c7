"""The Jenkins target against a fake controller with API tokens, passwords and the CSRF
crumb issuer."""

from __future__ import annotations

import json
from typing import Any

from mlwatch.alerting.trigger import Outcome, Target
from tests.alerting.providers import FakeJenkins, sample_trigger
from tests.alerting.targets.conftest import JENKINS_API_TOKEN, JENKINS_PASSWORD, target_of


def jenkins_target(fake: FakeJenkins, **overrides: Any) -> Target:
    """A target on the fake's ``retrain`` job (``None`` drops a key)."""
    item = {
        "name": "jenkins",
        "kind": "jenkins",
        "url": f"{fake.url}/job/retrain",
        "user": "mlwatch-bot",
        "api_token_env": "JENKINS_API_TOKEN",
        **overrides,
    }
    return target_of({k: v for k, v in item.items() if v is not None})


def test_api_token_build_is_one_basic_auth_post(jenkins: FakeJenkins) -> None:
    trigger = sample_trigger()
    attempt = jenkins_target(jenkins, parameters={"TRAIN_SET": "s3://d/x"}).send(
        trigger, timeout_s=5
    )
    assert attempt.outcome is Outcome.DELIVERED and attempt.status == 201, attempt
    assert attempt.reference == f"{jenkins.url}/queue/item/101/"
    [request] = jenkins.requests
    assert request.method == "POST" and request.path == "/jenkins/job/retrain/buildWithParameters"
    assert request.header("Jenkins-Crumb") is None and request.header("Cookie") is None
    assert request.header("Idempotency-Key") == trigger.key
    [item] = jenkins.queue
    assert item["user"] == "mlwatch-bot"
    params = item["params"]
    assert params["MLWATCH_IDEMPOTENCY_KEY"] == trigger.key
    assert params["MLWATCH_MODEL"] == "churn" and params["TRAIN_SET"] == "s3://d/x"
    assert json.loads(params["MLWATCH_EVIDENCE"]) == trigger.evidence


def test_password_fetches_a_crumb_and_keeps_the_session(jenkins: FakeJenkins) -> None:
    target = jenkins_target(
        jenkins, user="alice", api_token_env=None, password_env="JENKINS_PASSWORD"
    )
    attempt = target.send(sample_trigger(), timeout_s=5)
    assert attempt.outcome is Outcome.DELIVERED and attempt.status == 201, attempt
    crumb, build = jenkins.requests
    assert crumb.method == "GET" and crumb.path == "/jenkins/crumbIssuer/api/json"
    assert build.header("Jenkins-Crumb") in {s["crumb"] for s in jenkins.sessions.values()}
    assert jenkins.cookie_name in (build.header("Cookie") or "")
    assert jenkins.queue[0]["user"] == "alice"


def test_without_csrf_protection_the_post_goes_without_a_crumb() -> None:
    with FakeJenkins(passwords={"alice": JENKINS_PASSWORD}, csrf=False) as fake:
        target = jenkins_target(
            fake, user="alice", api_token_env=None, password_env="JENKINS_PASSWORD"
        )
        attempt = target.send(sample_trigger(), timeout_s=5)
    assert attempt.outcome is Outcome.DELIVERED, attempt
    assert [r.status for r in fake.requests] == [404, 201]


def test_a_job_in_a_folder(jenkins: FakeJenkins) -> None:
    target = target_of(
        {
            "name": "jenkins",
            "kind": "jenkins",
            "url": f"{jenkins.url}/job/ml/job/retrain-churn/",
            "user": "alice",
            "password_env": "JENKINS_PASSWORD",
        }
    )
    attempt = target.send(sample_trigger(), timeout_s=5)
    assert attempt.outcome is Outcome.DELIVERED, attempt
    assert jenkins.requests[0].path == "/jenkins/crumbIssuer/api/json"  # the root's issuer
    assert jenkins.requests[1].path == "/jenkins/job/ml/job/retrain-churn/buildWithParameters"


def test_wrong_password_is_rejected_with_jenkins_message(jenkins: FakeJenkins) -> None:
    jenkins.passwords["alice"] = "changed"
    target = jenkins_target(
        jenkins, user="alice", api_token_env=None, password_env="JENKINS_PASSWORD"
    )
    attempt = target.send(sample_trigger(), timeout_s=5)
    assert attempt.outcome is Outcome.REJECTED and attempt.status == 401
    assert "Invalid password/token for user: alice" in attempt.detail
    assert JENKINS_PASSWORD not in attempt.detail


def test_unknown_job_is_rejected(jenkins: FakeJenkins) -> None:
    attempt = jenkins_target(jenkins, url=f"{jenkins.url}/job/nope").send(
        sample_trigger(), timeout_s=5
    )
    assert attempt.outcome is Outcome.REJECTED and attempt.status == 404


def test_crumb_issuer_down_is_retried(jenkins: FakeJenkins) -> None:
    jenkins.fail_next(1, 503, retry_after="5")
    target = jenkins_target(
        jenkins, user="alice", api_token_env=None, password_env="JENKINS_PASSWORD"
    )
    attempt = target.send(sample_trigger(), timeout_s=5)
    assert attempt.outcome is Outcome.RETRY and attempt.status == 503
    assert attempt.retry_after_s == 5.0 and "crumbIssuer" in attempt.detail
    assert jenkins.queue == []


def test_a_resent_trigger_joins_its_queued_item(jenkins: FakeJenkins) -> None:
    """Jenkins merges an identical queued request: a retry after a lost answer (the same
    idempotency key, the same parameters) gives back the same queue item."""
    target = jenkins_target(jenkins)
    first = target.send(sample_trigger(), timeout_s=5)
    second = target.send(sample_trigger(), timeout_s=5)
    assert first.reference == second.reference
    assert jenkins.effect_keys() == [sample_trigger().key]
    assert JENKINS_API_TOKEN not in first.detail
