"""The ``targets`` list of a config file: where retraining is started (GitHub Actions,
GitLab, Jenkins, a signed webhook), each with its secret from the environment or a file.

A target is ``{name, kind, ...}``; the keys each kind takes are in :data:`KIND_KEYS`.
A secret (``token``, ``api_token``, ``password``, ``secret``) is never written in the
file: ``token_env: GITHUB_TOKEN`` names an environment variable, ``token_file: /run/...``
a file that holds it (a Kubernetes or Docker secret). Secrets are read when the config
is loaded, kept out of every ``repr`` and never put in a message.

>>> [t.kind for t in parse_targets([{"name": "hook", "kind": "webhook",
...     "url": "https://ci.example/hook", "secret_env": "HOOK_SECRET"}], "mlwatch.yaml",
...     env={"HOOK_SECRET": "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"})]
['webhook']
"""

from __future__ import annotations

import base64
import binascii
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mlwatch.errors import ConfigError, did_you_mean
from mlwatch.wire import NAME_RE

#: The header GitHub's REST API is called with (``X-GitHub-Api-Version``).
GITHUB_API_VERSION = "2022-11-28"
GITHUB_URL = "https://api.github.com"
GITLAB_URL = "https://gitlab.com"
#: GitHub's documented limit of ``inputs`` of a workflow_dispatch (25 on github.com
#: since 2025; 10 before, and on older GitHub Enterprise Server releases). mlwatch sends
#: eight of its own (:data:`GITHUB_INPUTS`).
GITHUB_MAX_INPUTS = 25
#: The inputs mlwatch sends to a workflow_dispatch, in this order (all strings; the
#: evidence as JSON). The workflow must declare each of them under ``workflow_dispatch``.
GITHUB_INPUTS = (
    "idempotency_key",
    "model",
    "version",
    "code_version",
    "run_id",
    "reason",
    "evidence",
    "status_url",
)
#: The most bytes a Standard Webhooks secret has (the spec: 24 to 64).
WEBHOOK_SECRET_BYTES = (24, 64)
DEFAULT_TIMEOUT_S = 10.0
MAX_TIMEOUT_S = 300.0
#: The CloudEvents ``source`` when the target names none.
DEFAULT_SOURCE = "/mlwatch"

KINDS = ("github_workflow", "github_dispatch", "gitlab", "jenkins", "webhook")
#: Every secret a target can have, and the kinds that take it.
SECRETS = {
    "token": ("github_workflow", "github_dispatch", "gitlab"),
    "api_token": ("jenkins",),
    "password": ("jenkins",),
    "secret": ("webhook",),
}
COMMON_KEYS = frozenset({"name", "kind", "timeout_s", "ca_file"})


def _with_secrets(kind: str, *keys: str) -> frozenset[str]:
    names = [s for s, kinds in SECRETS.items() if kind in kinds]
    return frozenset(
        {*COMMON_KEYS, *keys, *(f"{s}_{how}" for s in names for how in ("env", "file"))}
    )


KIND_KEYS = {
    "github_workflow": _with_secrets(
        "github_workflow",
        "base_url",
        "repo",
        "workflow",
        "ref",
        "inputs",
        "api_version",
        "return_run_details",
    ),
    "github_dispatch": _with_secrets(
        "github_dispatch", "base_url", "repo", "event_type", "api_version"
    ),
    "gitlab": _with_secrets("gitlab", "base_url", "project", "ref", "variables"),
    "jenkins": _with_secrets("jenkins", "url", "user", "parameters"),
    "webhook": _with_secrets("webhook", "url", "source"),
}
#: The key of each kind's extra values (sent besides mlwatch's own).
EXTRA_KEYS = {"github_workflow": "inputs", "gitlab": "variables", "jenkins": "parameters"}

_REPO = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*/[A-Za-z0-9._-]+")
_WORKFLOW = re.compile(r"[0-9]+|[\w.-]+\.ya?ml")
_API_VERSION = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_GITHUB_INPUT = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_GITLAB_VARIABLE = re.compile(r"[A-Za-z0-9_]+")
_JENKINS_PARAMETER = re.compile(r"[A-Za-z0-9_.-]+")
_EXTRA_NAMES = {
    "github_workflow": _GITHUB_INPUT,
    "gitlab": _GITLAB_VARIABLE,
    "jenkins": _JENKINS_PARAMETER,
}


@dataclass(frozen=True)
class TargetSpec:
    """One CI/CD target, by name. ``url`` is the API's base URL (GitHub, GitLab), the
    job's URL (Jenkins) or the endpoint (webhook); ``extra`` the inputs, variables or
    parameters sent besides mlwatch's own. Secrets stay out of ``repr``."""

    name: str
    kind: str
    url: str = ""
    timeout_s: float = DEFAULT_TIMEOUT_S
    ca_file: str | None = None  # a CA bundle for a self-hosted server's certificate
    repo: str | None = None  # GitHub "owner/name"
    workflow: str | None = None  # GitHub workflow file name or id
    ref: str | None = None  # the branch or tag (GitHub workflow, GitLab)
    event_type: str | None = None  # GitHub repository_dispatch
    project: str | None = None  # GitLab project id or "group/project"
    user: str | None = None  # Jenkins
    source: str = DEFAULT_SOURCE  # CloudEvents source (webhook)
    api_version: str = GITHUB_API_VERSION
    return_run_details: bool = False  # GitHub answers 200 with the run's URL
    extra: tuple[tuple[str, str], ...] = ()
    token: str | None = field(default=None, repr=False)  # GitHub, GitLab trigger, Jenkins API
    password: str | None = field(default=None, repr=False)  # Jenkins (then the crumb flow)
    secret: str | None = field(default=None, repr=False)  # webhook: whsec_<base64>


def parse_targets(
    raw: Any, source: str, env: Mapping[str, str] | None = None
) -> tuple[TargetSpec, ...]:
    """``targets``; every error names the key (``targets[0].repo``) and the file.
    ``env`` (default ``os.environ``) is where ``<secret>_env`` variables are read."""
    if not isinstance(raw, list):
        raise ConfigError("targets", "expected a list of targets", source=source)
    env = os.environ if env is None else env
    seen: set[str] = set()
    return tuple(
        _Parser(item, f"targets[{i}]", source, env).target(seen) for i, item in enumerate(raw)
    )


class _Parser:
    """One entry of ``targets``, checked key by key."""

    def __init__(self, item: Any, at: str, source: str, env: Mapping[str, str]) -> None:
        if not isinstance(item, dict):
            raise ConfigError(at, "expected a mapping with 'name' and 'kind'", source=source)
        self.item, self.at, self.source, self.env = item, at, source, env

    def fail(self, key: str | None, message: str) -> ConfigError:
        return ConfigError(f"{self.at}.{key}" if key else self.at, message, source=self.source)

    def target(self, seen: set[str]) -> TargetSpec:
        name = self.item.get("name")
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):
            raise self.fail(
                "name", f"expected a name of letters, digits, '_.:-' (at most 128), got {name!r}"
            )
        if name in seen:
            raise self.fail("name", f"target {name!r} is listed twice")
        seen.add(name)
        kind = self.item.get("kind")
        if kind not in KINDS:
            hint = did_you_mean(str(kind), KINDS) if isinstance(kind, str) else ""
            raise self.fail("kind", f"must be one of {', '.join(KINDS)}, got {kind!r}{hint}")
        self._check_keys(kind)
        common: dict[str, Any] = {
            "name": name,
            "kind": kind,
            "timeout_s": self._timeout(),
            "ca_file": self._ca_file(),
        }
        if kind in ("github_workflow", "github_dispatch"):
            return self._github(kind, common)
        if kind == "gitlab":
            return TargetSpec(
                **common,
                url=self._url("base_url", GITLAB_URL),
                project=self._project(),
                ref=self._text("ref", required=True),
                extra=self._extra(kind),
                token=self._secret("token"),
            )
        if kind == "jenkins":
            return self._jenkins(common)
        return self._webhook(common)

    def _check_keys(self, kind: str) -> None:
        allowed = KIND_KEYS[kind]
        for key in self.item:
            if key in SECRETS and kind in SECRETS[key]:
                raise self.fail(
                    key,
                    "a secret is never written in the config file: give the name of an "
                    f"environment variable ({key}_env: VARIABLE) or of a file that holds "
                    f"it ({key}_file: /path)",
                )
            if key not in allowed:
                hint = did_you_mean(str(key), allowed)
                raise self.fail(str(key), f"unknown key for a {kind} target{hint}")

    # --- kinds -------------------------------------------------------------------
    def _github(self, kind: str, common: dict[str, Any]) -> TargetSpec:
        url = self._url("base_url", GITHUB_URL)
        repo = self._text("repo", required=True)
        assert repo is not None
        if not _REPO.fullmatch(repo):
            raise self.fail("repo", f"expected 'owner/name', got {repo!r}")
        api_version = self._text("api_version") or GITHUB_API_VERSION
        if not _API_VERSION.fullmatch(api_version):
            raise self.fail(
                "api_version", f"expected a date such as 2022-11-28, got {api_version!r}"
            )
        if kind == "github_dispatch":
            event_type = self._text("event_type", required=True)
            assert event_type is not None
            if len(event_type) > 100:
                raise self.fail("event_type", "GitHub takes at most 100 characters")
            return TargetSpec(
                **common,
                url=url,
                repo=repo,
                event_type=event_type,
                api_version=api_version,
                token=self._secret("token"),
            )
        workflow = self._text("workflow", required=True)
        assert workflow is not None
        if not _WORKFLOW.fullmatch(workflow):
            raise self.fail(
                "workflow",
                f"expected a workflow file name (retrain.yml) or its numeric id, got {workflow!r}",
            )
        details = self.item.get("return_run_details", url == GITHUB_URL)
        if not isinstance(details, bool):
            raise self.fail("return_run_details", f"expected true or false, got {details!r}")
        return TargetSpec(
            **common,
            url=url,
            repo=repo,
            workflow=workflow,
            ref=self._text("ref", required=True),
            api_version=api_version,
            return_run_details=details,
            extra=self._extra(kind),
            token=self._secret("token"),
        )

    def _jenkins(self, common: dict[str, Any]) -> TargetSpec:
        url = self._url("url", None)
        if "/job/" not in url + "/":
            raise self.fail(
                "url", f"expected the job's URL (https://ci.example/job/retrain), got {url!r}"
            )
        user = self._text("user", required=True)
        has = [
            s
            for s in ("api_token", "password")
            if f"{s}_env" in self.item or f"{s}_file" in self.item
        ]
        if len(has) != 1:
            raise self.fail(
                None,
                "a jenkins target needs exactly one of an API token (api_token_env or "
                "api_token_file: basic auth) or a password (password_env or password_file: "
                "then the CSRF crumb is fetched first)",
            )
        secret = self._secret(has[0])
        return TargetSpec(
            **common,
            url=url,
            user=user,
            extra=self._extra("jenkins"),
            token=secret if has[0] == "api_token" else None,
            password=secret if has[0] == "password" else None,
        )

    def _webhook(self, common: dict[str, Any]) -> TargetSpec:
        url = self._url("url", None)
        source = self._text("source") or DEFAULT_SOURCE
        if any(c.isspace() for c in source):
            raise self.fail("source", "a CloudEvents source is a URI reference (no spaces)")
        secret = self._secret("secret")
        self._check_whsec(secret)
        return TargetSpec(**common, url=url, source=source, secret=secret)

    # --- values ------------------------------------------------------------------
    def _text(self, key: str, *, required: bool = False) -> str | None:
        raw = self.item.get(key)
        if raw is None:
            if required:
                raise self.fail(key, "is required")
            return None
        if isinstance(raw, bool) or not isinstance(raw, (str, int)) or str(raw).strip() == "":
            raise self.fail(key, f"expected a non-empty string, got {raw!r}")
        return str(raw)

    def _url(self, key: str, default: str | None) -> str:
        raw: Any = self.item.get(key, default)
        if raw is None:
            raise self.fail(key, "is required")
        url = str(raw)
        try:
            parts = urlsplit(url) if isinstance(raw, str) else None
        except ValueError:  # an unclosed IPv6 bracket
            parts = None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise self.fail(key, f"expected an http(s) URL, got {raw!r}")
        if parts.username is not None or parts.password is not None:
            raise self.fail(key, "credentials do not go in the URL: use the target's secret keys")
        if parts.query or parts.fragment:
            raise self.fail(key, "expected a URL without a query or fragment")
        try:
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError:
            raise self.fail(key, f"bad port in {raw!r}") from None
        return url.rstrip("/")

    def _project(self) -> str:
        raw = self.item.get("project")
        if isinstance(raw, int) and not isinstance(raw, bool) and raw > 0:
            return str(raw)
        if isinstance(raw, str) and re.fullmatch(r"[0-9]+|[\w.-]+(/[\w.-]+)+", raw):
            return raw
        raise self.fail("project", f"expected a project id or path ('group/project'), got {raw!r}")

    def _timeout(self) -> float:
        raw = self.item.get("timeout_s", DEFAULT_TIMEOUT_S)
        ok = isinstance(raw, (int, float)) and not isinstance(raw, bool)
        if not ok or not math.isfinite(raw) or not 0 < raw <= MAX_TIMEOUT_S:
            raise self.fail(
                "timeout_s", f"expected seconds above 0 and at most {MAX_TIMEOUT_S:g}, got {raw!r}"
            )
        return float(raw)

    def _ca_file(self) -> str | None:
        raw = self.item.get("ca_file")
        if raw is None:
            return None
        if not isinstance(raw, str) or not Path(raw).is_file():
            raise self.fail("ca_file", f"expected the path of a CA bundle (PEM), got {raw!r}")
        return raw

    def _extra(self, kind: str) -> tuple[tuple[str, str], ...]:
        key = EXTRA_KEYS[kind]
        raw = self.item.get(key, {})
        if not isinstance(raw, dict):
            raise self.fail(key, "expected a mapping of names to values")
        out = []
        for name, value in raw.items():
            if not isinstance(name, str) or not _EXTRA_NAMES[kind].fullmatch(name):
                raise self.fail(f"{key}.{name}", f"{name!r} is not a valid name here")
            if kind != "github_workflow" and name.upper().startswith("MLWATCH_"):
                raise self.fail(f"{key}.{name}", "names starting with MLWATCH_ are mlwatch's own")
            if kind == "github_workflow" and name in GITHUB_INPUTS:
                raise self.fail(f"{key}.{name}", f"{name!r} is one of the inputs mlwatch sends")
            if isinstance(value, bool):
                text = "true" if value else "false"
            elif isinstance(value, (str, int, float)):
                text = str(value)
            else:
                raise self.fail(f"{key}.{name}", f"expected a string or number, got {value!r}")
            out.append((name, text))
        if kind == "github_workflow" and len(out) + len(GITHUB_INPUTS) > GITHUB_MAX_INPUTS:
            raise self.fail(
                key,
                f"GitHub takes at most {GITHUB_MAX_INPUTS} inputs and mlwatch sends "
                f"{len(GITHUB_INPUTS)}: at most {GITHUB_MAX_INPUTS - len(GITHUB_INPUTS)} more",
            )
        return tuple(out)

    def _secret(self, name: str) -> str:
        """The secret ``name`` from ``<name>_env`` or ``<name>_file`` (never its value in
        a message)."""
        env_key, file_key = f"{name}_env", f"{name}_file"
        if env_key in self.item and file_key in self.item:
            raise self.fail(env_key, f"give {env_key} or {file_key}, not both")
        if env_key in self.item:
            var = self.item[env_key]
            if not isinstance(var, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", var):
                raise self.fail(
                    env_key, f"expected the name of an environment variable, got {var!r}"
                )
            value = self.env.get(var, "")
            if not value:
                raise self.fail(env_key, f"the environment variable {var} is not set or empty")
            return value
        if file_key in self.item:
            path = self.item[file_key]
            if not isinstance(path, str) or not path:
                raise self.fail(file_key, f"expected the path of a file, got {path!r}")
            try:
                value = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
            except (OSError, UnicodeDecodeError) as exc:
                why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
                raise self.fail(file_key, f"cannot read the secret file {path}: {why}") from None
            if not value:
                raise self.fail(file_key, f"the secret file {path} is empty")
            return value
        raise self.fail(
            None,
            f"needs its {name}: {env_key}: VARIABLE (an environment variable) or "
            f"{file_key}: /path (a file that holds it)",
        )

    def _check_whsec(self, secret: str) -> None:
        key = "secret_env" if "secret_env" in self.item else "secret_file"
        lo, hi = WEBHOOK_SECRET_BYTES
        problem = None
        if not secret.startswith("whsec_"):
            problem = "does not start with whsec_"
        else:
            try:
                raw = base64.b64decode(secret[6:], validate=True)
            except (binascii.Error, ValueError):
                problem = "is not whsec_ followed by base64"
            else:
                if not lo <= len(raw) <= hi:
                    problem = f"holds {len(raw)} bytes (the spec asks for {lo} to {hi})"
        if problem:
            raise self.fail(
                key,
                f"the webhook secret {problem}; a Standard Webhooks secret is whsec_ and the "
                f'base64 of {lo} to {hi} random bytes, e.g. from: python -c "import base64, '
                "os; print('whsec_' + base64.b64encode(os.urandom(32)).decode())\"",
            )
