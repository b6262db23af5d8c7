"""The GitLab target against a fake of the pipeline trigger API."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mlwatch.alerting.trigger import Outcome, Target
from tests.alerting.providers import FakeGitLab, sample_trigger
from tests.alerting.targets.conftest import GITLAB_TOKEN, target_of


def gitlab_target(fake: FakeGitLab, **overrides: Any) -> Target:
    return target_of(
        {
            "name": "gl",
            "kind": "gitlab",
            "base_url": fake.url,
            "project": "ml/churn-models",
            "ref": "main",
            "token_env": "GITLAB_TRIGGER_TOKEN",
            **overrides,
        }
    )


def test_pipeline_trigger_is_sent_as_documented(gitlab: FakeGitLab) -> None:
    trigger = sample_trigger()
    attempt = gitlab_target(gitlab, variables={"DEPLOY_ENV": "staging"}).send(trigger, timeout_s=5)
    assert attempt.outcome is Outcome.DELIVERED and attempt.status == 201, attempt
    assert attempt.reference == f"{gitlab.url}/ml/churn-models/-/pipelines/901"
    [request] = gitlab.requests
    assert request.method == "POST"
    assert request.target == "/api/v4/projects/ml%2Fchurn-models/trigger/pipeline"  # no token
    assert request.media_type() == "application/x-www-form-urlencoded"
    assert request.header("Idempotency-Key") == trigger.key
    form = dict(request.form())
    assert form["token"] == GITLAB_TOKEN and form["ref"] == "main"
    [pipeline] = gitlab.pipelines
    variables = pipeline["variables"]
    assert variables["MLWATCH_IDEMPOTENCY_KEY"] == trigger.key
    assert variables["MLWATCH_MODEL"] == "churn"
    assert variables["MLWATCH_VERSION"] == "2026.07.1"
    assert variables["MLWATCH_CODE_VERSION"] == "a1b2c3d"
    assert variables["MLWATCH_RUN_ID"] == "run-17"
    assert variables["MLWATCH_REASON"] == trigger.reason
    assert variables["MLWATCH_CAUSE"] == trigger.cause
    assert variables["MLWATCH_CREATED"] == trigger.created
    assert variables["MLWATCH_STATUS_URL"] == trigger.status_url
    assert json.loads(variables["MLWATCH_EVIDENCE"]) == trigger.evidence
    assert variables["DEPLOY_ENV"] == "staging"
    assert gitlab.effect_keys() == [trigger.key]
    assert gitlab.effects[0]["token_in_query"] is False


def test_project_by_numeric_id(gitlab: FakeGitLab) -> None:
    attempt = gitlab_target(gitlab, project=42).send(sample_trigger(), timeout_s=5)
    assert attempt.outcome is Outcome.DELIVERED, attempt
    assert gitlab.requests[0].path == "/api/v4/projects/42/trigger/pipeline"


def test_wrong_token_is_rejected_with_gitlabs_message(gitlab: FakeGitLab) -> None:
    gitlab.token = "glptt-other"
    attempt = gitlab_target(gitlab).send(sample_trigger(), timeout_s=5)
    assert attempt.outcome is Outcome.REJECTED and attempt.status == 404
    assert "404 Not Found" in attempt.detail and GITLAB_TOKEN not in attempt.detail


def test_unknown_ref_is_rejected_with_gitlabs_message(gitlab: FakeGitLab) -> None:
    attempt = gitlab_target(gitlab, ref="release").send(sample_trigger(), timeout_s=5)
    assert attempt.outcome is Outcome.REJECTED and attempt.status == 400
    assert "Reference not found" in attempt.detail
    assert gitlab.pipelines == []


@pytest.mark.parametrize(("status", "retry_after"), [(429, "3"), (500, None), (502, None)])
def test_retryable_statuses(gitlab: FakeGitLab, status: int, retry_after: str | None) -> None:
    gitlab.fail_next(1, status, retry_after=retry_after)
    attempt = gitlab_target(gitlab).send(sample_trigger(), timeout_s=5)
    assert attempt.outcome is Outcome.RETRY and attempt.status == status
    assert attempt.retry_after_s == (float(retry_after) if retry_after else None)
