"""The sidecar's OpenAPI document: FastAPI's, with the real bodies, answers and auth.

Each route declares what it takes and answers with :func:`operation` (merged into
FastAPI's description of the route); :func:`install` adds the schemas those refer to
(:mod:`.schemas`) and the bearer scheme. ``tests/sidecar/test_openapi.py`` runs
Schemathesis against a live sidecar to keep the document true.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute

from mlwatch.sidecar import schemas
from mlwatch.store.payloads import EVENTS, FEEDBACK, MODELS

REASONS = {
    400: "Malformed body or header; names the line or the header.",
    401: "Missing or wrong bearer token.",
    404: "Unknown model (no events, feedback or registration, not configured); the detail "
    "suggests close names and lists known ones.",
    408: "Request head or body not sent within request_timeout_s.",
    409: "The model has no retrain section (or names an unknown target).",
    413: "Body over max_body_bytes, or more records than max_events_per_request.",
    415: "Unsupported Content-Type or Content-Encoding.",
    422: "A record or parameter breaks the contract; names the line and field.",
    431: "Request head over max_header_bytes (answered before authentication).",
    503: "Spool full or its disk failing, too many connections, or shutting down; see Retry-After.",
}
#: What the connection layer may answer to any request (``protocol.py``).
CONNECTION = (408, 431, 503)
RECORD_SCHEMAS = {EVENTS: "Events", FEEDBACK: "Feedbacks", MODELS: "Registrations"}
NDJSON = ("application/x-ndjson", "application/jsonl", "application/x-jsonlines")
DROPPED_HEADER = (
    "Header `X-Mlwatch-Dropped` (optional) carries the client's drop counts as a JSON "
    'array: `[{"model", "version"?, "reason", "count", "report_id"?}]`, at most 1,000 '
    "entries of at most 10^12 each, one `report_id` per request; a report is counted once "
    "however often it is resent. A malformed header gets 400."
)


def _json(schema_name: str) -> dict[str, Any]:
    return {"application/json": {"schema": schemas.ref(schema_name)}}


def operation(
    ok: int,
    answer: str | dict[str, Any],
    *refusals: int,
    secured: bool,
    body: bytes | None = None,
    unready: str | None = None,
    json_body: str | None = None,
) -> dict[str, Any]:
    """The OpenAPI fields of one route (FastAPI's ``openapi_extra``): its success answer
    (a schema name, or a ``content`` map), the refusals it can give, its body, and the
    schema of a 503 that is an answer rather than a refusal (``unready``); ``json_body``
    names the schema of a JSON body."""
    content = _json(answer) if isinstance(answer, str) else answer
    responses: dict[str, Any] = {str(ok): {"description": "Success.", "content": content}}
    for status in sorted({*refusals, *CONNECTION, *((401,) if secured else ())}):
        responses[str(status)] = {"description": REASONS[status], "content": _json("Error")}
    if unready is not None:
        either = {"anyOf": [schemas.ref(unready), schemas.ref("Error")]}
        responses["503"] = {
            "description": "Not ready (or a refusal: " + REASONS[503] + ")",
            "content": {"application/json": {"schema": either}},
        }
    extra: dict[str, Any] = {"responses": responses}
    if secured:
        extra["security"] = [{"bearer": []}]
    if json_body is not None:
        extra["requestBody"] = {"required": True, "content": _json(json_body)}
    if body is not None:
        extra["requestBody"] = _records_body(RECORD_SCHEMAS[body])
        extra["description"] = DROPPED_HEADER if body == EVENTS else ""
    return extra


def _records_body(schema_name: str) -> dict[str, Any]:
    line = schemas.ref(schema_name.removesuffix("s"))
    ndjson = {
        "schema": {"type": "string"},
        "description": "One record per line, each as in the application/json form.",
        "x-item-schema": line,
    }
    return {
        "required": True,
        "description": "A JSON array of records (or one record alone), or NDJSON; "
        "optionally Content-Encoding: gzip. All or nothing: one bad record refuses "
        "the request.",
        "content": _json(schema_name) | {media: ndjson for media in NDJSON},
    }


def install(app: FastAPI, *, max_records: int, secured: bool) -> None:
    """Serve the document FastAPI builds from the routes, with each route's declared
    answers in place of FastAPI's guesses, the schemas they refer to and the bearer
    scheme (when a token is set); FastAPI's validation-error schemas go, since every
    refusal has the sidecar's ``Error`` body."""
    build: Callable[[], dict[str, Any]] = app.openapi

    def document() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = build()
            _declared_answers(app, doc)
            found = doc.setdefault("components", {}).setdefault("schemas", {})
            for name in ("HTTPValidationError", "ValidationError"):
                found.pop(name, None)
            found.update(schemas.components(max_records))
            if secured:
                doc["components"]["securitySchemes"] = {
                    "bearer": {"type": "http", "scheme": "bearer"}
                }
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = document  # type: ignore[method-assign]


def _declared_answers(app: FastAPI, doc: dict[str, Any]) -> None:
    """Each route's answers as :func:`operation` declared them, not merged with FastAPI's
    guesses (a JSON body of any shape, a 422 of its own validation errors)."""
    for route in app.routes:
        if not isinstance(route, APIRoute):
            continue
        declared = (route.openapi_extra or {}).get("responses")
        for method in (route.methods or ()) if declared else ():
            doc["paths"][route.path][method.lower()]["responses"] = declared
