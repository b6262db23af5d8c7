"""GitHub Actions: ``workflow_dispatch`` and ``repository_dispatch``, as GitHub's REST API
documents them ("Create a workflow dispatch event", "Create a repository dispatch event").

Both POST JSON with ``Accept: application/vnd.github+json``, ``X-GitHub-Api-Version``
(2022-11-28 unless the target says otherwise), ``Authorization: Bearer <token>`` and a
``User-Agent`` (GitHub refuses requests without one), plus ``Idempotency-Key``. The base
URL is ``https://api.github.com``, or ``https://HOST/api/v3`` for GitHub Enterprise
Server.

- ``github_workflow``: ``POST /repos/{owner}/{repo}/actions/workflows/{workflow}/dispatches``
  with ``{"ref": ..., "inputs": {...}}``. Inputs must be strings: the eight of
  :data:`~mlwatch.settings.targets.GITHUB_INPUTS` (``evidence`` as one JSON string,
  ``""`` for what is unknown) and the target's own ``inputs``, at most 25 (GitHub's
  documented limit). The workflow must declare each input: GitHub refuses unexpected
  ones (422). GitHub answers 204, or 200 with the run's ``html_url`` (the Attempt's
  reference) when ``return_run_details`` is sent (the default on github.com).
- ``github_dispatch``: ``POST /repos/{owner}/{repo}/dispatches`` with ``{"event_type":
  ..., "client_payload": Trigger.payload()}`` (at most 10 top-level properties, as
  documented; the payload has exactly 10). GitHub answers 204.

A 403 or 429 with ``Retry-After`` or ``x-ratelimit-remaining: 0`` is GitHub's rate limit:
retried after the time it names (``x-ratelimit-reset``). Any other 4xx is rejected with
GitHub's ``message``.
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import quote

from mlwatch.alerting.targets.request import (
    Answer,
    HttpTarget,
    as_text,
    jsonable,
    provider_message,
    scrub,
)
from mlwatch.alerting.trigger import Attempt, Outcome, Trigger
from mlwatch.client.transport import retry_after_s
from mlwatch.settings.targets import GITHUB_INPUTS, TargetSpec

#: GitHub's documented limit of ``client_payload``'s top-level properties.
CLIENT_PAYLOAD_MAX = 10


def workflow_inputs(trigger: Trigger, extra: tuple[tuple[str, str], ...] = ()) -> dict[str, str]:
    """The ``inputs`` of a workflow_dispatch: strings only.

    >>> from mlwatch.alerting.trigger import Trigger
    >>> t = Trigger(key="k1", model="m", version="2", reason="drift", cause="c",
    ...             evidence={"share": 0.4})
    >>> workflow_inputs(t)["evidence"], workflow_inputs(t)["run_id"]
    ('{"share":0.4}', '')
    """
    payload = trigger.payload()
    inputs = {name: as_text(payload.get(name)) for name in GITHUB_INPUTS}
    inputs["evidence"] = as_text(jsonable(payload.get("evidence") or {}))
    inputs.update(extra)
    return inputs


def client_payload(trigger: Trigger) -> dict[str, Any]:
    """``Trigger.payload()`` as a repository_dispatch ``client_payload``: should it ever
    grow past GitHub's 10 top-level properties, the rest goes under ``more``."""
    payload: dict[str, Any] = jsonable(trigger.payload())
    if len(payload) <= CLIENT_PAYLOAD_MAX:
        return payload
    keys = list(payload)
    kept = {k: payload[k] for k in keys[: CLIENT_PAYLOAD_MAX - 1]}
    kept["more"] = {k: payload[k] for k in keys[CLIENT_PAYLOAD_MAX - 1 :]}
    return kept


class _GitHubTarget(HttpTarget):
    def __init__(self, spec: TargetSpec) -> None:
        super().__init__(spec)
        assert spec.repo is not None and spec.token is not None
        owner, repo = spec.repo.split("/", 1)
        self.repo_url = f"{spec.url}/repos/{quote(owner, safe='')}/{quote(repo, safe='')}"
        self.api_version = spec.api_version
        self._token = spec.token
        self.hide(spec.token)

    def headers(self, trigger: Trigger) -> dict[str, str]:
        return {
            "Accept": "application/vnd.github+json",
            "Authorization": f"Bearer {self._token}",
            "X-GitHub-Api-Version": self.api_version,
            "Content-Type": "application/json",
            "Idempotency-Key": trigger.key,
        }

    def post(
        self, url: str, trigger: Trigger, body: dict[str, Any], deadline: float, budget: float
    ) -> Attempt:
        data = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        answer = self.call("POST", url, self.headers(trigger), data, deadline, budget)
        if isinstance(answer, Attempt):
            return answer
        limited = self._rate_limited("POST", url, answer)
        if limited is not None:
            return limited
        reference = None
        doc = answer.json() if answer.status == 200 else None
        if isinstance(doc, dict) and isinstance(doc.get("html_url"), str):
            reference = doc["html_url"]
        return self.judged("POST", url, answer, reference)

    def _rate_limited(self, method: str, url: str, answer: Answer) -> Attempt | None:
        """GitHub's primary and secondary rate limits (403 or 429): wait as it says."""
        retry_after = answer.header("Retry-After")
        exhausted = answer.header("x-ratelimit-remaining") == "0"
        if answer.status not in (403, 429) or not (retry_after or exhausted):
            return None
        wait = retry_after_s(retry_after)
        reset = answer.header("x-ratelimit-reset")
        if wait is None and reset and reset.isdigit():
            wait = max(0.0, int(reset) - time.time())
        message = scrub(provider_message(answer), self._secrets)
        return Attempt(
            Outcome.RETRY,
            answer.status,
            f"{method} {url}: HTTP {answer.status}: rate limited: {message}",
            wait,
        )


class GitHubWorkflowTarget(_GitHubTarget):
    """``workflow_dispatch``: starts one workflow on ``ref`` with string inputs."""

    kind = "github_workflow"

    def __init__(self, spec: TargetSpec) -> None:
        super().__init__(spec)
        assert spec.workflow is not None and spec.ref is not None
        self.dispatch_url = (
            f"{self.repo_url}/actions/workflows/{quote(spec.workflow, safe='')}/dispatches"
        )
        self.ref = spec.ref
        self.extra = spec.extra
        self.return_run_details = spec.return_run_details

    def body(self, trigger: Trigger) -> dict[str, Any]:
        body: dict[str, Any] = {"ref": self.ref, "inputs": workflow_inputs(trigger, self.extra)}
        if self.return_run_details:
            body["return_run_details"] = True
        return body

    def attempt(self, trigger: Trigger, deadline: float, budget: float) -> Attempt:
        return self.post(self.dispatch_url, trigger, self.body(trigger), deadline, budget)


class GitHubDispatchTarget(_GitHubTarget):
    """``repository_dispatch``: an ``event_type`` with the payload as ``client_payload``."""

    kind = "github_dispatch"

    def __init__(self, spec: TargetSpec) -> None:
        super().__init__(spec)
        assert spec.event_type is not None
        self.dispatch_url = f"{self.repo_url}/dispatches"
        self.event_type = spec.event_type

    def body(self, trigger: Trigger) -> dict[str, Any]:
        return {"event_type": self.event_type, "client_payload": client_payload(trigger)}

    def attempt(self, trigger: Trigger, deadline: float, budget: float) -> Attempt:
        return self.post(self.dispatch_url, trigger, self.body(trigger), deadline, budget)
