"""Prediction events from a proxied call, in wire format v1 (validated by the recorder).

A call becomes one event per row of its batch. Whatever cannot be read is left out of
the events rather than failing them: a body over the capture limit or not of its
protocol gives events without features or prediction, and the reason is returned to be
counted. Only a call with no model name at all cannot be recorded.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from mlwatch.errors import CaptureError, IngestError
from mlwatch.inputs.body import decompress
from mlwatch.proxy import jsonpaths, oip, tfserving
from mlwatch.proxy.exchange import Exchange, Route, route
from mlwatch.settings import Config
from mlwatch.times import format_ts
from mlwatch.wire import MAX_ID


class Reader:
    """Turns exchanges into events under one configuration."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.protocol = config.proxy_format
        self.json_route = re.compile(config.proxy_json_route) if config.proxy_json_route else None
        self.json_too = bool(config.proxy_features_path or config.proxy_prediction_path)
        self._headers = {
            key: value.lower().encode()
            for key, value in (
                ("model", config.proxy_model_header),
                ("version", config.proxy_version_header),
                ("request_id", config.proxy_request_id_header),
            )
            if value
        }

    def events(self, ex: Exchange) -> tuple[list[dict[str, Any]], list[str]]:
        """The call's events and the reasons of what could not be captured (to count);
        raises CaptureError when nothing can be recorded."""
        where = route(ex, self.protocol, self.json_route, self.json_too)
        if where is None:
            return [], []
        model = where.model or self._header(ex, "model") or self.config.model
        if not model:
            raise CaptureError(
                "no model name in the path, a header or the settings", reason="no_model"
            )
        misses: list[str] = []
        rows, rid = self._features(where, ex, misses)
        ok = ex.error is None and 200 <= ex.status < 300
        preds, answer_version = None, None
        if ok and not misses:  # rows unknown: no prediction to split over them
            preds, answer_version = self._predictions(where, ex, len(rows), misses)
        version = (
            where.version or self._header(ex, "version") or answer_version or self.config.version
        )
        rid = self._header(ex, "request_id") or rid
        base = {
            "ts": format_ts(ex.started_ns),
            "model": model,
            "version": version,
            "latency_ms": round(ex.latency_ms, 3),
            "status": "ok" if ok else "error",
            "error": None if ok else ex.error or f"HTTP{ex.status}",
            "code_version": self.config.code_version,
            "run_id": self.config.run_id,
            "environment": self.config.environment,
        }
        return _rows(base, rows, preds, rid), misses

    def _decode(self, raw: bytes, encoding: str | None) -> Any:
        """A JSON body, gzip undone within the capture limit."""
        try:
            data = decompress(raw, encoding, max(self.config.proxy_capture_max_bytes, 1))
            return orjson.loads(data)
        except IngestError as exc:
            reason = "too_large" if exc.status == 413 else "unparsable"
            raise CaptureError(f"body: {exc}", reason=reason) from None
        except orjson.JSONDecodeError as exc:
            raise CaptureError(f"not a JSON body: {exc}") from None

    def _header(self, ex: Exchange, key: str) -> str | None:
        name = self._headers.get(key)
        return ex.header(name) if name is not None else None

    def _features(
        self, where: Route, ex: Exchange, misses: list[str]
    ) -> tuple[list[dict[str, Any] | None], str | None]:
        if ex.request_body is None:
            misses.append("too_large")
            return [None], None
        try:
            body = self._decode(ex.request_body, ex.header(b"content-encoding"))
            if where.protocol == "oip":
                return oip.features(body)
            if where.protocol == "tfserving":
                return tfserving.features(body)
            return jsonpaths.features(body, self.config.proxy_features_path)
        except CaptureError as exc:
            misses.append(exc.reason)
            return [None], None

    def _predictions(
        self, where: Route, ex: Exchange, n: int, misses: list[str]
    ) -> tuple[list[Any] | None, str | None]:
        if ex.response_body is None:
            misses.append("too_large")
            return None, None
        try:
            body = self._decode(ex.response_body, ex.response_encoding)
            if where.protocol == "oip":
                return oip.predictions(body, n)
            if where.protocol == "tfserving":
                return tfserving.predictions(body, n)
            return jsonpaths.predictions(body, n, self.config.proxy_prediction_path)
        except CaptureError as exc:
            misses.append(exc.reason)
            return None, None


def _rows(
    base: dict[str, Any],
    rows: list[dict[str, Any] | None],
    preds: list[Any] | None,
    rid: str | None,
) -> list[dict[str, Any]]:
    n = len(rows)
    events = []
    for i, features in enumerate(rows):
        ev = dict(base, features=features, prediction=preds[i] if preds is not None else None)
        if rid:
            ev["request_id"] = rid[:MAX_ID] if n == 1 else f"{rid[: MAX_ID - 8]}:{i}"
        if n > 1:
            ev["batch_size"] = n
        events.append(ev)
    return events
