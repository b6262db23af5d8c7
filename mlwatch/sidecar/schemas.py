"""JSON Schemas of what the sidecar takes and answers, for its OpenAPI document.

The record schemas are built from the wire format's own limits and patterns
(:mod:`mlwatch.wire`), so the document and the validator say the same thing. What a
schema cannot say is in its description: a prediction, label or parameter value nests
at most ``wire.MAX_DEPTH`` levels, and a duplicated JSON key keeps its last value.
"""

from __future__ import annotations

from typing import Any

from mlwatch import wire
from mlwatch.store.catalog import RECENT_EVENTS
from mlwatch.store.outbox import STATES as TRIGGER_STATES

Schema = dict[str, Any]
REF = "#/components/schemas/"


def ref(name: str) -> Schema:
    return {"$ref": REF + name}


def text(max_length: int, *, min_length: int = 1, nullable: bool = True) -> Schema:
    """An id, version or label value: free text without control characters."""
    schema: Schema = {
        "type": ["string", "null"] if nullable else "string",
        "minLength": min_length,
        "maxLength": max_length,
        "pattern": wire.TEXT_PATTERN,
    }
    return schema


def _name(description: str) -> Schema:
    return {"type": "string", "pattern": wire.NAME_PATTERN, "description": description}


#: What the pattern cannot say about a time (it checks the date as written).
TIME_RANGE = (
    " As an instant it must lie from 1970-01-01T00:00:00Z to 9999-12-31T23:59:59Z: "
    "1970-01-01T00:30:00+01:00 is refused."
)


def _time(description: str) -> Schema:
    return {
        "type": ["string", "null"],
        "pattern": wire.TS_PATTERN,
        "description": description + TIME_RANGE,
    }


_ANY_JSON: Schema = {
    "description": f"Any JSON value without NaN or infinity, nested at most {wire.MAX_DEPTH} deep."
}

_FEATURES: Schema = {
    "type": ["object", "null"],
    "description": "Flat object of scalars; null when the payload was sampled out.",
    "maxProperties": wire.MAX_FEATURES,
    "propertyNames": {"minLength": 1, "maxLength": wire.MAX_ID, "pattern": wire.TEXT_PATTERN},
    "additionalProperties": {
        "anyOf": [
            {"type": ["number", "boolean", "null"]},
            {"type": "string", "maxLength": wire.MAX_STRING},
        ]
    },
}

_LABELS: Schema = {
    "type": ["object", "null"],
    "description": "Extra low-cardinality tags.",
    "maxProperties": wire.MAX_LABELS,
    "propertyNames": {"pattern": wire.LABEL_KEY_PATTERN},
    "additionalProperties": text(wire.MAX_NAME, min_length=0, nullable=False),
}


def event() -> Schema:
    """One prediction (wire format v1); absent or null optional fields take defaults."""
    return {
        "type": "object",
        "description": "One prediction (wire format v1).",
        "required": ["model", "latency_ms"],
        "additionalProperties": False,
        "properties": {
            "event_id": text(64) | {"description": "Unique id; a new UUIDv7 when absent."},
            "ts": _time("RFC 3339, from 1970 on; the time of receipt when absent."),
            "model": _name("Model name."),
            "version": text(wire.MAX_NAME) | {"description": "'unknown' when absent."},
            "request_id": text(wire.MAX_ID) | {"description": "Joins ground truth."},
            "features": _FEATURES,
            "prediction": _ANY_JSON,
            "latency_ms": {"type": "number", "minimum": 0, "maximum": wire.MAX_LATENCY_MS},
            "status": {"enum": list(wire.STATUSES), "description": "'ok' when absent."},
            "error": text(wire.MAX_NAME) | {"description": "Exception type name."},
            "code_version": text(wire.MAX_NAME),
            "run_id": text(wire.MAX_NAME),
            "labels": _LABELS,
            "batch_size": {
                "type": ["integer", "null"],
                "minimum": 1,
                "maximum": wire.MAX_BATCH_SIZE,
            },
            "environment": {
                "type": ["string", "null"],
                "pattern": wire.ENVIRONMENT_PATTERN,
                "description": "dev, qa, prod, ...; the sidecar's environment when absent.",
            },
        },
    }


def feedback() -> Schema:
    """One ground-truth label, joined to its prediction by ``request_id``."""
    return {
        "type": "object",
        "description": "Ground truth for one request.",
        "required": ["model", "request_id", "label"],
        "additionalProperties": False,
        "properties": {
            "feedback_id": text(64),
            "ts": _time("RFC 3339, from 1970 on; the time of receipt when absent."),
            "model": _name("Model name."),
            "request_id": text(wire.MAX_ID, nullable=False),
            "label": _ANY_JSON,
        },
    }


def registration() -> Schema:
    """A model version's identity and experiment parameters."""
    return {
        "type": "object",
        "description": "A model version with its code version, run and parameters.",
        "required": ["model"],
        "additionalProperties": False,
        "properties": {
            "model": _name("Model name."),
            "version": text(wire.MAX_NAME),
            "code_version": text(wire.MAX_NAME),
            "run_id": text(wire.MAX_NAME),
            "task": {"enum": ["classification", "regression", None]},
            "params": {"type": ["object", "null"]} | _ANY_JSON,
        },
    }


def records(item: str, max_records: int) -> Schema:
    """A request body: an array of records, or one record alone."""
    return {"anyOf": [{"type": "array", "items": ref(item), "maxItems": max_records}, ref(item)]}


def answers() -> dict[str, Schema]:
    """The bodies the sidecar answers with."""
    nullable_text: Schema = {"type": ["string", "null"]}
    health_fields: Schema = {"healthy": {"type": "boolean"}, "last_error": nullable_text}
    health: Schema = {
        "type": "object",
        "required": ["healthy", "last_error"],
        "properties": health_fields,
    }
    sink: Schema = {
        "type": "object",
        "required": ["healthy", "alive", "last_error"],
        "properties": {"alive": {"type": "boolean"}} | health_fields,
    }
    return {
        "Accepted": {
            "type": "object",
            "required": ["accepted"],
            "properties": {"accepted": {"type": "integer", "minimum": 0}},
        },
        "Error": {
            "type": "object",
            "required": ["detail"],
            "description": "A refusal: what is wrong, naming the line, field, header or parameter.",
            "properties": {
                "detail": {"type": "string"},
                "errors": {
                    "type": "array",
                    "description": "Up to ten problems of one request.",
                    "items": {
                        "type": "object",
                        "required": ["field", "message"],
                        "properties": {
                            "line": {"type": ["integer", "null"]},
                            "field": nullable_text,
                            "message": {"type": "string"},
                        },
                    },
                },
            },
        },
        "Health": {
            "type": "object",
            "required": ["status"],
            "properties": {"status": {"const": "ok"}},
        },
        "Readiness": {
            "type": "object",
            "required": ["ready", "spool", "sinks"],
            "properties": {
                "ready": {"type": "boolean"},
                "spool": health,
                "sinks": {"type": "object", "additionalProperties": sink},
                "proxy": {
                    "type": "object",
                    "description": "In proxy mode: whether its worker process serves.",
                    "required": ["healthy", "restarts"],
                    "properties": {
                        "healthy": {"type": "boolean"},
                        "restarts": {"type": "integer", "minimum": 0},
                    },
                },
            },
        },
        "Status": {
            "type": "object",
            "required": ["model", "events_stored", "feedback_stored", "versions", "sinks"],
            "properties": {
                "model": {"type": "string"},
                "task": {
                    "type": ["string", "null"],
                    "description": "The configured task (null for a model without a spec).",
                },
                "environment": {
                    "type": "string",
                    "description": "The environment whose events are counted: the one "
                    "asked for, else the sidecar's (feedback, versions and results are "
                    "the model's, whatever the environment).",
                },
                "events_stored": {"type": "integer", "minimum": 0},
                "feedback_stored": {"type": "integer", "minimum": 0},
                "versions": {"type": "array", "items": {"type": "object"}},
                "sinks": {
                    "type": "object",
                    "additionalProperties": {
                        "type": "object",
                        "required": ["lag_bytes", *sink["required"]],
                        "properties": {"lag_bytes": {"type": "integer", "minimum": 0}}
                        | sink["properties"],
                    },
                },
                "spool_bytes": {"type": "integer", "minimum": 0},
                "drift": {"type": "object", "description": "Newest drift result per version."},
                "jobs": {
                    "type": "object",
                    "description": "The last run of the model's drift and KPI jobs (when "
                    "this sidecar runs them): at, result (ok or failed), error, empty (why "
                    "it found nothing), seconds.",
                },
                "kpi": {"type": "object", "description": "Newest KPI result per version."},
            },
        },
        "ModelList": model_list(),
        "EventPage": {
            "type": "object",
            "required": ["model", "count", "events"],
            "properties": {
                "model": {"type": "string"},
                "count": {"type": "integer", "minimum": 0},
                "events": {"type": "array", "items": ref("Event")},
            },
        },
    }


def model_list() -> Schema:
    """``GET /v1/models``: every known model, by name."""
    count: Schema = {"type": "integer", "minimum": 0}
    summary: Schema = {
        "type": "object",
        "required": [
            "model",
            "configured",
            "events_stored",
            "feedback_stored",
            "last_event",
            "versions",
        ],
        "properties": {
            "model": {"type": "string"},
            "configured": {"type": "boolean", "description": "Named by the configuration."},
            "events_stored": count,
            "feedback_stored": count,
            "last_event": {
                "type": ["string", "null"],
                "description": "Time of the newest stored event (RFC 3339); null without one.",
            },
            "versions": {
                "type": "array",
                "items": {"type": "string"},
                "description": "The registered versions and those of the newest "
                f"{RECENT_EVENTS:,} events.",
            },
        },
    }
    return {
        "type": "object",
        "required": ["models"],
        "description": "The models with events, feedback or a registration in the store, "
        "named by the configuration, or with records accepted since the sidecar started.",
        "properties": {"models": {"type": "array", "items": summary}},
    }


def alerting() -> dict[str, Schema]:
    """The Alertmanager webhook (payload version 4) and the retraining answers."""
    labels: Schema = {"type": "object", "additionalProperties": {"type": "string"}}
    status: Schema = {"enum": ["firing", "resolved"]}
    alert: Schema = {
        "type": "object",
        "required": ["status", "labels"],
        "properties": {
            "status": status,
            "labels": labels,
            "annotations": labels,
            "startsAt": {"type": "string"},
            "endsAt": {"type": "string"},
            "generatorURL": {"type": "string"},
            "fingerprint": {"type": "string"},
        },
    }
    count: Schema = {"type": "integer", "minimum": 0}
    return {
        "AlertmanagerWebhook": {
            "type": "object",
            "description": "Alertmanager's webhook notification, payload version 4. Alerts "
            "are mapped to models by their model label and to retrain policies by alertname.",
            "required": ["version", "status", "receiver", "alerts"],
            "properties": {
                "version": {"const": "4"},
                "status": status,
                "receiver": {"type": "string"},
                "groupKey": {"type": "string"},
                "truncatedAlerts": count,
                "groupLabels": labels,
                "commonLabels": labels,
                "commonAnnotations": labels,
                "externalURL": {"type": "string"},
                "alerts": {"type": "array", "maxItems": 1000, "items": alert},
            },
        },
        "AlertsReceived": {
            "type": "object",
            "required": ["triggered", "suppressed", "resolved", "ignored"],
            "properties": {k: count for k in ("triggered", "suppressed", "resolved", "ignored")},
        },
        "RetrainRequest": {
            "type": "object",
            "required": ["reason"],
            "additionalProperties": False,
            "properties": {"reason": text(500, nullable=False), "version": text(wire.MAX_NAME)},
        },
        "Triggered": {
            "type": "object",
            "required": ["key", "state"],
            "properties": {"key": {"type": "string"}, "state": {"enum": list(TRIGGER_STATES)}},
        },
        "TriggerList": {
            "type": "object",
            "required": ["model", "count", "triggers"],
            "properties": {
                "model": {"type": "string"},
                "count": count,
                "triggers": {"type": "array", "items": {"type": "object"}},
            },
        },
    }


def components(max_records: int) -> dict[str, Schema]:
    """Every schema the document refers to, by name."""
    out = {"Event": event(), "Feedback": feedback(), "Registration": registration()}
    for name in ("Event", "Feedback", "Registration"):
        out[name + "s"] = records(name, max_records)
    return out | answers() | alerting()
