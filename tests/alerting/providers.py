"""Fake CI/CD providers that check every request as GitHub, GitLab, Jenkins and Standard
Webhooks document it, keep state, and refuse anything off-spec with the provider's own
error shape.

Each fake is a real HTTP server on 127.0.0.1 (a free port, a thread; TLS when given a
server context), usable as a context manager. It records every request
(:attr:`FakeProvider.requests`) and the effects it had (workflow runs, dispatches,
pipelines, queue items, events, each with the ``Idempotency-Key`` or ``webhook-id`` it
came with: :meth:`FakeProvider.effect_keys`). :meth:`FakeProvider.fail_next` makes it
answer the next N requests with an outage (500, 503), a 429 with ``Retry-After``, a 422…
in the provider's error shape.

What each checks (the test suite sends each fake deliberately wrong requests and
asserts the refusal, so the checks can fail):

- :class:`FakeGitHub` (REST API, "Create a workflow dispatch event" and "Create a
  repository dispatch event"): POST only, the documented paths (with ``/api/v3`` for
  Enterprise Server), ``User-Agent`` present (403 otherwise, as GitHub), ``Authorization:
  Bearer`` with the right token (401 "Bad credentials"), ``Accept:
  application/vnd.github+json`` (415), ``X-GitHub-Api-Version`` present and supported
  (400; GitHub itself defaults a missing one, this fake is stricter), a JSON object body,
  only the documented keys, ``ref`` given and known, ``inputs`` strings only, at most 25
  (the documented limit; ``max_inputs`` lowers it to 10 as on older Enterprise
  Servers), only inputs the workflow declares (422 "Unexpected inputs provided"),
  ``event_type`` of at most 100 characters and a ``client_payload`` of at most 10
  top-level properties. Answers 204, or 200 with the run's URLs when
  ``return_run_details`` is true.
- :class:`FakeGitLab` ("Trigger a pipeline with a token"): POST
  ``/api/v4/projects/:id/trigger/pipeline`` with the numeric id or the URL-encoded path,
  ``token`` and ``ref`` present (400 "token is missing"), the token right (404), the ref
  known (400 "Reference not found"), ``variables`` a map of strings. Answers 201 with the
  pipeline (``web_url``).
- :class:`FakeJenkins` (Remote access API): ``POST {job}/buildWithParameters`` only (405
  for GET), basic auth with a user's API token or password (401), and with a password a
  crumb from ``/crumbIssuer/api/json`` sent back in the header it names *with the same
  session cookie* (403 "No valid crumb was included in the request"). Undefined
  parameters are dropped, as Jenkins does. Answers 201 with ``Location`` (the queue item;
  identical queued requests share one, as Jenkins merges them).
- :class:`FakeWebhookReceiver` (CloudEvents 1.0 structured JSON, Standard Webhooks): POST
  to its path, ``Content-Type: application/cloudevents+json``, the signature verified
  with the ``standardwebhooks`` package (never mlwatch's code), a CloudEvent with
  ``specversion`` 1.0, non-empty ``id``/``source``/``type``, an RFC 3339 ``time``, and
  ``webhook-id`` equal to the event's ``id``. Duplicate ``webhook-id`` deliveries are
  acknowledged and not acted on twice (as the spec asks of receivers).
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import os
import re
import secrets
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from mlwatch.alerting.trigger import Trigger

__all__ = [
    "WORKFLOW_INPUTS",
    "FakeGitHub",
    "FakeGitLab",
    "FakeJenkins",
    "FakeProvider",
    "FakeWebhookReceiver",
    "Reply",
    "Request",
    "iter_effects",
    "new_whsec",
    "sample_trigger",
    "send_raw",
]

#: The inputs a retraining workflow declares (as docs/retraining.md shows it).
WORKFLOW_INPUTS = (
    "idempotency_key",
    "model",
    "version",
    "code_version",
    "run_id",
    "reason",
    "evidence",
    "status_url",
)


def sample_trigger(**overrides: Any) -> Trigger:
    """A trigger as the policies make one."""
    values: dict[str, Any] = {
        "key": "0190a9e4-7c2b-7d4e-9f00-3b1c2d3e4f50",
        "model": "churn",
        "version": "2026.07.1",
        "reason": "dataset drift share 0.40 >= 0.30",
        "cause": "alert:MlwatchDatasetDrift",
        "evidence": {
            "alert": "MlwatchDatasetDrift",
            "share": 0.4,
            "threshold": 0.3,
            "features": ["age", "plan"],
            "window": {"start": "2026-07-01T00:00:00Z", "end": "2026-07-02T00:00:00Z"},
        },
        "created": "2026-07-02T00:00:05.123456Z",
        "code_version": "a1b2c3d",
        "run_id": "run-17",
        "status_url": "http://mlwatch:8080/v1/models/churn/status",
        "target": "ci",
    }
    values.update(overrides)
    return Trigger(**values)


def new_whsec(n: int = 32) -> str:
    """A Standard Webhooks secret: ``whsec_`` and the base64 of ``n`` random bytes."""
    return "whsec_" + base64.b64encode(os.urandom(n)).decode()


@dataclass
class Request:
    """One request as the fake received it."""

    method: str
    target: str  # the request target: path and query, as sent
    headers: dict[str, str]  # lower-case names
    body: bytes
    status: int = 0  # what the fake answered

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> dict[str, str]:
        return dict(parse_qsl(urlsplit(self.target).query, keep_blank_values=True))

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> list[tuple[str, str]]:
        return parse_qsl(self.body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)

    def media_type(self) -> str:
        return (self.header("Content-Type") or "").split(";")[0].strip().lower()


@dataclass
class Reply:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)


def _json(status: int, doc: Any, *headers: tuple[str, str]) -> Reply:
    return Reply(status, json.dumps(doc).encode(), [("Content-Type", "application/json"), *headers])


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except (OSError, ssl.SSLError):
            self.close_connection = True

    def _any(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        request = Request(self.command, self.path, headers, body)
        reply = self.server.fake.answer(request)
        self.send_response(reply.status)
        for name, value in reply.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(reply.body)
        self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _any

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeProvider
    tls: ssl.SSLContext | None = None

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.tls is None:
            super().finish_request(request, client_address)
            return
        try:
            wrapped = self.tls.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError):
            return  # a client that does not trust our certificate
        try:
            super().finish_request(wrapped, client_address)
        finally:
            wrapped.close()


class FakeProvider:
    """The server, the records and the forced answers; subclasses route requests and
    say how the provider words an error (:meth:`error`)."""

    def __init__(self, *, prefix: str = "", tls: ssl.SSLContext | None = None) -> None:
        self.requests: list[Request] = []
        self.effects: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self._forced: list[Reply] = []
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        self._server.tls = tls
        self.port = int(self._server.server_address[1])
        self.origin = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.prefix = prefix
        self.url = self.origin + prefix
        self._thread: threading.Thread | None = None

    def start(self) -> FakeProvider:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def fail_next(
        self,
        n: int = 1,
        status: int = 500,
        *,
        retry_after: str | None = None,
        message: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer the next ``n`` requests with ``status`` in the provider's error shape
        (and ``Retry-After``, and other ``headers``), whatever they are."""
        text = message or http.HTTPStatus(status).phrase
        with self.lock:
            for _ in range(n):
                reply = self.error(status, text)
                if retry_after is not None:
                    reply.headers.append(("Retry-After", retry_after))
                reply.headers.extend((headers or {}).items())
                self._forced.append(reply)

    def answer(self, request: Request) -> Reply:
        with self.lock:
            self.requests.append(request)
            reply = self._forced.pop(0) if self._forced else self.route(request)
            request.status = reply.status
            return reply

    def route(self, request: Request) -> Reply:
        raise NotImplementedError

    def error(self, status: int, message: str) -> Reply:
        """An error answer in the provider's shape."""
        return _json(status, {"message": message})

    def effect_keys(self) -> list[str]:
        """The idempotency key of each effect, in order (one per build/run/event)."""
        with self.lock:
            return [str(e.get("idempotency_key")) for e in self.effects]


def _basic(request: Request) -> tuple[str, str] | None:
    auth = request.header("Authorization") or ""
    if not auth.startswith("Basic "):
        return None
    try:
        user, _, secret = base64.b64decode(auth[6:], validate=True).decode().partition(":")
    except ValueError:
        return None
    return user, secret


# --- GitHub ------------------------------------------------------------------------


class FakeGitHub(FakeProvider):
    """GitHub's REST API for workflow_dispatch and repository_dispatch (github.com, or
    Enterprise Server under ``/api/v3`` with ``enterprise=True``)."""

    API_VERSIONS = frozenset({"2022-11-28", "2026-03-10"})
    DOCS = "https://docs.github.com/rest/actions/workflows#create-a-workflow-dispatch-event"

    def __init__(
        self,
        *,
        token: str,
        repo: str = "acme/models",
        workflows: dict[str, tuple[str, ...]] | None = None,
        required: tuple[str, ...] = ("idempotency_key", "model"),
        refs: tuple[str, ...] = ("main", "v1.0"),
        max_inputs: int = 25,
        enterprise: bool = False,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(prefix="/api/v3" if enterprise else "", tls=tls)
        self.token = token
        self.repo = repo
        self.workflows = dict(workflows or {"retrain.yml": WORKFLOW_INPUTS})
        self.workflow_ids = {str(1000 + i): name for i, name in enumerate(self.workflows)}
        self.required = required
        self.refs = refs
        self.max_inputs = max_inputs
        self.runs: list[dict[str, Any]] = []
        self.dispatches: list[dict[str, Any]] = []

    def error(self, status: int, message: str) -> Reply:
        return _json(
            status, {"message": message, "documentation_url": self.DOCS, "status": str(status)}
        )

    def route(self, request: Request) -> Reply:
        problem = self._headers(request)
        if problem is not None:
            return problem
        path = request.path
        base = f"{self.prefix}/repos/"
        if not path.startswith(base):
            return self.error(404, "Not Found")
        parts = [unquote(p) for p in path[len(base) :].split("/")]
        if len(parts) < 3 or "/".join(parts[:2]).lower() != self.repo.lower():
            return self.error(404, "Not Found")
        rest = parts[2:]
        if request.method != "POST":
            return self.error(404, "Not Found")
        if rest == ["dispatches"]:
            return self._repository_dispatch(request)
        if (
            len(rest) == 4
            and rest[0] == "actions"
            and rest[1] == "workflows"
            and rest[3] == "dispatches"
        ):
            name = self.workflow_ids.get(rest[2], rest[2])
            if name not in self.workflows:
                return self.error(404, "Not Found")
            return self._workflow_dispatch(request, name)
        return self.error(404, "Not Found")

    def _headers(self, request: Request) -> Reply | None:
        if not request.header("User-Agent"):
            return Reply(
                403,
                b"Request forbidden by administrative rules. Please make sure your request "
                b"has a User-Agent header (https://docs.github.com/en/rest/overview/"
                b"resources-in-the-rest-api#user-agent-required).\n",
                [("Content-Type", "text/plain; charset=utf-8")],
            )
        auth = request.header("Authorization")
        if not auth:
            return self.error(401, "Requires authentication")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() not in ("bearer", "token") or not secrets.compare_digest(
            token.encode(), self.token.encode()
        ):
            return self.error(401, "Bad credentials")
        accept = request.header("Accept")
        if accept != "application/vnd.github+json":
            return self.error(
                415,
                f"Unsupported 'Accept' header: {json.dumps([accept])}. Must accept 'application/vnd.github+json'.",
            )
        version = request.header("X-GitHub-Api-Version")
        if version is None:
            return self.error(
                400, "X-GitHub-Api-Version is required (this fake is stricter than GitHub)"
            )
        if version not in self.API_VERSIONS:
            return self.error(400, f"API version '{version}' is not supported.")
        return None

    def _body(self, request: Request) -> dict[str, Any] | Reply:
        try:
            doc = request.json()
        except ValueError:
            return self.error(400, "Problems parsing JSON")
        if not isinstance(doc, dict):
            return self.error(400, "Problems parsing JSON")
        return doc

    def _check_dispatch(self, doc: dict[str, Any], workflow: str) -> str | None:
        """What GitHub answers 422 about a workflow_dispatch body, or None."""
        invalid = "Invalid request.\n\n"
        for key in doc:
            if key not in ("ref", "inputs", "return_run_details"):
                return f'{invalid}"{key}" is not a permitted key.'
        ref = doc.get("ref")
        if ref is None:
            return f'{invalid}"ref" wasn\'t supplied.'
        if not isinstance(ref, str):
            return f"{invalid}For 'properties/ref', {json.dumps(ref)} is not a string."
        inputs = doc.get("inputs", {})
        if not isinstance(inputs, dict):
            return f"{invalid}For 'properties/inputs', {json.dumps(inputs)} is not an object."
        if len(inputs) > self.max_inputs:
            return f"{invalid}For 'properties/inputs', has more than {self.max_inputs} properties."
        for name, value in inputs.items():
            if not isinstance(value, str):
                return f"{invalid}For 'properties/{name}', {json.dumps(value)} is not a string."
        if not isinstance(doc.get("return_run_details", False), bool):
            return f"{invalid}For 'properties/return_run_details', it is not a boolean."
        if ref.removeprefix("refs/heads/").removeprefix("refs/tags/") not in self.refs:
            return f"No ref found for: {ref}"
        unexpected = sorted(set(inputs) - set(self.workflows[workflow]))
        if unexpected:
            return f"Unexpected inputs provided: {json.dumps(unexpected)}"
        for name in self.required:
            if name in self.workflows[workflow] and not inputs.get(name):
                return f"Required input '{name}' not provided"
        return None

    def _workflow_dispatch(self, request: Request, workflow: str) -> Reply:
        doc = self._body(request)
        if isinstance(doc, Reply):
            return doc
        problem = self._check_dispatch(doc, workflow)
        if problem is not None:
            return self.error(422, problem)
        ref, inputs = doc["ref"], doc.get("inputs", {})
        details = doc.get("return_run_details", False)
        run_id = 7_000_000 + len(self.runs) + 1
        run = {
            "id": run_id,
            "workflow": workflow,
            "ref": ref,
            "inputs": inputs,
            "idempotency_key": inputs.get("idempotency_key"),
            "header_key": request.header("Idempotency-Key"),
        }
        self.runs.append(run)
        self.effects.append(run)
        if not details:
            return Reply(204)
        return _json(
            200,
            {
                "workflow_run_id": run_id,
                "run_url": f"{self.url}/repos/{self.repo}/actions/runs/{run_id}",
                "html_url": f"https://github.com/{self.repo}/actions/runs/{run_id}",
            },
        )

    def _repository_dispatch(self, request: Request) -> Reply:
        doc = self._body(request)
        if isinstance(doc, Reply):
            return doc
        for key in doc:
            if key not in ("event_type", "client_payload"):
                return self.error(422, f'Invalid request.\n\n"{key}" is not a permitted key.')
        event_type = doc.get("event_type")
        if event_type is None:
            return self.error(422, 'Invalid request.\n\n"event_type" wasn\'t supplied.')
        if not isinstance(event_type, str) or not event_type or len(event_type) > 100:
            return self.error(
                422,
                "Invalid request.\n\nFor 'properties/event_type', it must be a string of 1 to 100 characters.",
            )
        payload = doc.get("client_payload", {})
        if not isinstance(payload, dict):
            return self.error(
                422, "Invalid request.\n\nFor 'properties/client_payload', it is not an object."
            )
        if len(payload) > 10:
            return self.error(
                422,
                "Invalid request.\n\nFor 'properties/client_payload', has more than 10 properties.",
            )
        dispatch = {
            "event_type": event_type,
            "client_payload": payload,
            "idempotency_key": payload.get("idempotency_key"),
            "header_key": request.header("Idempotency-Key"),
        }
        self.dispatches.append(dispatch)
        self.effects.append(dispatch)
        return Reply(204)


# --- GitLab ------------------------------------------------------------------------


class FakeGitLab(FakeProvider):
    """GitLab's pipeline trigger API (a self-managed instance's, at its origin)."""

    def __init__(
        self,
        *,
        token: str,
        project_id: int = 42,
        project_path: str = "ml/churn-models",
        refs: tuple[str, ...] = ("main",),
        tls: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(tls=tls)
        self.token = token
        self.project_id = project_id
        self.project_path = project_path
        self.refs = refs
        self.pipelines: list[dict[str, Any]] = []

    def error(self, status: int, message: str) -> Reply:
        return _json(status, {"message": f"{status} {message}" if status >= 500 else message})

    def route(self, request: Request) -> Reply:
        raw = urlsplit(request.target).path  # still URL-encoded: the project id is one segment
        match = re.fullmatch(r"/api/v4/projects/([^/]+)/trigger/pipeline", raw)
        if match is None:
            return _json(404, {"error": "404 Not Found"})
        project = match.group(1)
        if project != str(self.project_id) and unquote(project) != self.project_path:
            return _json(404, {"message": "404 Project Not Found"})
        if request.method != "POST":
            return _json(405, {"error": "405 Not Allowed"})
        params = self._params(request)
        if isinstance(params, Reply):
            return params
        missing = [
            k for k in ("token", "ref") if not isinstance(params.get(k), str) or not params[k]
        ]
        if missing:
            return _json(400, {"error": ", ".join(f"{k} is missing" for k in missing)})
        if not secrets.compare_digest(str(params["token"]).encode(), self.token.encode()):
            return _json(404, {"message": "404 Not Found"})
        variables = params.get("variables", {})
        if not isinstance(variables, dict) or any(
            not isinstance(k, str) or not isinstance(v, str) for k, v in variables.items()
        ):
            return _json(400, {"error": "variables is invalid"})
        if params["ref"] not in self.refs:
            return _json(400, {"message": {"base": ["Reference not found"]}})
        pipeline_id = 900 + len(self.pipelines) + 1
        now = datetime.now().astimezone().isoformat(timespec="milliseconds")
        pipeline = {
            "id": pipeline_id,
            "iid": len(self.pipelines) + 1,
            "project_id": self.project_id,
            "sha": hashlib.sha1(str(pipeline_id).encode()).hexdigest(),
            "ref": params["ref"],
            "status": "created",
            "source": "trigger",
            "created_at": now,
            "updated_at": now,
            "web_url": f"{self.origin}/{self.project_path}/-/pipelines/{pipeline_id}",
        }
        self.pipelines.append({**pipeline, "variables": variables})
        self.effects.append(
            {
                "pipeline": pipeline_id,
                "idempotency_key": variables.get("MLWATCH_IDEMPOTENCY_KEY"),
                "header_key": request.header("Idempotency-Key"),
                "token_in_query": "token" in request.query,
            }
        )
        return _json(201, pipeline)

    def _params(self, request: Request) -> dict[str, Any] | Reply:
        """Query and body parameters, as Grape merges them: a form's ``variables[K]``
        become the ``variables`` hash."""
        params: dict[str, Any] = dict(request.query)
        media = request.media_type()
        if media == "application/json":
            try:
                doc = request.json()
            except ValueError:
                return _json(400, {"error": "400 Bad request - Invalid JSON"})
            if not isinstance(doc, dict):
                return _json(400, {"error": "400 Bad request - Invalid JSON"})
            params.update(doc)
        elif media == "application/x-www-form-urlencoded":
            variables: dict[str, str] = {}
            for key, value in request.form():
                match = re.fullmatch(r"variables\[([^\]]+)\]", key)
                if match:
                    variables[match.group(1)] = value
                else:
                    params[key] = value
            if variables:
                params["variables"] = variables
        elif request.body:
            return _json(415, {"error": "415 Unsupported Media Type"})
        return params


# --- Jenkins -----------------------------------------------------------------------


def _jenkins_page(status: int, message: str) -> Reply:
    page = (
        f"<html><head><meta http-equiv='Content-Type' content='text/html;charset=utf-8'/>"
        f"<title>Error {status} {message}</title></head><body><h2>HTTP ERROR {status} "
        f"{message}</h2><table><tr><th>URI:</th><td>/</td></tr><tr><th>STATUS:</th><td>"
        f"{status}</td></tr><tr><th>MESSAGE:</th><td>{message}</td></tr></table></body></html>"
    )
    return Reply(status, page.encode(), [("Content-Type", "text/html;charset=utf-8")])


class FakeJenkins(FakeProvider):
    """A Jenkins controller under ``/jenkins`` with parameterized jobs, users with API
    tokens or passwords, and the default crumb issuer (crumbs bound to the session)."""

    def __init__(
        self,
        *,
        api_tokens: dict[str, str] | None = None,
        passwords: dict[str, str] | None = None,
        jobs: dict[str, tuple[str, ...]] | None = None,
        csrf: bool = True,
        prefix: str = "/jenkins",
        tls: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(prefix=prefix, tls=tls)
        self.api_tokens = dict(api_tokens or {})
        self.passwords = dict(passwords or {})
        self.jobs = dict(jobs or {"job/retrain": ()})  # path -> defined parameters ("" = any)
        self.csrf = csrf
        self.sessions: dict[str, dict[str, str]] = {}  # session id -> {user, crumb}
        self.queue: list[dict[str, Any]] = []
        self.cookie_name = "JSESSIONID." + secrets.token_hex(4)

    def error(self, status: int, message: str) -> Reply:
        return _jenkins_page(status, message)

    def _user(self, request: Request) -> tuple[str, str] | Reply | None:
        """(user, "token" or "password"), a 401 page, or None when anonymous."""
        creds = _basic(request)
        if creds is None:
            return None
        user, secret = creds
        if user in self.api_tokens and secrets.compare_digest(self.api_tokens[user], secret):
            return user, "token"
        if user in self.passwords and secrets.compare_digest(self.passwords[user], secret):
            return user, "password"
        return _jenkins_page(401, f"Invalid password/token for user: {user}")

    def _session(self, request: Request) -> str | None:
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(request.header("Cookie") or "")
        except CookieError:
            return None
        morsel = jar.get(self.cookie_name)
        return morsel.value if morsel is not None and morsel.value in self.sessions else None

    def route(self, request: Request) -> Reply:
        path = request.path
        if not path.startswith(self.prefix + "/"):
            return _jenkins_page(404, "Not Found")
        rel = path[len(self.prefix) + 1 :].rstrip("/")
        who = self._user(request)
        if isinstance(who, Reply):
            return who
        if rel == "crumbIssuer/api/json":
            return self._crumb(request, who)
        job, _, action = rel.rpartition("/")
        if action != "buildWithParameters" or job not in self.jobs:
            return _jenkins_page(404, "Not Found")
        if request.method != "POST":
            return _jenkins_page(405, "Method Not Allowed")
        if who is None:
            return _jenkins_page(
                403, "Authentication required: anonymous is missing the Job/Build permission"
            )
        user, how = who
        if self.csrf and how == "password":
            session = self._session(request)
            crumb = request.header("Jenkins-Crumb")
            known = self.sessions.get(session or "")
            if (
                crumb is None
                or known is None
                or known["user"] != user
                or not secrets.compare_digest(known["crumb"], crumb)
            ):
                return _jenkins_page(403, "No valid crumb was included in the request")
        return self._enqueue(request, job, user)

    def _crumb(self, request: Request, who: tuple[str, str] | None) -> Reply:
        if not self.csrf:
            return _jenkins_page(404, "Not Found")
        if request.method != "GET":
            return _jenkins_page(405, "Method Not Allowed")
        if who is None:
            return _jenkins_page(401, "Authentication required")
        session = self._session(request)
        headers = []
        if session is None:
            session = secrets.token_urlsafe(16)
            self.sessions[session] = {"user": who[0], "crumb": secrets.token_hex(32)}
            headers.append(
                ("Set-Cookie", f"{self.cookie_name}={session}; Path={self.prefix}/; HttpOnly")
            )
        doc = {
            "_class": "hudson.security.csrf.DefaultCrumbIssuer",
            "crumb": self.sessions[session]["crumb"],
            "crumbRequestField": "Jenkins-Crumb",
        }
        return _json(200, doc, *headers)

    def _enqueue(self, request: Request, job: str, user: str) -> Reply:
        media = request.media_type()
        if request.body and media != "application/x-www-form-urlencoded":
            return _jenkins_page(400, "Nothing is submitted")
        values = [*request.query.items(), *request.form()]
        defined = self.jobs[job]
        params = {k: v for k, v in values if not defined or k in defined}
        ignored = sorted({k for k, _ in values} - set(params))
        for item in self.queue:  # Jenkins merges an identical queued request
            if item["job"] == job and item["params"] == params and not item["started"]:
                return Reply(201, headers=[("Location", item["location"])])
        number = 100 + len(self.queue) + 1
        item = {
            "id": number,
            "job": job,
            "user": user,
            "params": params,
            "ignored": ignored,
            "started": False,
            "location": f"{self.url}/queue/item/{number}/",
            "idempotency_key": params.get("MLWATCH_IDEMPOTENCY_KEY"),
            "header_key": request.header("Idempotency-Key"),
        }
        self.queue.append(item)
        self.effects.append(item)
        return Reply(201, headers=[("Location", item["location"])])


# --- Standard Webhooks + CloudEvents -----------------------------------------------


class FakeWebhookReceiver(FakeProvider):
    """A receiver of signed CloudEvents (as Argo Events or a small service would be)."""

    def __init__(
        self,
        *,
        secret: str,
        path: str = "/hooks/retrain",
        event_type: str = "io.mlwatch.retrain.requested",
        tls: ssl.SSLContext | None = None,
    ) -> None:
        from standardwebhooks import Webhook

        super().__init__(tls=tls)
        self.webhook = Webhook(secret)
        self.hook_path = path
        self.url = self.origin + path
        self.event_type = event_type
        self.events: dict[str, dict[str, Any]] = {}
        self.duplicates = 0

    def error(self, status: int, message: str) -> Reply:
        return _json(status, {"error": message})

    def route(self, request: Request) -> Reply:
        from standardwebhooks import WebhookVerificationError

        if request.path != self.hook_path:
            return self.error(404, "not found")
        if request.method != "POST":
            return self.error(405, "method not allowed")
        if request.media_type() != "application/cloudevents+json":
            return self.error(
                415,
                f"expected application/cloudevents+json, got {request.header('Content-Type')!r}",
            )
        try:
            self.webhook.verify(request.body, request.headers)
        except WebhookVerificationError as exc:
            return self.error(401, f"signature: {exc}")
        try:
            event = request.json()
        except ValueError:
            return self.error(400, "the body is not JSON")
        problem = self._check_event(event)
        if problem:
            return self.error(400, problem)
        if event["id"] != request.header("webhook-id"):
            return self.error(400, "webhook-id differs from the event's id")
        if event["id"] in self.events:
            self.duplicates += 1
            return Reply(204)
        record = {**event, "idempotency_key": event["id"]}
        self.events[event["id"]] = record
        self.effects.append(record)
        return Reply(204)

    def _check_event(self, event: Any) -> str | None:
        """CloudEvents 1.0, JSON format: the problem, or None."""
        if not isinstance(event, dict):
            return "a structured CloudEvent is a JSON object"
        if event.get("specversion") != "1.0":
            return f"specversion must be '1.0', got {event.get('specversion')!r}"
        for attr in ("id", "source", "type"):
            if not isinstance(event.get(attr), str) or not event[attr]:
                return f"required attribute {attr!r} missing or empty"
        for name in event:
            if name not in ("data", "data_base64") and not re.fullmatch(r"[a-z0-9]+", name):
                return f"attribute name {name!r} is not lower-case letters and digits"
        if "time" in event:
            try:
                datetime.fromisoformat(str(event["time"]).replace("Z", "+00:00"))
            except ValueError:
                return f"time {event['time']!r} is not RFC 3339"
            if not re.fullmatch(
                r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})",
                str(event["time"]),
            ):
                return f"time {event['time']!r} is not RFC 3339"
        if (
            "data" in event
            and event.get("datacontenttype", "application/json") != "application/json"
        ):
            return "data is JSON but datacontenttype says otherwise"
        if event["type"] != self.event_type:
            return f"unexpected event type {event['type']!r}"
        return None


def iter_effects(*fakes: FakeProvider) -> Iterator[dict[str, Any]]:
    """Every effect of these fakes."""
    for fake in fakes:
        with fake.lock:
            yield from list(fake.effects)


def send_raw(
    method: str, url: str, headers: dict[str, str] | None = None, body: bytes | None = None
) -> tuple[int, dict[str, str], bytes]:
    """A request exactly as given (to test a fake's refusals): status, headers, body."""
    import http.client

    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        conn.request(method, target, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()
