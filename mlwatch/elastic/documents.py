"""mlwatch records as Elasticsearch documents: the layout Elastic users recognise.

Events go to the data stream ``logs-mlwatch.predictions-<namespace>``, feedback to
``logs-mlwatch.feedback-<namespace>``, registrations to ``logs-mlwatch.models-<namespace>``
(Elastic's ``<type>-<dataset>-<namespace>`` convention). Each document keeps ECS names
where ECS has the concept, and everything mlwatch-specific under ``mlwatch.``:

=========================  ==============================================================
``@timestamp``             the prediction time (``ts``)
``event.id``               ``event_id`` (also the document ``_id``: a replay never duplicates)
``event.outcome``          ``success`` / ``failure`` (from ``status``)
``event.duration``         the latency in nanoseconds (ECS unit)
``service.name/version``   the model name and version
``service.environment``    the environment the prediction was served in (``dev``, ``prod``)
``http.request.id``        ``request_id``, the key that joins feedback
``trace.id``               the ``trace_id`` label, when the caller set one
``error.type``             the exception type name of a failed call
``host.name``              the host the sidecar runs on; ``kubernetes.pod.name``,
                           ``kubernetes.namespace``, ``kubernetes.node.name`` from the
                           Downward-API variables ``POD_NAME``, ``POD_NAMESPACE``, ``NODE_NAME``
``labels.*``               the event's labels (keywords)
``mlwatch.*``              model, version, code_version, run_id, status, latency_ms,
                           batch_size, ``features.<name>`` (numbers as double, strings as
                           keyword, see the index template), ``prediction`` (kept as sent, not
                           indexed), ``prediction_value`` (numeric predictions) and
                           ``prediction_class`` (string, integer or boolean predictions)
=========================  ==============================================================

Feedback documents carry ``event.id`` (the ``feedback_id``), ``http.request.id``,
``service.name``, ``mlwatch.label`` (as sent) and ``mlwatch.label_value`` /
``mlwatch.label_class`` by the same rule as predictions.

>>> row = ("0190-e", "2026-01-02T03:04:05.000006Z", 0, "iris", "v1", "r-1", "ok", None,
...        2.5, '{"x": 1.5, "c": "a"}', "1", "abc123", None, '{"trace_id": "t9"}', None)
>>> doc = event_document(row, Origin(host="h"))
>>> doc["event"]["id"], doc["event"]["duration"], doc["mlwatch"]["prediction_class"]
('0190-e', 2500000, '1')
>>> doc["trace"], doc["mlwatch"]["features"], doc["service"]["environment"]
({'id': 't9'}, {'x': 1.5, 'c': 'a'}, 'default')
"""

from __future__ import annotations

import hashlib
import os
import socket
from dataclasses import dataclass, field
from typing import Any

import orjson

from mlwatch.store import EVENT_COLUMNS, FEEDBACK_COLUMNS
from mlwatch.wire import DEFAULT_ENVIRONMENT

PREDICTIONS, FEEDBACK, MODELS, DEAD_LETTER = (
    "mlwatch.predictions",
    "mlwatch.feedback",
    "mlwatch.models",
    "mlwatch.deadletter",
)
# client drop reports; written by the Fluent Bit / Fluentd pipelines of exporters/ (the
# sidecar turns reports into the mlwatch_events_dropped_total metric instead)
DROPS = "mlwatch.drops"
DATASETS = (PREDICTIONS, FEEDBACK, MODELS, DEAD_LETTER, DROPS)

_E = {name: i for i, name in enumerate(EVENT_COLUMNS)}
_F = {name: i for i, name in enumerate(FEEDBACK_COLUMNS)}
_ENV = _E["environment"]


def stream_name(dataset: str, namespace: str) -> str:
    """``logs-<dataset>-<namespace>``, the data stream a dataset's documents go to."""
    return f"logs-{dataset}-{namespace}"


@dataclass(frozen=True)
class Origin:
    """Where the sidecar runs: the same on every document it writes."""

    host: str = field(default_factory=socket.gethostname)
    pod: str | None = field(default_factory=lambda: os.environ.get("POD_NAME") or None)
    namespace: str | None = field(default_factory=lambda: os.environ.get("POD_NAMESPACE") or None)
    node: str | None = field(default_factory=lambda: os.environ.get("NODE_NAME") or None)

    def fields(self) -> dict[str, Any]:
        out: dict[str, Any] = {"host": {"name": self.host}}
        kube = {
            k: v
            for k, v in (
                ("pod", {"name": self.pod}),
                ("namespace", self.namespace),
                ("node", {"name": self.node}),
            )
            if v and (not isinstance(v, dict) or v["name"])
        }
        if kube:
            out["kubernetes"] = kube
        return out


def _split_value(value: Any, prefix: str, into: dict[str, Any]) -> None:
    """Index a prediction or label two ways: as a number when it is one, as a class
    (keyword) when it is a scalar class. Lists and objects stay only in the raw field."""
    if isinstance(value, bool):
        into[f"{prefix}_class"] = "true" if value else "false"
    elif isinstance(value, int):
        into[f"{prefix}_value"] = float(value)
        into[f"{prefix}_class"] = str(value)
    elif isinstance(value, float):
        into[f"{prefix}_value"] = value
    elif isinstance(value, str):
        into[f"{prefix}_class"] = value


def event_document(row: list[Any] | tuple[Any, ...], origin: Origin) -> dict[str, Any]:
    """One spooled event row (store column order) as a predictions document."""
    ok = row[_E["status"]] == "ok"
    latency_ms = row[_E["latency_ms"]]
    ml: dict[str, Any] = {
        "model": row[_E["model"]],
        "version": row[_E["version"]],
        "status": row[_E["status"]],
        "latency_ms": latency_ms,
    }
    for key in ("code_version", "run_id", "batch_size"):
        if row[_E[key]] is not None:
            ml[key] = row[_E[key]]
    if (features := row[_E["features"]]) is not None:
        ml["features"] = orjson.loads(features)
    if (prediction := row[_E["prediction"]]) is not None:
        value = orjson.loads(prediction)
        ml["prediction"] = value
        _split_value(value, "prediction", ml)
    doc: dict[str, Any] = {
        "@timestamp": row[_E["ts"]],
        "event": {
            "id": row[_E["event_id"]],
            "kind": "event",
            "dataset": PREDICTIONS,
            "outcome": "success" if ok else "failure",
            "duration": round(latency_ms * 1_000_000),
        },
        "service": {
            "name": row[_E["model"]],
            "version": row[_E["version"]],
            # a row spooled before environments is one column short
            "environment": (row[_ENV] if len(row) > _ENV else None) or DEFAULT_ENVIRONMENT,
        },
        "mlwatch": ml,
        **origin.fields(),
    }
    if row[_E["request_id"]] is not None:
        doc["http"] = {"request": {"id": row[_E["request_id"]]}}
    if row[_E["error"]] is not None:
        doc["error"] = {"type": row[_E["error"]]}
    if (labels := row[_E["labels"]]) is not None:
        doc["labels"] = orjson.loads(labels)
        if isinstance(doc["labels"].get("trace_id"), str):
            doc["trace"] = {"id": doc["labels"]["trace_id"]}
    return doc


def feedback_document(row: list[Any] | tuple[Any, ...], origin: Origin) -> dict[str, Any]:
    """One spooled feedback row as a feedback document."""
    label = orjson.loads(row[_F["label"]])
    ml: dict[str, Any] = {"model": row[_F["model"]], "label": label}
    _split_value(label, "label", ml)
    return {
        "@timestamp": row[_F["ts"]],
        "event": {"id": row[_F["feedback_id"]], "kind": "event", "dataset": FEEDBACK},
        "service": {"name": row[_F["model"]]},
        "http": {"request": {"id": row[_F["request_id"]]}},
        "mlwatch": ml,
        **origin.fields(),
    }


def registration_id(reg: dict[str, Any]) -> str:
    """Registrations are sent once per process: the same registration from many
    processes is one document, keyed by its content."""
    return hashlib.sha256(orjson.dumps(reg, option=orjson.OPT_SORT_KEYS)).hexdigest()[:40]


def registration_document(reg: dict[str, Any], origin: Origin, ts: str) -> dict[str, Any]:
    """A model registration (model, version, code_version, run_id, task, params)."""
    ml = {k: v for k, v in reg.items() if k != "params" and v is not None}
    if reg.get("params") is not None:
        ml["params"] = reg["params"]
    return {
        "@timestamp": ts,
        "event": {"id": registration_id(reg), "kind": "event", "dataset": MODELS},
        "service": {"name": reg["model"], "version": reg["version"]},
        "mlwatch": ml,
        **origin.fields(),
    }
