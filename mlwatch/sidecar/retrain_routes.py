"""The sidecar's routes that act: Alertmanager's webhook, a manual retraining request,
and the audit of a model's triggers (the work is in :mod:`mlwatch.alerting`)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import orjson
from fastapi import FastAPI, Header, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from mlwatch import wire
from mlwatch.alerting import alertmanager
from mlwatch.errors import IngestError, RetrainError
from mlwatch.sidecar import openapi
from mlwatch.sidecar.requests import ModelName, check_model, read_body
from mlwatch.sidecar.service import Sidecar
from mlwatch.store.outbox import trigger_view

#: A manual request's ``Idempotency-Key``: the same key for one model is one trigger.
KEY_PATTERN = r"^[A-Za-z0-9._:-]{1,64}$"
_KEYS = uuid.UUID("6d6c7761-7463-4800-8000-6b6579730000")  # the namespace of the keys


def trigger_key(model: str, idempotency_key: str | None) -> str | None:
    """The trigger key a manual request's ``Idempotency-Key`` stands for: a UUID of the
    model and the key, so that one key sent for two models is two triggers."""
    if idempotency_key is None:
        return None
    return str(uuid.uuid5(_KEYS, f"{model}\n{idempotency_key}"))


class _NoPolicies:
    """The receiver's view of a sidecar without retrain policies: every alert is ignored."""

    def wants(self, model: str, cause: str) -> bool:
        return False

    def request(self, *args: Any, **kwargs: Any) -> dict[str, Any]:  # pragma: no cover
        raise AssertionError("never called: nothing is wanted")

    def clear(
        self, model: str, cause: str, *, instance: str | None = None
    ) -> None:  # pragma: no cover
        raise AssertionError("never called: nothing is wanted")


async def _json(request: Request, sidecar: Sidecar) -> Any:
    raw = await read_body(request, sidecar.config.max_body_bytes, sidecar.config.request_timeout_s)
    if raw is None:
        sidecar.metrics.aborted.inc()
        raise IngestError(400, "the client went away before the body was read")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise IngestError(
            400, f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None


def _retrain_request(body: Any) -> tuple[str, str | None]:
    if not isinstance(body, dict):
        raise IngestError(422, "body: expected an object {reason, version?}")
    if unknown := set(body) - {"reason", "version"}:
        raise IngestError(422, f"{sorted(unknown)[0]}: unknown field (allowed: reason, version)")
    reason, version = body.get("reason"), body.get("version")
    if not isinstance(reason, str) or not 0 < len(reason) <= 500 or not wire.plain(reason):
        raise IngestError(422, "reason: expected 1 to 500 characters without control characters")
    ok = isinstance(version, str) and 0 < len(version) <= wire.MAX_NAME and wire.plain(version)
    if version is not None and not ok:
        raise IngestError(422, f"version: expected a version of at most {wire.MAX_NAME} characters")
    return reason, version


def retrain_routes(app: FastAPI, sidecar: Sidecar, auth: Any, secured: bool) -> None:
    @app.post(
        "/v1/alerts/alertmanager",
        dependencies=[auth],
        openapi_extra=openapi.operation(
            200, "AlertsReceived", 400, 413, 422, secured=secured, json_body="AlertmanagerWebhook"
        ),
        summary="Alertmanager webhook (payload v4): firing alerts request retraining",
    )
    async def alertmanager_webhook(request: Request) -> JSONResponse:
        notices = alertmanager.parse(await _json(request, sidecar))
        policies = sidecar.retrainer if sidecar.retrainer is not None else _NoPolicies()
        counts = await run_in_threadpool(
            alertmanager.receive, notices, policies, environment=sidecar.config.environment
        )
        return JSONResponse(counts)

    @app.post(
        "/v1/models/{model}/retrain",
        status_code=202,
        dependencies=[auth],
        openapi_extra=openapi.operation(
            202, "Triggered", 400, 404, 409, 422, secured=secured, json_body="RetrainRequest"
        ),
        summary="Request retraining now (a manual trigger: no cooldown, no daily bound)",
    )
    async def retrain(
        model: ModelName,
        request: Request,
        idempotency_key: Annotated[
            str | None, Header(alias="Idempotency-Key", pattern=KEY_PATTERN)
        ] = None,
    ) -> JSONResponse:
        reason, version = _retrain_request(await _json(request, sidecar))
        check_model(model)
        if sidecar.retrainer is None:
            raise IngestError(409, "no model has a retrain section in the config")
        try:
            done = await run_in_threadpool(
                sidecar.retrainer.request,
                model,
                "manual",
                reason,
                {"requested_by": "POST /v1/models/{model}/retrain"},
                version=version,
                manual=True,
                key=trigger_key(model, idempotency_key),
            )
        except RetrainError as exc:
            raise IngestError(409, str(exc)) from None
        return JSONResponse(done, status_code=202)

    @app.get(
        "/v1/models/{model}/triggers",
        dependencies=[auth],
        openapi_extra=openapi.operation(200, "TriggerList", 404, 422, secured=secured),
        summary="A model's retraining triggers, newest first, with every attempt",
    )
    async def triggers(
        model: ModelName, limit: Annotated[int, Query(ge=1, le=1000)] = 100
    ) -> dict[str, Any]:
        await run_in_threadpool(sidecar.require_model, check_model(model))
        rows = await run_in_threadpool(sidecar.store.triggers, model, limit=limit)
        return {"model": model, "count": len(rows), "triggers": [trigger_view(t) for t in rows]}
