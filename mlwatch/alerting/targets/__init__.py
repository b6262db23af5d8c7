"""The CI/CD targets a retraining trigger goes to, one module per provider, each built to
its provider's documented API (:class:`mlwatch.alerting.trigger.Target`).

:func:`build_target` makes the target of a config's :class:`TargetSpec`: GitHub Actions
(:mod:`.github`), GitLab (:mod:`.gitlab`), Jenkins (:mod:`.jenkins`) or a signed
CloudEvents webhook (:mod:`.webhook`). Each makes one bounded HTTP attempt per ``send``
(:mod:`.request`) and never raises; the outbox owns retries.
"""

from __future__ import annotations

from mlwatch.alerting.targets.github import GitHubDispatchTarget, GitHubWorkflowTarget
from mlwatch.alerting.targets.gitlab import GitLabTarget
from mlwatch.alerting.targets.jenkins import JenkinsTarget
from mlwatch.alerting.targets.request import HttpTarget
from mlwatch.alerting.targets.webhook import WebhookTarget
from mlwatch.alerting.trigger import Target
from mlwatch.settings.targets import TargetSpec

__all__ = [
    "GitHubDispatchTarget",
    "GitHubWorkflowTarget",
    "GitLabTarget",
    "JenkinsTarget",
    "WebhookTarget",
    "build_target",
]

_CLASSES: dict[str, type[HttpTarget]] = {
    cls.kind: cls
    for cls in (
        GitHubWorkflowTarget,
        GitHubDispatchTarget,
        GitLabTarget,
        JenkinsTarget,
        WebhookTarget,
    )
}


def build_target(spec: TargetSpec) -> Target:
    """The target a spec (from ``parse_targets``) describes."""
    try:
        cls = _CLASSES[spec.kind]
    except KeyError:
        raise ValueError(f"unknown target kind {spec.kind!r}") from None
    return cls(spec)
