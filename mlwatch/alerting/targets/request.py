"""One bounded HTTP attempt at a CI/CD provider, and what its answer means.

Every target goes through :func:`exchange`: one connection per request (triggers are
rare), TLS verified (the system's CAs, or the target's ``ca_file``), redirects never
followed (a credential is never sent on to another address), and the whole request —
connect, send, the answer's head and body — over by one deadline per attempt (the
answer is read through :class:`~mlwatch.client.answers.DeadlineResponse`, so a peer
that trickles bytes cannot hold the outbox). At most
:data:`~mlwatch.client.answers.MAX_ANSWER_BYTES` (64 KiB) of any answer is read.

:func:`judge` turns a status into an :class:`~mlwatch.alerting.trigger.Outcome`: 2xx
delivered; 408, 429 and 5xx retried (with the ``Retry-After`` the provider sent); a
redirect or any other 4xx rejected with the provider's message. A connection error or
timeout is retried (:func:`unreachable`). Details are bounded and every secret of the
target (and its basic-auth form) is masked out of them, even when a provider echoes it.

>>> judge(429, "busy", where="POST https://ci/x", retry_after="7").retry_after_s
7.0
>>> judge(422, "No ref found for: nope", where="POST https://ci/x").outcome
<Outcome.REJECTED: 'rejected'>
>>> scrub("token s3cr3t!", ["s3cr3t"])
'token ***!'
"""

from __future__ import annotations

import functools
import html
import http.client
import json
import logging
import math
import re
import socket
import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass
from email.message import Message
from typing import Any
from urllib.parse import urlsplit

from mlwatch.alerting.trigger import Attempt, Outcome, Trigger
from mlwatch.client.answers import MAX_ANSWER_BYTES, DeadlineResponse, read_answer
from mlwatch.client.transport import retry_after_s
from mlwatch.settings.targets import TargetSpec

logger = logging.getLogger("mlwatch.alerting.targets")

#: The most characters of a provider's message kept in an Attempt's detail.
MESSAGE_CHARS = 400
RETRYABLE = frozenset({408, 429})
_TAG = re.compile(r"<[^>]*>")
_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_SPACE = re.compile(r"\s+")

__all__ = ["MAX_ANSWER_BYTES", "Answer", "HttpTarget", "exchange", "judge", "scrub"]


@dataclass(frozen=True)
class Answer:
    """A provider's answer: status, headers, at most 64 KiB of body (``whole`` says
    whether that was all of it)."""

    status: int
    headers: Message
    body: bytes
    whole: bool = True

    def header(self, name: str) -> str | None:
        value = self.headers.get(name)
        return None if value is None else str(value)

    def json(self) -> Any:
        """The body as JSON, or None when it is not (or was cut short)."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None


class _Response(DeadlineResponse):
    """A :class:`DeadlineResponse` that holds the socket's descriptor open: on an answer
    with ``Connection: close`` http.client closes the connection before the body is read,
    and the deadline reader reads the socket itself (not a file object that would keep
    it open)."""

    def __init__(self, sock: socket.socket, *args: Any, **kwargs: Any) -> None:
        self._hold = sock.makefile("rb")
        super().__init__(sock, *args, **kwargs)

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._hold.close()


def user_agent() -> str:
    from mlwatch.client.identity import package_version

    return f"mlwatch/{package_version()}"


def exchange(
    method: str,
    url: str,
    *,
    headers: dict[str, str],
    body: bytes | None = None,
    deadline: float,
    ca_file: str | None = None,
) -> Answer:
    """One request, over by ``deadline`` (``time.monotonic()`` seconds). Raises
    ``OSError`` (``TimeoutError``, ``ssl.SSLError``, refused) or
    ``http.client.HTTPException`` when no complete answer came."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("no time left for the attempt")
    conn: Any
    if parts.scheme == "https":
        context = ssl.create_default_context(cafile=ca_file)
        conn = http.client.HTTPSConnection(host, parts.port, timeout=left, context=context)
    else:
        conn = http.client.HTTPConnection(host, parts.port, timeout=left)
    conn.response_class = functools.partial(_Response, deadline=lambda: deadline)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    resp = None
    try:
        conn.connect()
        conn.sock.settimeout(max(0.001, deadline - time.monotonic()))
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        data, whole = read_answer(resp)
        return Answer(resp.status, resp.headers, data, whole)
    finally:
        if resp is not None:
            resp.close()
        conn.close()


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret replaced by ``***``."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def provider_message(answer: Answer) -> str:
    """What the provider said, in one line: a JSON body's ``message``/``error`` (with
    ``errors``), an HTML page's title, else the text."""
    doc = answer.json()
    if isinstance(doc, dict):
        parts = [doc[k] for k in ("message", "error", "errors") if doc.get(k)]
        if parts:
            text = " ".join(p if isinstance(p, str) else json.dumps(p) for p in parts)
            return _one_line(text)
    text = answer.body.decode("utf-8", "replace")
    if "<" in text and ">" in text:
        title = _TITLE.search(text)
        text = html.unescape(_TAG.sub(" ", title.group(1) if title else text))
    return _one_line(text)


def _one_line(text: str) -> str:
    text = _SPACE.sub(" ", text).strip()
    return text if len(text) <= MESSAGE_CHARS else text[: MESSAGE_CHARS - 1] + "…"


def judge(
    status: int,
    message: str,
    *,
    where: str,
    retry_after: str | None = None,
    reference: str | None = None,
    location: str | None = None,
) -> Attempt:
    """The Attempt an answer makes (``message`` already scrubbed and bounded)."""
    said = f": {message}" if message else ""
    if 200 <= status < 300:  # the provider's words are the build's, not news
        return Attempt(Outcome.DELIVERED, status, f"{where}: HTTP {status}", None, reference)
    wait = retry_after_s(retry_after)
    if status in RETRYABLE or status >= 500 or status < 200:
        return Attempt(Outcome.RETRY, status, f"{where}: HTTP {status}{said}", wait)
    if 300 <= status < 400:
        to = f" to {location}" if location else ""
        return Attempt(
            Outcome.REJECTED,
            status,
            f"{where}: HTTP {status}, redirected{to}: redirects are not followed (a "
            "credential is never sent on); set the target's URL to the final address",
        )
    return Attempt(Outcome.REJECTED, status, f"{where}: HTTP {status}{said}", wait)


def unreachable(exc: BaseException, where: str, timeout_s: float) -> Attempt:
    """A connection error or timeout: try again later."""
    if isinstance(exc, TimeoutError):
        why = f"no complete answer within {timeout_s:g}s"
    elif isinstance(exc, ssl.SSLCertVerificationError):
        why = f"TLS certificate not trusted ({exc.verify_message}; ca_file names a CA bundle)"
    elif isinstance(exc, ConnectionRefusedError):
        why = "connection refused"
    else:
        why = _one_line(f"{type(exc).__name__}: {exc}")
    return Attempt(Outcome.RETRY, None, f"{where}: {why}")


def jsonable(value: Any) -> Any:
    """``value`` as JSON can hold it: non-finite numbers become null, tuples lists,
    other objects their ``str`` (evidence comes from statistics and alert labels)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def dumps(value: Any) -> str:
    """Compact JSON of :func:`jsonable` ``value``."""
    return json.dumps(jsonable(value), separators=(",", ":"), ensure_ascii=False)


def as_text(value: Any) -> str:
    """A payload value as a string input/variable/parameter: "" for None, JSON for an
    object or list, else ``str``."""
    if value is None:
        return ""
    if isinstance(value, (dict, list, tuple)):
        return dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class HttpTarget:
    """What every target shares: ``name`` and ``kind``, the dry run, the attempt's
    deadline, secrets masked out of every detail, and :meth:`send` never raising."""

    kind = ""

    def __init__(self, spec: TargetSpec) -> None:
        self.name = spec.name
        self.timeout_s = spec.timeout_s
        self.url = spec.url
        self.ca_file = spec.ca_file
        self._secrets: tuple[str, ...] = ()

    def __repr__(self) -> str:  # never a secret
        return f"{type(self).__name__}(name={self.name!r}, url={self.url!r})"

    def hide(self, *secrets: str | None) -> None:
        """Mask these in every detail (a target passes each secret and the forms it
        sends it in: a basic-auth header's base64, a webhook key's)."""
        self._secrets = tuple(s for s in (*self._secrets, *secrets) if s)

    def send(self, trigger: Trigger, *, timeout_s: float) -> Attempt:
        """One attempt, over within ``timeout_s`` (or the target's own, if shorter)."""
        budget = max(0.0, min(self.timeout_s, timeout_s))
        if trigger.dry_run:
            return Attempt(Outcome.DELIVERED, None, f"dry run: nothing sent to {self.url}")
        try:
            attempt = self.attempt(trigger, time.monotonic() + budget, budget)
        except Exception as exc:  # a bug of ours must not take the outbox down
            attempt = Attempt(
                Outcome.REJECTED,
                None,
                f"mlwatch could not make the request: {type(exc).__name__}: {exc}",
            )
        attempt = Attempt(
            attempt.outcome,
            attempt.status,
            scrub(attempt.detail, self._secrets),
            attempt.retry_after_s,
            None if attempt.reference is None else scrub(attempt.reference, self._secrets),
        )
        logger.debug(
            "mlwatch: target %s (%s): %s: %s",
            self.name,
            self.kind,
            attempt.outcome.value,
            attempt.detail,
        )
        return attempt

    def attempt(self, trigger: Trigger, deadline: float, budget: float) -> Attempt:
        raise NotImplementedError

    def call(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        body: bytes | None,
        deadline: float,
        budget: float,
    ) -> Answer | Attempt:
        """One exchange: its Answer, or the RETRY Attempt of a connection error."""
        headers = {"User-Agent": user_agent(), **headers}
        try:
            return exchange(
                method, url, headers=headers, body=body, deadline=deadline, ca_file=self.ca_file
            )
        except (OSError, http.client.HTTPException) as exc:
            return unreachable(exc, f"{method} {url}", budget)

    def judged(
        self, method: str, url: str, answer: Answer, reference: str | None = None
    ) -> Attempt:
        """The usual reading of an answer."""
        return judge(
            answer.status,
            scrub(provider_message(answer), self._secrets),
            where=f"{method} {url}",
            retry_after=answer.header("Retry-After"),
            reference=reference,
            location=answer.header("Location"),
        )
