"""Event wire format v1: what a prediction, a label and a model registration look like.

One JSON object per prediction::

    {"event_id": "0190c1de-...-7...", "ts": "2026-11-21T12:00:00.123456Z",
     "model": "iris", "version": "3", "request_id": "req-42",
     "features": {"sepal_length": 5.1, "species_hint": "a"}, "prediction": 0,
     "latency_ms": 1.7, "status": "ok", "code_version": "9f2c1e0", "run_id": "abc",
     "labels": {"region": "eu"}, "batch_size": 32, "environment": "prod"}

Required: ``model`` and ``latency_ms``. Defaults when absent: ``event_id`` a new
UUIDv7, ``ts`` the time of receipt, ``version`` ``"unknown"``, ``status`` ``"ok"``;
``environment`` stays None here, and the sidecar fills in its own setting's.
``features`` is an object of scalars (number, string, boolean or null; non-finite
numbers are sent as null by the client) or null when the payload was sampled out.
Unknown fields are rejected so that typos are caught at the first request.

Feedback (ground truth): ``{"model", "request_id", "label", "ts"?, "feedback_id"?}``.
Registration (once per process and model version):
``{"model", "version", "code_version"?, "run_id"?, "task"?, "params"?}``.

Validation is plain Python on decoded JSON, written for the sidecar's hot ingest
path; errors are :class:`~mlwatch.errors.ValidationError` naming line and field.

>>> ev = validate_event({"model": "iris", "latency_ms": 2, "features": {"x": 1.5}}, line=1)
>>> ev["status"], ev["version"], len(ev["event_id"])
('ok', 'unknown', 36)
>>> validate_event({"model": "iris", "latency_ms": "fast"}, line=3)
Traceback (most recent call last):
...
mlwatch.errors.ValidationError: line 3, field 'latency_ms': expected a non-negative number, got str
"""

from __future__ import annotations

import math
import re
import time
from typing import Any

from mlwatch.errors import ValidationError
from mlwatch.ids import event_id as new_event_id
from mlwatch.times import format_ts, parse_ts, show

WIRE_VERSION = 1

# Explicit limits (documented in docs/contracts.md). Bodies are bounded by max_body_bytes.
MAX_FEATURES = 2_000
MAX_STRING = 2_048
MAX_NAME = 128
MAX_LABELS = 32
MAX_ID = 256
MAX_DEPTH = 32  # nesting of prediction, label and params values
MAX_LATENCY_MS = 7 * 86_400_000.0  # a week: beyond is a unit bug (ns sent as ms), not a call
MAX_DROP_COUNT = 10**12  # per entry of a drop report: more is not a count of calls
MAX_DROP_ENTRIES = 1_000  # per report: one per (model, version, reason)
MAX_BATCH_SIZE = 10**9  # rows of one batch prediction

# Each pattern is written once, as a JSON Schema (ECMA 262) pattern that Python reads
# the same way, and used both here (with fullmatch) and in the sidecar's OpenAPI
# document, so the published schema and the validator cannot disagree.
NAME_PATTERN = "^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
LABEL_KEY_PATTERN = "^[A-Za-z_][A-Za-z0-9_]{0,63}$"
#: An environment (``dev``, ``qa``, ``prod``): a Prometheus label value and, by default, the
#: namespace of the Elasticsearch data streams, whose rules (lowercase, no ``-``, ``*``,
#: ``\\``, ``/``, ``?``, ``"``, ``<``, ``>``, ``|``, space, ``,``, ``#``, ``:``) this narrows
#: to a slug that also reads well in a URL and a dashboard's dropdown.
ENVIRONMENT_PATTERN = "^[a-z0-9][a-z0-9_]{0,63}$"
#: The environment of events that name none and of rows stored before there were
#: environments (store schema version 4), and the setting's default: the data stream
#: namespace was ``default`` before, so existing streams keep their names.
DEFAULT_ENVIRONMENT = "default"
#: Characters no id, name, version or label value may hold: C0 and C1 controls (NUL,
#: newlines, escapes), line and paragraph separators, bidirectional controls and the
#: byte-order mark. They cut stored ids short, split log lines and reverse text on screen.
CONTROL_CHARS = r"\x00-\x1f\x7f-\x9f\u200e\u200f\u2028-\u202e\u2066-\u2069\ufeff"
TEXT_PATTERN = f"^[^{CONTROL_CHARS}]*$"
#: RFC 3339 date-times of years 1970 to 9999 with real calendar dates (leap days too).
TS_PATTERN = (
    "^(?:(?:19[7-9][0-9]|[2-9][0-9]{3})-(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])"
    "|(?:0[13-9]|1[0-2])-(?:29|30)|(?:0[13578]|1[02])-31)"
    "|(?:19(?:7[26]|8[048]|9[26])|[2-9][0-9](?:0[48]|[2468][048]|[13579][26])"
    "|(?:[2468][048]|[3579][26])00)-02-29)"
    "T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\\.[0-9]{1,9})?"
    "(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])$"
)
LABEL_KEY_RE = re.compile(LABEL_KEY_PATTERN)
NAME_RE = re.compile(NAME_PATTERN)
ENVIRONMENT_RE = re.compile(ENVIRONMENT_PATTERN)
TEXT_RE = re.compile(TEXT_PATTERN)
_REASON_RE = re.compile(r"^[a-z_]{1,32}$")

EVENT_FIELDS = frozenset(
    {
        "event_id",
        "ts",
        "model",
        "version",
        "request_id",
        "features",
        "prediction",
        "latency_ms",
        "status",
        "error",
        "code_version",
        "run_id",
        "labels",
        "batch_size",
        "environment",
    }
)
FEEDBACK_FIELDS = frozenset({"feedback_id", "ts", "model", "request_id", "label"})
REGISTRATION_FIELDS = frozenset({"model", "version", "code_version", "run_id", "task", "params"})
STATUSES = ("ok", "error")


def plain(text: str) -> bool:
    """Whether ``text`` holds none of :data:`CONTROL_CHARS`.

    >>> plain("churn v2 (é)"), plain("m1\\n"), plain("a\\u202eb")
    (True, False, False)
    """
    return TEXT_RE.fullmatch(text) is not None


def event_time(value: Any, *, line: int | None, field: str = "ts") -> tuple[str, int]:
    """An event's or a query's time (:data:`TS_PATTERN`): normalised to UTC, and as epoch
    microseconds. Times before the epoch are refused: they are a unit or parsing bug
    upstream, and an event id (a UUIDv7) cannot hold them."""
    ts, us = parse_ts(value, line=line, field=field)
    if us < 0:
        raise ValidationError(
            f"expected a time from 1970-01-01T00:00:00Z on, got {show(value)}",
            line=line,
            field=field,
        )
    return ts, us


def _ts_or_now(value: Any, line: int | None) -> tuple[str, int]:
    """The record's own time, or the time of receipt when it has none."""
    if value is None:
        now = time.time_ns()
        return format_ts(now), now // 1000
    return event_time(value, line=line)


def _typename(value: Any) -> str:
    return {dict: "object", list: "array", type(None): "null"}.get(
        type(value), type(value).__name__
    )


def _name(obj: dict[str, Any], key: str, line: int | None, *, required: bool) -> str | None:
    value = obj.get(key)
    if value is None:
        if required:
            raise ValidationError("required", line=line, field=key)
        return None
    if not isinstance(value, str) or not NAME_RE.fullmatch(value):
        raise ValidationError(
            f"expected a name of letters, digits and '_.:-' (at most {MAX_NAME}), got {show(value)}",
            line=line,
            field=key,
        )
    return value


def _text(obj: dict[str, Any], key: str, line: int | None, limit: int = MAX_ID) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > limit:
        raise ValidationError(
            f"expected a non-empty string of at most {limit} characters, got {show(value)}",
            line=line,
            field=key,
        )
    if not plain(value):  # a NUL would cut the stored id short and collide joins
        raise ValidationError(
            f"control characters are not allowed, got {value!r:.60}", line=line, field=key
        )
    return value


def _environment(obj: dict[str, Any], line: int | None) -> str | None:
    value = obj.get("environment")
    if value is None:
        return None
    if not isinstance(value, str) or not ENVIRONMENT_RE.fullmatch(value):
        raise ValidationError(
            "expected an environment of lowercase letters, digits and '_' (at most 64, "
            f"starting with a letter or digit), got {show(value)}",
            line=line,
            field="environment",
        )
    return value


def _check_unknown(obj: dict[str, Any], allowed: frozenset[str], line: int | None) -> None:
    for key in obj:
        if key not in allowed:
            raise ValidationError(
                f"unknown field (allowed: {', '.join(sorted(allowed))})", line=line, field=str(key)
            )


def _require_object(obj: Any, line: int | None, what: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise ValidationError(f"expected a JSON object ({what}), got {_typename(obj)}", line=line)
    return obj


#: Feature names already found valid. Every event of a model repeats the same names, so
#: a set lookup per name replaces the checks on the hot path; bounded, then started over.
_GOOD_NAMES: set[str] = set()
_GOOD_NAMES_MAX = 100_000


def _feature_names_ok(features: dict[str, Any]) -> bool:
    """Whether every name is 1 to ``MAX_ID`` printable characters: they name store
    columns and Elasticsearch fields."""
    good = _GOOD_NAMES
    for key in features:
        if key not in good:
            if not (0 < len(key) <= MAX_ID and plain(key)):
                return False
            if len(good) >= _GOOD_NAMES_MAX:
                good.clear()
            good.add(key)
    return True


def validate_features(features: Any, line: int | None) -> dict[str, Any] | None:
    """Features are a flat object of finite scalars; null means "payload not kept"."""
    if features is None:
        return None
    if not isinstance(features, dict):
        raise ValidationError(
            f"expected an object, got {_typename(features)}", line=line, field="features"
        )
    if len(features) > MAX_FEATURES:
        raise ValidationError(
            f"at most {MAX_FEATURES} features, got {len(features)}", line=line, field="features"
        )
    if not _feature_names_ok(features):
        bad = next(k for k in features if not _feature_names_ok({k: None}))
        raise ValidationError(
            f"feature names are 1 to {MAX_ID} characters without control characters, "
            f"got {bad!r:.60}",
            line=line,
            field="features",
        )
    for key, value in features.items():
        kind = type(value)
        if kind is float:
            if not math.isfinite(value):
                raise ValidationError(
                    "NaN and infinity are not allowed; send null",
                    line=line,
                    field=f"features.{key}",
                )
        elif kind is str:
            if len(value) > MAX_STRING:
                raise ValidationError(
                    f"string longer than {MAX_STRING} characters",
                    line=line,
                    field=f"features.{key}",
                )
        elif kind is not int and kind is not bool and value is not None:
            raise ValidationError(
                f"expected a number, string, boolean or null, got {_typename(value)}",
                line=line,
                field=f"features.{key}",
            )
    return features


def _check_json_value(value: Any, line: int | None, field: str, depth: int = 0) -> None:
    """Predictions and labels may be any JSON, but never NaN or infinity, and at most
    ``MAX_DEPTH`` levels deep (deeper values break serialisers downstream)."""
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValidationError("NaN and infinity are not allowed", line=line, field=field)
    elif isinstance(value, (list, dict)):
        if depth >= MAX_DEPTH:
            raise ValidationError(f"nested deeper than {MAX_DEPTH} levels", line=line, field=field)
        if isinstance(value, list):
            for i, item in enumerate(value):
                _check_json_value(item, line, f"{field}[{i}]", depth + 1)
        else:
            for key, item in value.items():
                _check_json_value(item, line, f"{field}.{key}", depth + 1)


def _latency(obj: dict[str, Any], line: int | None) -> int | float:
    latency = obj.get("latency_ms")
    if latency is None:
        raise ValidationError("required", line=line, field="latency_ms")
    if type(latency) not in (int, float):
        raise ValidationError(
            f"expected a non-negative number, got {_typename(latency)}",
            line=line,
            field="latency_ms",
        )
    if not 0 <= latency <= MAX_LATENCY_MS:
        raise ValidationError(
            f"expected milliseconds between 0 and {MAX_LATENCY_MS:.0f} (a week), got {latency!r}",
            line=line,
            field="latency_ms",
        )
    return latency  # type: ignore[no-any-return]


def _labels(obj: dict[str, Any], line: int | None) -> dict[str, str] | None:
    labels = obj.get("labels")
    if labels is None:
        return None
    if not isinstance(labels, dict) or len(labels) > MAX_LABELS:
        raise ValidationError(
            f"expected an object of at most {MAX_LABELS} string values", line=line, field="labels"
        )
    for key, value in labels.items():
        if not LABEL_KEY_RE.fullmatch(key):
            raise ValidationError(
                "label names are letters, digits and '_' (at most 64), not starting with a digit",
                line=line,
                field=f"labels.{key:.64}",
            )
        if not isinstance(value, str) or len(value) > MAX_NAME or not plain(value):
            raise ValidationError(
                f"expected a string of at most {MAX_NAME} characters without control "
                f"characters, got {show(value)}",
                line=line,
                field=f"labels.{key}",
            )
    return labels


def validate_event(obj: Any, *, line: int | None = None) -> dict[str, Any]:
    """Check one prediction event and fill its defaults. Returns a new dict."""
    obj = _require_object(obj, line, "one prediction event")
    _check_unknown(obj, EVENT_FIELDS, line)
    model = _name(obj, "model", line, required=True)
    version = _text(obj, "version", line, MAX_NAME) or "unknown"
    latency = _latency(obj, line)
    status = obj.get("status", "ok")
    if status not in STATUSES:
        raise ValidationError(
            f"expected 'ok' or 'error', got {show(status)}", line=line, field="status"
        )
    ev_id = _text(obj, "event_id", line, 64)
    ts, ts_us = _ts_or_now(obj.get("ts"), line)
    labels = _labels(obj, line)
    batch_size = obj.get("batch_size")
    if type(batch_size) is float and batch_size.is_integer():  # 32.0 is JSON's integer 32
        batch_size = int(batch_size)
    if batch_size is not None and (
        type(batch_size) is not int or not 1 <= batch_size <= MAX_BATCH_SIZE
    ):
        raise ValidationError(
            f"expected an integer from 1 to {MAX_BATCH_SIZE}, got {show(batch_size)}",
            line=line,
            field="batch_size",
        )
    prediction = obj.get("prediction")
    _check_json_value(prediction, line, "prediction")
    return {
        "event_id": ev_id or new_event_id(ts_us * 1000),
        "ts": ts,
        "ts_us": ts_us,
        "model": model,
        "version": version,
        "request_id": _text(obj, "request_id", line),
        "features": validate_features(obj.get("features"), line),
        "prediction": prediction,
        "latency_ms": float(latency),
        "status": status,
        "error": _text(obj, "error", line, MAX_NAME),
        "code_version": _text(obj, "code_version", line, MAX_NAME),
        "run_id": _text(obj, "run_id", line, MAX_NAME),
        "labels": labels,
        "batch_size": batch_size,
        "environment": _environment(obj, line),
    }


def validate_feedback(obj: Any, *, line: int | None = None) -> dict[str, Any]:
    """Check one ground-truth record and fill its defaults."""
    obj = _require_object(obj, line, "one feedback record")
    _check_unknown(obj, FEEDBACK_FIELDS, line)
    model = _name(obj, "model", line, required=True)
    request_id = _text(obj, "request_id", line)
    if request_id is None:
        raise ValidationError("required", line=line, field="request_id")
    if "label" not in obj:
        raise ValidationError("required", line=line, field="label")
    _check_json_value(obj["label"], line, "label")
    ts, ts_us = _ts_or_now(obj.get("ts"), line)
    return {
        "feedback_id": _text(obj, "feedback_id", line, 64) or new_event_id(ts_us * 1000),
        "ts": ts,
        "ts_us": ts_us,
        "model": model,
        "request_id": request_id,
        "label": obj["label"],
    }


def validate_registration(obj: Any, *, line: int | None = None) -> dict[str, Any]:
    """Check a model-registration record (identity and experiment parameters)."""
    obj = _require_object(obj, line, "one model registration")
    _check_unknown(obj, REGISTRATION_FIELDS, line)
    params = obj.get("params")
    if params is not None:
        if not isinstance(params, dict):
            raise ValidationError(
                f"expected an object, got {_typename(params)}", line=line, field="params"
            )
        _check_json_value(params, line, "params")
    task = obj.get("task")
    if task is not None and task not in ("classification", "regression"):
        raise ValidationError(
            f"expected 'classification' or 'regression', got {show(task)}", line=line, field="task"
        )
    return {
        "model": _name(obj, "model", line, required=True),
        "version": _text(obj, "version", line, MAX_NAME) or "unknown",
        "code_version": _text(obj, "code_version", line, MAX_NAME),
        "run_id": _text(obj, "run_id", line, MAX_NAME),
        "task": task,
        "params": params or {},
    }


def validate_drop_report(obj: Any) -> tuple[str | None, list[tuple[str, str, str, int]]]:
    """The client's drop counts, sent in the ``X-Mlwatch-Dropped`` header as JSON.

    ``[{"model": "iris", "version": "3", "reason": "queue_full", "count": 12,
    "report_id": "..."}]``. A client resends the same report (same ``report_id``) when
    it did not see the answer to a request; the sidecar applies each id once.

    >>> validate_drop_report([{"model": "m", "reason": "queue_full", "count": 2,
    ...                        "report_id": "r1"}])
    ('r1', [('m', 'unknown', 'queue_full', 2)])
    """
    where = "X-Mlwatch-Dropped"
    if not isinstance(obj, list) or len(obj) > MAX_DROP_ENTRIES:
        raise ValidationError(
            f"expected a JSON array of at most {MAX_DROP_ENTRIES} entries", field=where
        )
    out = []
    report_ids = set()
    for i, item in enumerate(obj):
        if not isinstance(item, dict):
            raise ValidationError("expected an object", field=f"{where}[{i}]")
        model = item.get("model")
        version = item.get("version", "unknown")
        reason = item.get("reason")
        count = item.get("count")
        report_id = item.get("report_id")
        if not (
            isinstance(model, str)
            and NAME_RE.fullmatch(model)
            and isinstance(version, str)
            and 0 < len(version) <= MAX_NAME
            and plain(version)
            and isinstance(reason, str)
            and _REASON_RE.fullmatch(reason)
            and type(count) is int
            and 0 <= count <= MAX_DROP_COUNT
            and (
                report_id is None
                or (isinstance(report_id, str) and 0 < len(report_id) <= 64 and plain(report_id))
            )
        ):
            raise ValidationError(
                "expected {model, version, reason: [a-z_]+, count: 0 to 10^12, report_id?: string}",
                field=f"{where}[{i}]",
            )
        report_ids.add(report_id)
        out.append((model, version, reason, count))
    if len(report_ids) > 1:
        raise ValidationError("every entry of one report carries the same report_id", field=where)
    return (report_ids.pop() if report_ids else None), out
