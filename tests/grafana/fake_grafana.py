"""A fake Grafana: an HTTP server in this process that answers the endpoints the sync uses,
and checks every request the way Grafana's HTTP API documentation describes it.

Endpoints (all under ``/api``, all behind ``Authorization: Bearer <token>``):

- ``POST /api/dashboards/db``: body ``dashboard`` (required, with a ``title``), ``folderUid``,
  ``message``, ``overwrite``; 412 ``version-mismatch`` when ``dashboard.version`` is not the
  stored one and ``overwrite`` is false, 412 ``name-exists`` for a second dashboard of the
  same title in a folder, 404 ``not-found`` for an unknown folder; the answer is
  ``{id, uid, url, status, version, slug}``.
- ``GET`` / ``DELETE /api/dashboards/uid/<uid>``; ``GET /api/search``.
- ``GET`` / ``POST /api/folders``, ``GET /api/folders/<uid>``.
- ``POST /api/annotations``.
- ``GET`` / ``POST /api/v1/provisioning/alert-rules``, ``GET`` / ``PUT`` / ``DELETE
  /api/v1/provisioning/alert-rules/<uid>`` with the required fields of a
  ``ProvisionedAlertRule``, its server-side expressions as the expression service
  parses them, and titles unique in a folder (409); rules written without
  ``X-Disable-Provenance`` have the provenance ``api``, and that header cannot take it
  away again (409).

Anything else is refused: an unknown path (404), a known path with another method (405), a
body Grafana would refuse, or a field it does not know (400, with a message saying which),
a missing or wrong token (401), and any write with the ``viewer_token`` (403). Versions go
up by one on each save. :meth:`FakeGrafana.hand_edit` saves a dashboard as the UI would.
Every request is kept in :attr:`FakeGrafana.requests`, so tests can count them. With
``path_prefix`` it answers under a sub-path (Grafana's ``root_url`` behind a proxy).
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

UID_RE = re.compile(r"^[a-zA-Z0-9_-]{1,40}$")
DURATION_RE = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$|^0$")
NO_DATA_STATES = {"Alerting", "NoData", "OK", "KeepLast"}
EXEC_ERR_STATES = {"Alerting", "Error", "OK", "KeepLast"}
EXPRESSION_TYPES = {"math", "reduce", "resample", "classic_conditions", "threshold"}
REDUCERS = {"last", "mean", "min", "max", "sum", "count", "median"}
DASHBOARD_SAVE_FIELDS = {"dashboard", "folderUid", "folderId", "message", "overwrite"}
RULE_FIELDS = {
    "uid",
    "orgID",
    "folderUID",
    "ruleGroup",
    "title",
    "condition",
    "data",
    "noDataState",
    "execErrState",
    "for",
    "annotations",
    "labels",
    "isPaused",
    "notification_settings",
    "record",
    # read-only: Grafana ignores them when a client sends back what it read
    "id",
    "updated",
    "provenance",
}
RULE_REQUIRED = (
    "folderUID",
    "ruleGroup",
    "title",
    "condition",
    "data",
    "noDataState",
    "execErrState",
    "for",
)
SEARCH_PARAMS = {"type", "tag", "query", "limit", "page", "folderUIDs", "dashboardUIDs"}


class Refused(Exception):
    """An answer other than success: status and JSON body."""

    def __init__(self, code: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.code = code
        self.body = {"message": message, **extra}


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    headers: dict[str, str]


@dataclass
class StoredDashboard:
    id: int
    content: dict[str, Any]
    folder_uid: str
    version: int
    messages: list[str] = field(default_factory=list)


def check_expression(ref: str, model: dict[str, Any]) -> None:
    """A server-side expression as Grafana's expression service parses it: a known type,
    and for reduce a known reducer and mode (``replaceNN`` needs a numeric
    ``replaceWithValue``)."""
    kind = model.get("type")
    if kind not in EXPRESSION_TYPES:
        raise Refused(400, f"invalid alert rule: query {ref}: unknown expression type {kind!r}")
    if kind in ("math", "reduce", "threshold") and not isinstance(model.get("expression"), str):
        raise Refused(400, f"invalid alert rule: query {ref}: expression must be a string")
    if kind != "reduce":
        return
    if model.get("reducer") not in REDUCERS:
        raise Refused(400, f"invalid alert rule: query {ref}: reducer {model.get('reducer')!r}")
    settings = model.get("settings") or {}
    mode = settings.get("mode", "")
    if mode not in ("", "dropNN", "replaceNN"):
        raise Refused(400, f"invalid alert rule: query {ref}: reducer mode {mode!r}")
    value = settings.get("replaceWithValue")
    if mode == "replaceNN" and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise Refused(400, f"invalid alert rule: query {ref}: replaceWithValue must be a number")


def slugify(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


class FakeGrafana:
    """Start with ``with FakeGrafana(token=...) as grafana:``; ``grafana.url`` is its base URL."""

    def __init__(
        self,
        token: str = "glsa_fake_token",
        *,
        viewer_token: str | None = None,
        path_prefix: str = "",
    ) -> None:
        self.token = token
        self.path_prefix = path_prefix.rstrip("/")
        self.viewer_token = viewer_token
        self.requests: list[Request] = []
        self.folders: dict[str, dict[str, Any]] = {}
        self.dashboards: dict[str, StoredDashboard] = {}
        self.rules: dict[str, dict[str, Any]] = {}
        self.annotations: list[dict[str, Any]] = []
        self._ids = itertools.count(1)
        #: called with each request before it is answered (a test can act in between)
        self.on_request: Callable[[Request], None] | None = None
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._server is not None, "the fake Grafana is not started"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}{self.path_prefix}"

    def start(self) -> FakeGrafana:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake._handle(self)

            do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

            def log_message(self, format: str, *args: Any) -> None:
                pass  # no request lines on stderr

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            assert self._thread is not None
            self._thread.join(5)
            self._server = None

    def __enter__(self) -> FakeGrafana:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what tests look at and do -----------------------------------------------------

    def writes(self) -> list[Request]:
        """The requests that could change something (every method but GET)."""
        return [r for r in self.requests if r.method != "GET"]

    def hand_edit(self, uid: str, change: Callable[[dict[str, Any]], None] | None = None) -> int:
        """Save dashboard ``uid`` as someone in the UI would: ``change`` edits its JSON (by
        default a panel is added); the version goes up by one. Returns the new version."""
        with self._lock:
            stored = self.dashboards[uid]
            content = copy.deepcopy(stored.content)
            if change is None:
                content.setdefault("panels", []).append({"type": "text", "title": "added by hand"})
            else:
                change(content)
            stored.version += 1
            stored.content = {**content, "id": stored.id, "uid": uid, "version": stored.version}
            stored.messages.append("")
            return stored.version

    # -- dispatch ----------------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        status, answer = 500, {"message": "fake grafana failed"}
        try:
            body = self._parse_body(handler, raw)
            request = Request(
                handler.command,
                parts.path,
                parse_qs(parts.query, keep_blank_values=True),
                body,
                {k.lower(): v for k, v in handler.headers.items()},
            )
            with self._lock:
                self.requests.append(request)
                if self.on_request is not None:
                    self.on_request(request)
                self._authorize(request)
                status, answer = self._route(request)
        except Refused as refused:
            status, answer = refused.code, refused.body
        except Exception as exc:  # a bug of the fake: say so instead of hanging up
            status, answer = 500, {"message": f"fake grafana failed: {exc!r}"}
        data = b"" if status == 204 else json.dumps(answer).encode()
        handler.send_response(status)
        if data:
            handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    @staticmethod
    def _parse_body(handler: BaseHTTPRequestHandler, raw: bytes) -> Any:
        if handler.command not in ("POST", "PUT", "PATCH"):
            return None
        content_type = handler.headers.get("Content-Type", "")
        if not content_type.startswith("application/json"):
            raise Refused(400, f"bad request data: Content-Type {content_type!r}, not JSON")
        try:
            return json.loads(raw)
        except ValueError:
            raise Refused(400, "bad request data: the body is not JSON") from None

    def _authorize(self, request: Request) -> None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme != "Bearer" or token not in (self.token, self.viewer_token) or not token:
            raise Refused(401, "Unauthorized")
        if token == self.viewer_token and request.method != "GET":
            raise Refused(403, "You'll need additional permissions to perform this action.")

    def _route(self, request: Request) -> tuple[int, Any]:
        if not request.path.startswith(self.path_prefix + "/"):
            raise Refused(404, f"not found: {request.path}")
        path = request.path[len(self.path_prefix) :]
        routes: list[tuple[str, dict[str, Callable[..., tuple[int, Any]]]]] = [
            (r"/api/dashboards/db", {"POST": self._save_dashboard}),
            (
                r"/api/dashboards/uid/([^/]+)",
                {"GET": self._get_dashboard, "DELETE": self._delete_dashboard},
            ),
            (r"/api/search", {"GET": self._search}),
            (r"/api/folders", {"GET": self._list_folders, "POST": self._create_folder}),
            (r"/api/folders/([^/]+)", {"GET": self._get_folder}),
            (r"/api/annotations", {"POST": self._annotate}),
            (
                r"/api/v1/provisioning/alert-rules",
                {"GET": self._list_rules, "POST": self._create_rule},
            ),
            (
                r"/api/v1/provisioning/alert-rules/([^/]+)",
                {"GET": self._get_rule, "PUT": self._put_rule, "DELETE": self._delete_rule},
            ),
        ]
        for pattern, methods in routes:
            match = re.fullmatch(pattern, path)
            if match:
                if request.method not in methods:
                    raise Refused(405, f"method {request.method} not allowed on {path}")
                return methods[request.method](request, *match.groups())
        raise Refused(404, f"not found: {path}")

    # -- dashboards --------------------------------------------------------------------

    def _dashboard_answer(self, uid: str) -> dict[str, Any]:
        stored = self.dashboards[uid]
        slug = slugify(stored.content["title"])
        return {
            "id": stored.id,
            "uid": uid,
            "url": f"/d/{uid}/{slug}",
            "status": "success",
            "version": stored.version,
            "slug": slug,
        }

    def _save_dashboard(self, request: Request) -> tuple[int, Any]:
        body = request.body
        if not isinstance(body, dict):
            raise Refused(400, "bad request data: the body must be a JSON object")
        unknown = sorted(set(body) - DASHBOARD_SAVE_FIELDS)
        if unknown:
            raise Refused(400, f"bad request data: unknown fields {unknown}")
        dashboard = body.get("dashboard")
        if not isinstance(dashboard, dict):
            raise Refused(400, "bad request data: 'dashboard' is required and must be an object")
        for key, kind in (("message", str), ("overwrite", bool), ("folderUid", str)):
            if key in body and not isinstance(body[key], kind):
                raise Refused(400, f"bad request data: '{key}' must be a {kind.__name__}")
        title = dashboard.get("title")
        if not isinstance(title, str) or not title.strip():
            raise Refused(400, "Dashboard title cannot be empty", status="empty-name")
        uid = dashboard.get("uid") or f"gen{next(self._ids)}"
        if not isinstance(uid, str) or not UID_RE.match(uid):
            raise Refused(400, "uid contains illegal characters or is longer than 40")
        folder_uid = body.get("folderUid", "")
        if folder_uid and folder_uid not in self.folders:
            raise Refused(404, "folder not found", status="not-found")
        overwrite = body.get("overwrite", False)
        stored = self.dashboards.get(uid)
        if not overwrite:
            if stored is not None and dashboard.get("version") != stored.version:
                raise Refused(
                    412, "The dashboard has been changed by someone else", status="version-mismatch"
                )
            for other_uid, other in self.dashboards.items():
                same = other.content["title"].lower() == title.lower()
                if other_uid != uid and same and other.folder_uid == folder_uid:
                    raise Refused(
                        412,
                        "A dashboard with the same name in the folder already exists",
                        status="name-exists",
                    )
        if stored is None:
            stored = StoredDashboard(id=next(self._ids), content={}, folder_uid="", version=0)
            self.dashboards[uid] = stored
        stored.version += 1
        stored.folder_uid = folder_uid
        stored.content = {
            **copy.deepcopy(dashboard),
            "id": stored.id,
            "uid": uid,
            "version": stored.version,
        }
        stored.messages.append(body.get("message", ""))
        return 200, self._dashboard_answer(uid)

    def _get_dashboard(self, request: Request, uid: str) -> tuple[int, Any]:
        stored = self.dashboards.get(uid)
        if stored is None:
            raise Refused(404, "Dashboard not found", status="not-found")
        folder = self.folders.get(stored.folder_uid, {})
        answer = self._dashboard_answer(uid)
        meta = {
            "type": "db",
            "slug": answer["slug"],
            "url": answer["url"],
            "version": stored.version,
            "folderUid": stored.folder_uid,
            "folderTitle": folder.get("title", "General"),
            "provisioned": False,
            "canSave": True,
        }
        return 200, {"dashboard": copy.deepcopy(stored.content), "meta": meta}

    def _delete_dashboard(self, request: Request, uid: str) -> tuple[int, Any]:
        stored = self.dashboards.pop(uid, None)
        if stored is None:
            raise Refused(404, "Dashboard not found", status="not-found")
        title = stored.content["title"]
        return 200, {"title": title, "message": f"Dashboard {title} deleted", "id": stored.id}

    def _search(self, request: Request) -> tuple[int, Any]:
        unknown = sorted(set(request.query) - SEARCH_PARAMS)
        if unknown:
            raise Refused(400, f"unknown search parameters {unknown}")
        kinds = request.query.get("type", ["dash-db"])
        if kinds not in (["dash-db"], ["dash-folder"]):
            raise Refused(400, f"type must be dash-db or dash-folder, not {kinds}")
        try:
            limit = int(request.query.get("limit", ["1000"])[0])
            page = int(request.query.get("page", ["1"])[0])
        except ValueError:
            raise Refused(400, "limit and page must be integers") from None
        tags = set(request.query.get("tag", []))
        hits = []
        if kinds == ["dash-db"]:
            for uid, stored in sorted(self.dashboards.items(), key=lambda kv: kv[1].id):
                if tags <= set(stored.content.get("tags", [])):
                    folder = self.folders.get(stored.folder_uid, {})
                    answer = self._dashboard_answer(uid)
                    hits.append(
                        {
                            "id": stored.id,
                            "uid": uid,
                            "title": stored.content["title"],
                            "url": answer["url"],
                            "type": "dash-db",
                            "tags": list(stored.content.get("tags", [])),
                            "isStarred": False,
                            "folderUid": stored.folder_uid,
                            "folderTitle": folder.get("title", ""),
                        }
                    )
        start = (page - 1) * limit
        return 200, hits[start : start + limit]

    # -- folders -----------------------------------------------------------------------

    def _list_folders(self, request: Request) -> tuple[int, Any]:
        return 200, [
            {"id": f["id"], "uid": f["uid"], "title": f["title"]} for f in self.folders.values()
        ]

    def _get_folder(self, request: Request, uid: str) -> tuple[int, Any]:
        if uid not in self.folders:
            raise Refused(404, "folder not found", status="not-found")
        return 200, self.folders[uid]

    def _create_folder(self, request: Request) -> tuple[int, Any]:
        body = request.body
        if not isinstance(body, dict) or set(body) - {"uid", "title", "parentUid", "description"}:
            raise Refused(400, "bad request data: a folder is {uid, title, parentUid}")
        title = body.get("title")
        if not isinstance(title, str) or not title.strip():
            raise Refused(400, "folder title cannot be empty")
        uid = body.get("uid") or f"folder{next(self._ids)}"
        if not isinstance(uid, str) or not UID_RE.match(uid):
            raise Refused(400, "uid contains illegal characters or is longer than 40")
        if uid in self.folders:
            raise Refused(409, "a folder with the same uid already exists")
        folder = {"id": next(self._ids), "uid": uid, "title": title, "url": f"/dashboards/f/{uid}/"}
        self.folders[uid] = {**folder, "version": 1, "canSave": True}
        return 200, self.folders[uid]

    # -- annotations -------------------------------------------------------------------

    def _annotate(self, request: Request) -> tuple[int, Any]:
        body = request.body
        allowed = {"dashboardUID", "dashboardId", "panelId", "time", "timeEnd", "tags", "text"}
        if not isinstance(body, dict) or set(body) - allowed:
            raise Refused(400, f"bad request data: an annotation has the fields {sorted(allowed)}")
        if not isinstance(body.get("text"), str) or not body["text"]:
            raise Refused(400, "text field is required")
        tags = body.get("tags") or []
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise Refused(400, "tags must be a list of strings")
        for key in ("time", "timeEnd", "panelId", "dashboardId"):
            if body.get(key) is not None and not isinstance(body[key], int):
                raise Refused(400, f"{key} must be an integer (epoch milliseconds for times)")
        dashboard_uid = body.get("dashboardUID")
        if dashboard_uid is not None and dashboard_uid not in self.dashboards:
            raise Refused(404, "Dashboard not found")
        annotation_id = next(self._ids)
        self.annotations.append({**body, "id": annotation_id})
        return 200, {"message": "Annotation added", "id": annotation_id}

    # -- alert rules -------------------------------------------------------------------

    def _check_rule(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise Refused(400, "bad request data: an alert rule must be a JSON object")
        unknown = sorted(set(body) - RULE_FIELDS)
        if unknown:
            raise Refused(400, f"bad request data: unknown fields {unknown}")
        missing = [key for key in RULE_REQUIRED if key not in body]
        if missing:
            raise Refused(400, f"invalid alert rule: missing required fields {missing}")
        for key in ("folderUID", "ruleGroup", "title", "condition"):
            if not isinstance(body[key], str) or not body[key]:
                raise Refused(400, f"invalid alert rule: {key} must be a non-empty string")
            if len(body[key]) > 190:
                raise Refused(400, f"invalid alert rule: {key} is longer than 190")
        if "orgID" in body and not isinstance(body["orgID"], int):
            raise Refused(400, "invalid alert rule: orgID must be an integer")
        self._check_rule_queries(body)
        self._check_rule_states(body)
        if body["folderUID"] not in self.folders:
            raise Refused(400, f"folder {body['folderUID']} does not exist")
        for uid, other in self.rules.items():
            same = (other["folderUID"], other["title"]) == (body["folderUID"], body["title"])
            if same and uid != body.get("uid"):
                raise Refused(
                    409,
                    "a conflicting alert rule is found: rule title under the same "
                    "organisation and folder should be unique",
                )
        return body

    @staticmethod
    def _check_rule_queries(body: dict[str, Any]) -> None:
        data = body["data"]
        if not isinstance(data, list) or not data:
            raise Refused(400, "invalid alert rule: data must be a non-empty list of queries")
        for query in data:
            ok = isinstance(query, dict) and isinstance(query.get("refId"), str)
            if not ok or not isinstance(query.get("datasourceUid"), str):
                raise Refused(400, "invalid alert rule: each query needs refId and datasourceUid")
            if not isinstance(query.get("model"), dict):
                raise Refused(400, f"invalid alert rule: query {query['refId']} needs a model")
            if query["datasourceUid"] == "__expr__":
                check_expression(query["refId"], query["model"])
        if body["condition"] not in {q["refId"] for q in data}:
            raise Refused(400, f"invalid alert rule: condition {body['condition']} is no refId")

    @staticmethod
    def _check_rule_states(body: dict[str, Any]) -> None:
        if body["noDataState"] not in NO_DATA_STATES:
            raise Refused(400, f"invalid alert rule: noDataState {body['noDataState']!r}")
        if body["execErrState"] not in EXEC_ERR_STATES:
            raise Refused(400, f"invalid alert rule: execErrState {body['execErrState']!r}")
        if not isinstance(body["for"], str) or not DURATION_RE.match(body["for"]):
            raise Refused(400, f"invalid alert rule: for {body['for']!r} is not a duration")
        for key in ("labels", "annotations"):
            values = body.get(key) or {}
            if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
                raise Refused(400, f"invalid alert rule: {key} must map strings to strings")
        if "isPaused" in body and not isinstance(body["isPaused"], bool):
            raise Refused(400, "invalid alert rule: isPaused must be a boolean")

    @staticmethod
    def _provenance(request: Request) -> str:
        return "" if request.headers.get("x-disable-provenance") else "api"

    def _store_rule(
        self, request: Request, uid: str, body: dict[str, Any], id_: int
    ) -> dict[str, Any]:
        read_only = {"id", "updated", "provenance"}
        rule = {k: copy.deepcopy(v) for k, v in body.items() if k not in read_only}
        rule.update(uid=uid, id=id_, orgID=1, updated="2026-01-01T00:00:00Z")
        rule.setdefault("isPaused", False)
        provenance = self._provenance(request)
        if provenance:
            rule["provenance"] = provenance
        self.rules[uid] = rule
        return copy.deepcopy(rule)

    def _list_rules(self, request: Request) -> tuple[int, Any]:
        return 200, [copy.deepcopy(rule) for rule in self.rules.values()]

    def _get_rule(self, request: Request, uid: str) -> tuple[int, Any]:
        if uid not in self.rules:
            raise Refused(404, "not found")
        return 200, copy.deepcopy(self.rules[uid])

    def _create_rule(self, request: Request) -> tuple[int, Any]:
        body = self._check_rule(request.body)
        uid = body.get("uid") or f"rule{next(self._ids)}"
        if not isinstance(uid, str) or not UID_RE.match(uid):
            raise Refused(400, "invalid alert rule: uid has illegal characters or is too long")
        if uid in self.rules:
            raise Refused(409, f"an alert rule with uid {uid} already exists")
        return 201, self._store_rule(request, uid, body, next(self._ids))

    def _put_rule(self, request: Request, uid: str) -> tuple[int, Any]:
        if uid not in self.rules:
            raise Refused(404, "not found")
        body = self._check_rule(request.body)
        if body.get("uid", uid) != uid:
            raise Refused(400, "invalid alert rule: the uid of the body is not the one of the path")
        self._check_provenance(request, uid)
        return 200, self._store_rule(request, uid, body, self.rules[uid]["id"])

    def _delete_rule(self, request: Request, uid: str) -> tuple[int, Any]:
        if uid in self.rules:
            self._check_provenance(request, uid)
            del self.rules[uid]
        return 204, None

    def _check_provenance(self, request: Request, uid: str) -> None:
        stored = self.rules[uid].get("provenance", "")
        if stored and self._provenance(request) != stored:
            raise Refused(
                409,
                f"cannot change provenance from '{stored}' to '{self._provenance(request)}'",
                messageId="alerting.provenanceMismatch",
            )
