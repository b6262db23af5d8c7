"""Grafana's HTTP API as mlwatch uses it: the service-account token, one session,
Grafana's refusals translated into mlwatch errors, and :func:`annotate`, which marks a
retrain trigger on the dashboards.

The token comes from ``MLWATCH_GRAFANA_TOKEN``, or from the file ``MLWATCH_GRAFANA_TOKEN_FILE``
names. It is sent as ``Authorization: Bearer`` and never written anywhere: no log record
and no error message holds it (a message that would is scrubbed first).

>>> grafana_token({"MLWATCH_GRAFANA_TOKEN": " glsa_x \\n"})
'glsa_x'
>>> grafana_token({})
Traceback (most recent call last):
...
mlwatch.errors.ConfigError: MLWATCH_GRAFANA_TOKEN: no Grafana service-account token: set MLWATCH_GRAFANA_TOKEN or MLWATCH_GRAFANA_TOKEN_FILE
"""

from __future__ import annotations

import os
from collections.abc import Callable, Container, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mlwatch.errors import ConfigError, GrafanaError

TOKEN_ENV = "MLWATCH_GRAFANA_TOKEN"
TOKEN_FILE_ENV = "MLWATCH_GRAFANA_TOKEN_FILE"
#: seconds to connect and to read each answer
DEFAULT_TIMEOUT = 10.0


def grafana_token(environ: Mapping[str, str] | None = None) -> str:
    """The service-account token from the environment (``MLWATCH_GRAFANA_TOKEN``, else the
    file ``MLWATCH_GRAFANA_TOKEN_FILE``), stripped of surrounding white space."""
    env = os.environ if environ is None else environ
    token = env.get(TOKEN_ENV, "").strip()
    if token:
        return token
    path = env.get(TOKEN_FILE_ENV, "").strip()
    if not path:
        raise ConfigError(
            TOKEN_ENV, f"no Grafana service-account token: set {TOKEN_ENV} or {TOKEN_FILE_ENV}"
        )
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(TOKEN_FILE_ENV, f"cannot read it: {exc.strerror}", source=path) from exc
    if not token:
        raise ConfigError(TOKEN_FILE_ENV, "the file is empty", source=path)
    return token


@dataclass(frozen=True)
class Refusal:
    """Grafana's answer with an error status: the status and the decoded body."""

    status: int
    body: Any

    @property
    def status_word(self) -> str:
        """Grafana's ``status`` field (``version-mismatch``, ``name-exists``...), or ""."""
        return str(self.body.get("status", "")) if isinstance(self.body, dict) else ""

    @property
    def text(self) -> str:
        """Grafana's message, with its status word when it has one."""
        if isinstance(self.body, dict):
            message = str(self.body.get("message") or self.body)
            return f"{message} ({self.status_word})" if self.status_word else message
        return str(self.body)[:500]


class Grafana:
    """One session with a Grafana at ``url`` (``http(s)://host[:port][/sub/path]``).

    :meth:`call` runs one request of ``grafana-client`` and turns whatever goes wrong into a
    :class:`~mlwatch.errors.GrafanaError` that says what was being done and Grafana's
    answer; 401 and 403 say the token was refused. Close it (or use ``with``).
    """

    def __init__(self, url: str, token: str, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError("url", f"not an http(s) URL of Grafana: {url!r}")
        if not token:
            raise ConfigError(TOKEN_ENV, "the Grafana token is empty")
        from grafana_client.api import GrafanaApi  # an extra: imported only when syncing

        prefix = parts.path.strip("/")
        self.url = f"{parts.scheme}://{parts.netloc}/{prefix + '/' if prefix else ''}"
        self._token = token
        self.api = GrafanaApi(
            auth=token,
            host=parts.hostname,
            port=parts.port,
            # grafana-client joins the prefix and "api" without a slash
            url_path_prefix=prefix + "/" if prefix else "",
            protocol=parts.scheme,
            timeout=timeout,
        )

    def close(self) -> None:
        self.api.client.s.close()

    def __enter__(self) -> Grafana:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(
        self,
        what: str,
        request: Callable[..., Any],
        *args: Any,
        allow: Container[int] = (),
        **kwargs: Any,
    ) -> Any:
        """``request(*args, **kwargs)``, a method of ``self.api``; ``what`` names the object
        in errors ("dashboard 'x'"). Grafana's refusals with a status in ``allow`` come back
        as a :class:`Refusal`; any other raises ``GrafanaError``."""
        from grafana_client.client import GrafanaException

        try:
            return request(*args, **kwargs)
        except GrafanaException as exc:
            refusal = Refusal(exc.status_code, exc.response)
            if exc.status_code in allow:
                return refusal
            raise self.error(what, refusal, exc.message) from exc
        except Exception as exc:  # the HTTP library's own errors: no answer at all
            message = f"{what}: no answer from Grafana at {self.url} ({type(exc).__name__}: {exc})"
            raise GrafanaError(self._scrub(message)) from exc

    def error(self, what: str, refusal: Refusal, detail: str = "") -> GrafanaError:
        """The error for Grafana's ``refusal`` of the request about ``what``."""
        status = refusal.status
        if status in (401, 403):
            verdict = "refused" if status == 401 else "lacks the permission for this"
            message = (
                f"{what}: Grafana at {self.url} answered {status}: the service-account token "
                f"({TOKEN_ENV}) is {verdict}"
            )
        elif status == 0:
            message = f"{what}: no answer from Grafana at {self.url}: {detail}"
        else:
            message = f"{what}: Grafana at {self.url} answered {status}: {refusal.text}"
        return GrafanaError(self._scrub(message))

    def _scrub(self, message: str) -> str:
        return message.replace(self._token, "<token>")


def annotate(
    text: str,
    tags: Sequence[str],
    time_ms: int,
    dashboard_uid: str | None = None,
    *,
    url: str,
    token: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> int:
    """Mark ``time_ms`` (epoch milliseconds) with ``text`` and ``tags`` in Grafana: on one
    dashboard, or for the whole organization when ``dashboard_uid`` is None. Returns the
    annotation's id."""
    with Grafana(url, grafana_token() if token is None else token, timeout=timeout) as grafana:
        answer = grafana.call(
            f"annotation {text[:40]!r}",
            grafana.api.annotations.add_annotation,
            dashboard_uid=dashboard_uid,
            time_from=int(time_ms),
            tags=list(tags),
            text=text,
        )
    return int(answer["id"])
