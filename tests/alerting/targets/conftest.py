"""Fixtures: the fake providers (started, stopped after the test) and targets built from
config entries exactly as ``mlwatch.yaml`` holds them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from mlwatch.alerting.targets import build_target
from mlwatch.alerting.trigger import Target
from mlwatch.settings.targets import TargetSpec, parse_targets
from tests.alerting.providers import (
    FakeGitHub,
    FakeGitLab,
    FakeJenkins,
    FakeWebhookReceiver,
    new_whsec,
)

GITHUB_TOKEN = "ghp_S3cretGitHubToken0123456789abcdef"
GITLAB_TOKEN = "glptt-S3cretTriggerToken0123456789"
JENKINS_API_TOKEN = "11aaS3cretJenkinsApiToken99"
JENKINS_PASSWORD = "S3cret-Jenkins-Passw0rd"
WEBHOOK_SECRET = new_whsec()
SECRETS = (GITHUB_TOKEN, GITLAB_TOKEN, JENKINS_API_TOKEN, JENKINS_PASSWORD, WEBHOOK_SECRET)
ENV = {
    "GITHUB_TOKEN": GITHUB_TOKEN,
    "GITLAB_TRIGGER_TOKEN": GITLAB_TOKEN,
    "JENKINS_API_TOKEN": JENKINS_API_TOKEN,
    "JENKINS_PASSWORD": JENKINS_PASSWORD,
    "RETRAIN_WEBHOOK_SECRET": WEBHOOK_SECRET,
}


def spec_of(item: dict[str, Any], env: dict[str, str] | None = None) -> TargetSpec:
    """The spec of one ``targets`` entry."""
    [spec] = parse_targets([item], "mlwatch.yaml", env=ENV if env is None else env)
    return spec


def target_of(item: dict[str, Any]) -> Target:
    return build_target(spec_of(item))


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    with FakeGitHub(token=GITHUB_TOKEN) as fake:
        yield fake


@pytest.fixture
def gitlab() -> Iterator[FakeGitLab]:
    with FakeGitLab(token=GITLAB_TOKEN) as fake:
        yield fake


@pytest.fixture
def jenkins() -> Iterator[FakeJenkins]:
    with FakeJenkins(
        api_tokens={"mlwatch-bot": JENKINS_API_TOKEN},
        passwords={"alice": JENKINS_PASSWORD},
        jobs={"job/retrain": (), "job/ml/job/retrain-churn": ()},
    ) as fake:
        yield fake


@pytest.fixture
def receiver() -> Iterator[FakeWebhookReceiver]:
    with FakeWebhookReceiver(secret=WEBHOOK_SECRET) as fake:
        yield fake


@pytest.fixture
def github_workflow(github: FakeGitHub) -> Callable[..., Target]:
    def make(**overrides: Any) -> Target:
        item = {
            "name": "gh",
            "kind": "github_workflow",
            "base_url": github.url,
            "repo": "acme/models",
            "workflow": "retrain.yml",
            "ref": "main",
            "token_env": "GITHUB_TOKEN",
            **overrides,
        }
        return target_of(item)

    return make
