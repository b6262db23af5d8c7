"""Wire format v1 validation."""

from __future__ import annotations

import pytest

from mlwatch import wire
from mlwatch.errors import ValidationError


def test_defaults_and_normalisation() -> None:
    ev = wire.validate_event({"model": "m", "latency_ms": 3, "ts": "2026-01-01T01:00:00+01:00"})
    assert ev["ts"] == "2026-01-01T00:00:00.000000Z"
    assert ev["ts_us"] == 1767225600000000
    assert ev["version"] == "unknown" and ev["status"] == "ok" and ev["latency_ms"] == 3.0


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ({"latency_ms": 1}, "model"),
        ({"model": "m"}, "latency_ms"),
        ({"model": "m", "latency_ms": True}, "latency_ms"),
        ({"model": "m", "latency_ms": float("nan")}, "latency_ms"),
        ({"model": "m", "latency_ms": 1, "features": {"a": float("inf")}}, "features.a"),
        ({"model": "m", "latency_ms": 1, "features": {"a": {"b": 1}}}, "features.a"),
        ({"model": "m", "latency_ms": 1, "features": [1, 2]}, "features"),
        ({"model": "m", "latency_ms": 1, "prediction": [1.0, float("nan")]}, "prediction[1]"),
        ({"model": "m", "latency_ms": 1, "labels": {"a": 1}}, "labels.a"),
        ({"model": "m", "latency_ms": 1, "batch_size": 0}, "batch_size"),
        ({"model": "m", "latency_ms": 1, "request_id": ""}, "request_id"),
        ({"model": "m", "latency_ms": 1, "extra": 1}, "extra"),
    ],
)
def test_errors_name_the_field(event: dict, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        wire.validate_event(event, line=4)
    assert info.value.field == field and info.value.line == 4
    assert f"line 4, field '{field}'" in str(info.value)


def test_feedback_and_registration() -> None:
    fb = wire.validate_feedback({"model": "m", "request_id": "r", "label": [0, 1]})
    assert fb["label"] == [0, 1] and len(fb["feedback_id"]) == 36
    with pytest.raises(ValidationError, match="field 'label': required"):
        wire.validate_feedback({"model": "m", "request_id": "r"})
    reg = wire.validate_registration({"model": "m", "version": "2", "params": {"lr": 0.1}})
    assert reg["params"] == {"lr": 0.1} and reg["code_version"] is None
    with pytest.raises(ValidationError, match="field 'task'"):
        wire.validate_registration({"model": "m", "task": "ranking"})


def test_drop_report() -> None:
    report = wire.validate_drop_report(
        [{"model": "m", "version": "1", "reason": "queue_full", "count": 3}]
    )
    assert report == (None, [("m", "1", "queue_full", 3)])
    with pytest.raises(ValidationError, match="same report_id"):
        wire.validate_drop_report(
            [
                {"model": "m", "reason": "x", "count": 1, "report_id": "a"},
                {"model": "m", "reason": "x", "count": 1, "report_id": "b"},
            ]
        )
    with pytest.raises(ValidationError):
        wire.validate_drop_report([{"model": "m", "reason": "Bad Reason", "count": 1}])
