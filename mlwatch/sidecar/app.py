"""The sidecar's HTTP API (FastAPI). Routing, auth and limits only; the work is in service.py.

Every refusal is a 4xx whose ``detail`` names the problem (line, field, header or
parameter); a bad request never reaches a 500 and never touches the spool.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable, Sequence
from contextlib import asynccontextmanager
from typing import Annotated, Any, Protocol

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.routing import Match, Route

from mlwatch import __version__, wire
from mlwatch.errors import IngestError, ValidationError
from mlwatch.settings import Config
from mlwatch.sidecar import openapi
from mlwatch.sidecar.requests import (
    TIME_DOC,
    TIME_SCHEMA,
    EnvironmentFilter,
    ModelName,
    check_model,
    read_body,
)
from mlwatch.sidecar.retrain_routes import retrain_routes
from mlwatch.sidecar.service import Sidecar
from mlwatch.store.payloads import EVENTS, FEEDBACK, MODELS

log = logging.getLogger("mlwatch.sidecar")
_INGEST_REFUSALS = (400, 413, 415, 422)


class Companion(Protocol):
    """A listener that the sidecar runs and that feeds it (the proxy); its health is part
    of ``/readyz`` under its ``name``."""

    name: str

    async def start(self, sidecar: Sidecar) -> None: ...

    async def stop(self) -> None: ...

    def health(self) -> dict[str, Any]:
        """``{"healthy": bool, ...}``."""
        ...


def create_app(
    config: Config,
    *,
    registry: CollectorRegistry | None = None,
    companions: Sequence[Companion] = (),
) -> FastAPI:
    """Build the sidecar app; its lifespan starts and stops the sink consumers, and the
    ``companions`` after the sidecar starts and before it stops (what they took is in
    the spool before it closes)."""
    sidecar = Sidecar(config, registry=registry)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> Any:
        sidecar.start()
        started: list[Companion] = []
        try:
            for companion in companions:
                await companion.start(sidecar)
                started.append(companion)
            yield
        finally:
            for companion in reversed(started):
                await companion.stop()
            sidecar.stop()

    app = FastAPI(title="mlwatch sidecar", version=__version__, lifespan=lifespan)
    app.state.sidecar = sidecar
    _error_handlers(app, sidecar)
    auth = Depends(_authorizer(config.token))
    secured = config.token is not None
    _ingest_routes(app, sidecar, auth, secured)
    _query_routes(app, sidecar, auth, secured)
    _ops_routes(app, sidecar, auth, secured, companions)
    retrain_routes(app, sidecar, auth, secured)
    openapi.install(app, max_records=config.max_events_per_request, secured=secured)
    return app


def _authorizer(secret: str | None) -> Callable[[Request], None]:
    """The bearer-token check of /v1/* and /metrics (none when no token is set)."""
    token = secret.encode() if secret else None

    def authorize(request: Request) -> None:
        if token is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), token):
            raise IngestError(
                401,
                "missing or wrong bearer token (Authorization: Bearer ...)",
                headers={"WWW-Authenticate": "Bearer"},
            )

    return authorize


def _error_handlers(app: FastAPI, sidecar: Sidecar) -> None:
    """Every refusal is a 4xx JSON body naming the problem, and counted."""

    @app.exception_handler(IngestError)
    async def _ingest_error(_: Request, exc: IngestError) -> JSONResponse:
        sidecar.metrics.rejected.labels(str(exc.status)).inc()
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _param_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        sidecar.metrics.rejected.labels("422").inc()
        errors = [
            {"field": ".".join(str(p) for p in e.get("loc", ())), "message": e.get("msg")}
            for e in exc.errors()
        ]
        first = errors[0] if errors else {"field": "?", "message": "invalid request"}
        return JSONResponse(
            {"detail": f"{first['field']}: {first['message']}", "errors": errors}, status_code=422
        )

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> Response:
        if exc.status_code == 405:  # Starlette's Allow names the first route of the path only
            allow = {**(exc.headers or {}), "Allow": _allowed_methods(app, request)}
            exc = HTTPException(405, exc.detail, headers=allow)
        return await http_exception_handler(request, exc)


def _allowed_methods(app: FastAPI, request: Request) -> str:
    """Every method of the path (``/v1/models`` takes GET and POST, in two routes)."""
    methods = {
        method
        for route in app.router.routes
        if isinstance(route, Route) and route.matches(request.scope)[0] != Match.NONE
        for method in route.methods or ()
    }
    return ", ".join(sorted(methods))


def _ingest_routes(app: FastAPI, sidecar: Sidecar, auth: Any, secured: bool) -> None:
    async def accept(request: Request, kind: bytes) -> Response:
        raw = await read_body(
            request, sidecar.config.max_body_bytes, sidecar.config.request_timeout_s
        )
        if raw is None:  # counted, not logged: any client can abort uploads at will
            sidecar.metrics.aborted.inc()
            return Response(status_code=400)  # nobody reads it
        n = await run_in_threadpool(
            sidecar.ingest,
            kind,
            raw,
            content_type=request.headers.get("content-type"),
            content_encoding=request.headers.get("content-encoding"),
            dropped=request.headers.get("x-mlwatch-dropped"),
        )
        return JSONResponse({"accepted": n}, status_code=202)

    @app.post(
        "/v1/events",
        status_code=202,
        dependencies=[auth],
        openapi_extra=openapi.operation(
            202, "Accepted", *_INGEST_REFUSALS, secured=secured, body=EVENTS
        ),
        summary="Record prediction events (wire format v1)",
    )
    async def post_events(request: Request) -> Response:
        return await accept(request, EVENTS)

    @app.post(
        "/v1/feedback",
        status_code=202,
        dependencies=[auth],
        openapi_extra=openapi.operation(
            202, "Accepted", *_INGEST_REFUSALS, secured=secured, body=FEEDBACK
        ),
        summary="Record ground truth by request_id",
    )
    async def post_feedback(request: Request) -> Response:
        return await accept(request, FEEDBACK)

    @app.post(
        "/v1/models",
        status_code=202,
        dependencies=[auth],
        openapi_extra=openapi.operation(
            202, "Accepted", *_INGEST_REFUSALS, secured=secured, body=MODELS
        ),
        summary="Register model versions with code version, run id and parameters",
    )
    async def post_models(request: Request) -> Response:
        return await accept(request, MODELS)


def _window_bound(name: str, value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return wire.event_time(value, line=None, field=name)[1]
    except ValidationError as exc:
        raise IngestError(422, f"query parameter {exc}") from None


def _query_routes(app: FastAPI, sidecar: Sidecar, auth: Any, secured: bool) -> None:
    @app.get(
        "/v1/models",
        dependencies=[auth],
        openapi_extra=openapi.operation(200, "ModelList", 422, secured=secured),
        summary="Every known model with its versions, counts and last event",
    )
    async def list_models(environment: EnvironmentFilter = None) -> dict[str, Any]:
        return await run_in_threadpool(sidecar.models, environment)

    @app.get(
        "/v1/models/{model}/status",
        dependencies=[auth],
        openapi_extra=openapi.operation(200, "Status", 404, 422, secured=secured),
        summary="Counts, sink lag and versions of one model",
    )
    async def status(model: ModelName, environment: EnvironmentFilter = None) -> dict[str, Any]:
        return await run_in_threadpool(sidecar.status, check_model(model), environment)

    @app.get(
        "/v1/models/{model}/events",
        dependencies=[auth],
        openapi_extra=openapi.operation(200, "EventPage", 404, 422, secured=secured),
        summary="Stored events of one model, newest first",
    )
    async def events(
        model: ModelName,
        since: Annotated[
            str | None, Query(description=TIME_DOC + ", inclusive", json_schema_extra=TIME_SCHEMA)
        ] = None,
        until: Annotated[
            str | None, Query(description=TIME_DOC + ", exclusive", json_schema_extra=TIME_SCHEMA)
        ] = None,
        version: str | None = None,
        environment: EnvironmentFilter = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> dict[str, Any]:
        return await run_in_threadpool(
            sidecar.events,
            check_model(model),
            since_us=_window_bound("since", since),
            until_us=_window_bound("until", until),
            version=version,
            environment=environment,
            limit=limit,
        )


def _ops_routes(
    app: FastAPI, sidecar: Sidecar, auth: Any, secured: bool, companions: Sequence[Companion]
) -> None:
    metrics_text = {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}}

    @app.get(
        "/metrics",
        dependencies=[auth],
        response_class=Response,
        openapi_extra=openapi.operation(200, metrics_text, secured=secured),
        summary="Prometheus metrics (text exposition format)",
    )
    async def metrics() -> Response:
        sidecar.refresh_gauges()
        return Response(generate_latest(sidecar.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get(
        "/healthz",
        openapi_extra=openapi.operation(200, "Health", secured=False),
        summary="Liveness",
    )
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        openapi_extra=openapi.operation(200, "Readiness", secured=False, unready="Readiness"),
        summary="Readiness: spool open, every sink healthy, the proxy (if any) serving",
    )
    async def readyz() -> JSONResponse:
        ok, detail = sidecar.readiness()
        for companion in companions:
            health = companion.health()
            detail[companion.name] = health
            ok = ok and bool(health["healthy"])
        detail["ready"] = ok
        return JSONResponse(detail, status_code=200 if ok else 503)
