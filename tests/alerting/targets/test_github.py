"""GitHub Actions targets against a fake that checks each request as GitHub's REST API
documents it."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from typing import Any

import pytest

from mlwatch.alerting.targets.github import client_payload, workflow_inputs
from mlwatch.alerting.trigger import Outcome, Target, Trigger
from tests.alerting.providers import WORKFLOW_INPUTS, FakeGitHub, sample_trigger
from tests.alerting.targets.conftest import GITHUB_TOKEN, target_of


def test_workflow_dispatch_is_sent_as_documented(
    github: FakeGitHub, github_workflow: Callable[..., Target]
) -> None:
    trigger = sample_trigger()
    attempt = github_workflow(return_run_details=False).send(trigger, timeout_s=5)
    assert attempt.outcome is Outcome.DELIVERED and attempt.status == 204, attempt
    [request] = github.requests
    assert request.method == "POST"
    assert request.path == "/repos/acme/models/actions/workflows/retrain.yml/dispatches"
    assert request.header("Accept") == "application/vnd.github+json"
    assert request.header("X-GitHub-Api-Version") == "2022-11-28"
    assert request.header("Authorization") == f"Bearer {GITHUB_TOKEN}"
    assert request.header("Content-Type") == "application/json"
    assert (request.header("User-Agent") or "").startswith("mlwatch/")
    assert request.header("Idempotency-Key") == trigger.key
    body = request.json()
    assert set(body) == {"ref", "inputs"} and body["ref"] == "main"
    inputs = body["inputs"]
    assert tuple(inputs) == WORKFLOW_INPUTS
    assert all(isinstance(v, str) for v in inputs.values())
    assert inputs["idempotency_key"] == trigger.key
    assert inputs["model"] == "churn" and inputs["version"] == "2026.07.1"
    assert inputs["code_version"] == "a1b2c3d" and inputs["run_id"] == "run-17"
    assert inputs["reason"] == trigger.reason and inputs["status_url"] == trigger.status_url
    assert json.loads(inputs["evidence"]) == trigger.evidence
    [run] = github.runs
    assert run["idempotency_key"] == run["header_key"] == trigger.key


def test_return_run_details_gives_the_run_as_reference(
    github: FakeGitHub, github_workflow: Callable[..., Target]
) -> None:
    attempt = github_workflow(return_run_details=True).send(sample_trigger(), timeout_s=5)
    assert attempt.outcome is Outcome.DELIVERED and attempt.status == 200
    assert attempt.reference == "https://github.com/acme/models/actions/runs/7000001"
    assert github.requests[0].json()["return_run_details"] is True


def test_workflow_by_id_and_extra_inputs(github: FakeGitHub) -> None:
    github.workflows["retrain.yml"] = (*WORKFLOW_INPUTS, "environment")
    target = target_of(
        {
            "name": "gh",
            "kind": "github_workflow",
            "base_url": github.url,
            "repo": "acme/models",
            "workflow": 1000,
            "ref": "refs/heads/main",
            "inputs": {"environment": "staging"},
            "token_env": "GITHUB_TOKEN",
        }
    )
    attempt = target.send(sample_trigger(), timeout_s=5)
    assert attempt.outcome is Outcome.DELIVERED, attempt
    assert github.requests[0].path.endswith("/workflows/1000/dispatches")
    assert github.runs[0]["inputs"]["environment"] == "staging"


def test_enterprise_server_base_url() -> None:
    with FakeGitHub(token=GITHUB_TOKEN, enterprise=True, max_inputs=10) as ghes:
        target = target_of(
            {
                "name": "ghes",
                "kind": "github_workflow",
                "base_url": f"{ghes.url}/",  # https://HOST/api/v3
                "repo": "acme/models",
                "workflow": "retrain.yml",
                "ref": "main",
                "token_env": "GITHUB_TOKEN",
            }
        )
        attempt = target.send(sample_trigger(), timeout_s=5)
    assert attempt.outcome is Outcome.DELIVERED, attempt
    request = ghes.requests[0]
    assert request.path == "/api/v3/repos/acme/models/actions/workflows/retrain.yml/dispatches"
    assert "return_run_details" not in request.json()  # off by default outside github.com


def test_an_undeclared_input_is_rejected_with_githubs_message(github: FakeGitHub) -> None:
    github.workflows["retrain.yml"] = ("model", "version")  # an older workflow file
    attempt = target_of(
        {
            "name": "gh",
            "kind": "github_workflow",
            "base_url": github.url,
            "repo": "acme/models",
            "workflow": "retrain.yml",
            "ref": "main",
            "token_env": "GITHUB_TOKEN",
        }
    ).send(sample_trigger(), timeout_s=5)
    assert attempt.outcome is Outcome.REJECTED and attempt.status == 422
    assert "Unexpected inputs provided" in attempt.detail and "idempotency_key" in attempt.detail
    assert github.runs == []


def test_unknown_ref_and_bad_token_are_rejected(
    github: FakeGitHub, github_workflow: Callable[..., Target]
) -> None:
    attempt = github_workflow(ref="nope").send(sample_trigger(), timeout_s=5)
    assert attempt.outcome is Outcome.REJECTED and attempt.status == 422
    assert "No ref found for: nope" in attempt.detail
    github.token = "another-token"
    attempt = github_workflow().send(sample_trigger(), timeout_s=5)
    assert attempt.outcome is Outcome.REJECTED and attempt.status == 401
    assert "Bad credentials" in attempt.detail and GITHUB_TOKEN not in attempt.detail


@pytest.mark.parametrize(
    ("status", "retry_after", "expected"),
    [(429, "7", 7.0), (503, "2", 2.0), (500, None, None), (502, None, None), (408, None, None)],
)
def test_retryable_statuses(
    github: FakeGitHub,
    github_workflow: Callable[..., Target],
    status: int,
    retry_after: str | None,
    expected: float | None,
) -> None:
    github.fail_next(1, status, retry_after=retry_after)
    target = github_workflow()
    attempt = target.send(sample_trigger(), timeout_s=5)
    assert attempt.outcome is Outcome.RETRY and attempt.status == status
    assert attempt.retry_after_s == expected
    assert target.send(sample_trigger(), timeout_s=5).outcome is Outcome.DELIVERED


def test_rate_limit_403_is_retried_after_the_reset(
    github: FakeGitHub, github_workflow: Callable[..., Target]
) -> None:
    reset = int(time.time()) + 30
    github.fail_next(
        1,
        403,
        message="API rate limit exceeded for installation ID 1.",
        headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)},
    )
    attempt = github_workflow().send(sample_trigger(), timeout_s=5)
    assert attempt.outcome is Outcome.RETRY and attempt.status == 403
    assert attempt.retry_after_s is not None and 25 <= attempt.retry_after_s <= 31
    assert "rate limit" in attempt.detail


def test_a_plain_403_is_rejected(
    github: FakeGitHub, github_workflow: Callable[..., Target]
) -> None:
    github.fail_next(1, 403, message="Resource not accessible by personal access token")
    attempt = github_workflow().send(sample_trigger(), timeout_s=5)
    assert attempt.outcome is Outcome.REJECTED
    assert "Resource not accessible by personal access token" in attempt.detail


def test_repository_dispatch_is_sent_as_documented(github: FakeGitHub) -> None:
    trigger = sample_trigger()
    target = target_of(
        {
            "name": "dispatch",
            "kind": "github_dispatch",
            "base_url": github.url,
            "repo": "acme/models",
            "event_type": "mlwatch-retrain",
            "token_env": "GITHUB_TOKEN",
        }
    )
    attempt = target.send(trigger, timeout_s=5)
    assert attempt.outcome is Outcome.DELIVERED and attempt.status == 204, attempt
    [request] = github.requests
    assert request.path == "/repos/acme/models/dispatches"
    assert request.header("Idempotency-Key") == trigger.key
    body = request.json()
    assert body == {"event_type": "mlwatch-retrain", "client_payload": trigger.payload()}
    assert len(body["client_payload"]) <= 10
    assert github.effect_keys() == [trigger.key]


def test_inputs_are_strings_whatever_the_trigger_holds() -> None:
    trigger = sample_trigger(
        code_version=None, run_id=None, status_url=None, evidence={"p": math.nan, "n": (1, 2)}
    )
    inputs = workflow_inputs(trigger)
    assert inputs["code_version"] == inputs["run_id"] == inputs["status_url"] == ""
    assert json.loads(inputs["evidence"]) == {"p": None, "n": [1, 2]}


def test_a_grown_payload_still_fits_client_payload() -> None:
    class Bigger(Trigger):
        def payload(self) -> dict[str, Any]:
            return {**super().payload(), "team": "ml", "priority": "high"}

    base = sample_trigger()
    payload = client_payload(Bigger(**{f: getattr(base, f) for f in base.__dataclass_fields__}))
    assert len(payload) == 10
    assert payload["more"] == {"status_url": base.status_url, "team": "ml", "priority": "high"}
