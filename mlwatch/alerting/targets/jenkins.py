"""Jenkins: ``buildWithParameters`` through the Remote access API.

``POST {job_url}/buildWithParameters`` (the job's URL, also in folders:
``https://ci/job/ml/job/retrain``) with the parameters as a form
(``application/x-www-form-urlencoded``): ``MLWATCH_IDEMPOTENCY_KEY``, ``MLWATCH_MODEL``,
… ``MLWATCH_EVIDENCE`` (JSON) as for GitLab, then the target's own ``parameters``. The
job must declare them (Jenkins drops parameters a job does not define).
``Authorization: Basic user:secret`` and ``Idempotency-Key``.

- With an API token (``api_token_env``/``_file``): basic auth alone; Jenkins (2.96 and
  later) needs no CSRF crumb for API-token requests.
- With a password (``password_env``/``_file``): first ``GET {root}/crumbIssuer/api/json``
  (``root`` is the job URL up to its first ``/job/``), whose answer names the crumb
  header (``crumbRequestField``, usually ``Jenkins-Crumb``) and sets the session cookie
  the crumb belongs to; the POST then carries the crumb and that same cookie. A 404 from
  the crumb issuer means CSRF protection is off: the POST goes without a crumb.

Both requests share the attempt's one deadline. Jenkins answers 201 with ``Location``,
the queue item (``{root}/queue/item/42/``): the Attempt's reference.
"""

from __future__ import annotations

import base64
import re
from http.cookies import CookieError, SimpleCookie
from urllib.parse import urlencode

from mlwatch.alerting.targets.gitlab import variables
from mlwatch.alerting.targets.request import Answer, HttpTarget
from mlwatch.alerting.trigger import Attempt, Outcome, Trigger
from mlwatch.settings.targets import TargetSpec

_HEADER_NAME = re.compile(r"[A-Za-z0-9-]{1,64}")


def session_cookie(answer: Answer) -> str:
    """The ``Cookie`` header that sends back every cookie ``answer`` set."""
    jar: SimpleCookie = SimpleCookie()
    for header in answer.headers.get_all("Set-Cookie") or []:
        try:
            jar.load(str(header))
        except CookieError:
            continue
    return "; ".join(f"{name}={morsel.value}" for name, morsel in jar.items())


class JenkinsTarget(HttpTarget):
    """A parameterized Jenkins job."""

    kind = "jenkins"

    def __init__(self, spec: TargetSpec) -> None:
        super().__init__(spec)
        secret = spec.token or spec.password
        assert spec.user is not None and secret is not None
        self.root = spec.url[: (spec.url + "/").index("/job/")]
        self.build_url = f"{spec.url}/buildWithParameters"
        self.crumb_url = f"{self.root}/crumbIssuer/api/json"
        self.crumb_flow = spec.password is not None
        self.extra = spec.extra
        basic = base64.b64encode(f"{spec.user}:{secret}".encode()).decode()
        self._auth = f"Basic {basic}"
        self.hide(secret, basic)

    def parameters(self, trigger: Trigger) -> list[tuple[str, str]]:
        return list({**variables(trigger), **dict(self.extra)}.items())

    def attempt(self, trigger: Trigger, deadline: float, budget: float) -> Attempt:
        headers = {
            "Authorization": self._auth,
            "Content-Type": "application/x-www-form-urlencoded",
            "Idempotency-Key": trigger.key,
        }
        if self.crumb_flow:
            crumb = self.crumb(deadline, budget)
            if isinstance(crumb, Attempt):
                return crumb
            headers.update(crumb)
        body = urlencode(self.parameters(trigger)).encode()
        answer = self.call("POST", self.build_url, headers, body, deadline, budget)
        if isinstance(answer, Attempt):
            return answer
        location = answer.header("Location") if answer.status == 201 else None
        return self.judged("POST", self.build_url, answer, location)

    def crumb(self, deadline: float, budget: float) -> dict[str, str] | Attempt:
        """The crumb header and the session cookie it belongs to (none when Jenkins has
        CSRF protection off), or the Attempt that ends this one."""
        headers = {"Authorization": self._auth, "Accept": "application/json"}
        answer = self.call("GET", self.crumb_url, headers, None, deadline, budget)
        if isinstance(answer, Attempt):
            return answer
        if answer.status == 404:
            return {}
        if not 200 <= answer.status < 300:
            return self.judged("GET", self.crumb_url, answer)
        doc = answer.json()
        field = doc.get("crumbRequestField") if isinstance(doc, dict) else None
        value = doc.get("crumb") if isinstance(doc, dict) else None
        if not (
            isinstance(field, str) and _HEADER_NAME.fullmatch(field) and isinstance(value, str)
        ):
            return Attempt(
                Outcome.REJECTED,
                answer.status,
                f"GET {self.crumb_url}: HTTP {answer.status} without a crumb "
                "(expected {crumb, crumbRequestField}): is url a Jenkins job?",
            )
        out = {field: value}
        cookie = session_cookie(answer)
        if cookie:
            out["Cookie"] = cookie
        return out
