"""GitLab: a pipeline started with a trigger token, as the Pipeline trigger tokens API
documents it ("Trigger a pipeline with a token").

``POST {base_url}/api/v4/projects/{id}/trigger/pipeline``, where ``id`` is the project's
number or its URL-encoded path (``group%2Fproject``); the base URL is
``https://gitlab.com`` or a self-managed instance's. The body is a form
(``application/x-www-form-urlencoded``): ``token`` (the trigger token — in the body,
never in the URL, where proxies log it), ``ref`` and ``variables[NAME]`` strings:
``MLWATCH_IDEMPOTENCY_KEY``, ``MLWATCH_MODEL``, ``MLWATCH_VERSION``,
``MLWATCH_CODE_VERSION``, ``MLWATCH_RUN_ID``, ``MLWATCH_REASON``, ``MLWATCH_CAUSE``,
``MLWATCH_EVIDENCE`` (JSON), ``MLWATCH_CREATED``, ``MLWATCH_STATUS_URL``, then the
target's own ``variables``. ``Idempotency-Key`` goes as a header too.

GitLab answers 201 with the pipeline; its ``web_url`` is the Attempt's reference. A
wrong token is a 404, an unknown ref a 400 (``{"message": {"base": ["Reference not
found"]}}``): both rejected with GitLab's message.
"""

from __future__ import annotations

from urllib.parse import quote, urlencode

from mlwatch.alerting.targets.request import HttpTarget, as_text
from mlwatch.alerting.trigger import Attempt, Trigger
from mlwatch.settings.targets import TargetSpec


def variables(trigger: Trigger) -> dict[str, str]:
    """``MLWATCH_<KEY>`` for each key of ``Trigger.payload()``, as strings.

    >>> from mlwatch.alerting.trigger import Trigger
    >>> v = variables(Trigger(key="k", model="m", version="1", reason="r", cause="c"))
    >>> v["MLWATCH_IDEMPOTENCY_KEY"], v["MLWATCH_EVIDENCE"], v["MLWATCH_RUN_ID"]
    ('k', '{}', '')
    """
    return {f"MLWATCH_{k.upper()}": as_text(v) for k, v in trigger.payload().items()}


class GitLabTarget(HttpTarget):
    """A GitLab pipeline trigger."""

    kind = "gitlab"

    def __init__(self, spec: TargetSpec) -> None:
        super().__init__(spec)
        assert spec.project is not None and spec.ref is not None and spec.token is not None
        project = quote(spec.project, safe="")
        self.trigger_url = f"{spec.url}/api/v4/projects/{project}/trigger/pipeline"
        self.ref = spec.ref
        self.extra = spec.extra
        self._token = spec.token
        self.hide(spec.token, quote(spec.token, safe=""))

    def form(self, trigger: Trigger) -> list[tuple[str, str]]:
        fields = [("token", self._token), ("ref", self.ref)]
        values = {**variables(trigger), **dict(self.extra)}
        fields += [(f"variables[{name}]", value) for name, value in values.items()]
        return fields

    def attempt(self, trigger: Trigger, deadline: float, budget: float) -> Attempt:
        body = urlencode(self.form(trigger)).encode()
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
            "Idempotency-Key": trigger.key,
        }
        answer = self.call("POST", self.trigger_url, headers, body, deadline, budget)
        if isinstance(answer, Attempt):
            return answer
        doc = answer.json() if 200 <= answer.status < 300 else None
        reference = doc.get("web_url") if isinstance(doc, dict) else None
        return self.judged(
            "POST", self.trigger_url, answer, reference if isinstance(reference, str) else None
        )
