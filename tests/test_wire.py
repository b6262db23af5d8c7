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


EVENT = {"model": "m1", "latency_ms": 1}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"model": "m1\n"}, "model"),
        ({"ts": "2026-01-01T00:00:00Z\n"}, "ts"),
        ({"ts": "2026-01-01T00:00:00.000000Z\n"}, "ts"),
        ({"labels": {"region\n": "eu"}}, "labels.region\n"),
    ],
)
def test_a_trailing_newline_is_not_part_of_a_valid_value(change: dict, field: str) -> None:
    """Every pattern matches the whole value: ``$`` alone would let "m1\\n" through."""
    assert wire.validate_event(EVENT)["model"] == "m1"
    with pytest.raises(ValidationError) as info:
        wire.validate_event({**EVENT, **change})
    assert info.value.field == field


def test_drop_report_names_and_reasons_match_whole() -> None:
    for bad in ({"model": "m1\n"}, {"reason": "queue_full\n"}):
        with pytest.raises(ValidationError, match="X-Mlwatch-Dropped"):
            wire.validate_drop_report([{"model": "m1", "reason": "queue_full", "count": 1, **bad}])


def test_no_pattern_in_the_package_is_applied_with_match() -> None:
    """``re.match`` / ``pattern.match`` stop at ``$`` before a newline; the package
    validates with ``fullmatch`` only."""
    import re

    from tests.helpers import REPO

    found = [
        f"{path.relative_to(REPO)}:{n}"
        for path in sorted((REPO / "mlwatch").rglob("*.py"))
        for n, text in enumerate(path.read_text().splitlines(), start=1)
        if re.search(r"(\bre|_RE)\.match\(", text)
    ]
    assert found == []


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"features": {"a\x00b": 1}}, "features"),
        ({"features": {"a\nb": 1}}, "features"),
        ({"features": {"\u202eab": 1}}, "features"),
        ({"features": {"": 1}}, "features"),
        ({"features": {"x" * 257: 1}}, "features"),
        ({"labels": {"a": "\u202e\n"}}, "labels.a"),
        ({"labels": {"a": "x\x00"}}, "labels.a"),
        ({"version": "1\n"}, "version"),
        ({"request_id": "r\x00"}, "request_id"),
    ],
)
def test_control_characters_in_names_ids_and_labels_are_refused(change: dict, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        wire.validate_event({**EVENT, **change}, line=2)
    assert info.value.field == field and "control characters" in str(info.value)


def test_feature_values_and_predictions_are_data_and_keep_every_character() -> None:
    text = "line one\nline two\ttab \x00 nul \u202e rtl"
    ev = wire.validate_event({**EVENT, "features": {"review": text}, "prediction": text})
    assert ev["features"]["review"] == text and ev["prediction"] == text
    assert wire.validate_event({**EVENT, "features": {"größe café": 1}})["features"]


@pytest.mark.parametrize(
    "ts", ["0001-01-01T00:00:00Z", "0999-12-31T23:59:59Z", "1969-12-31T23:59:59.999999Z"]
)
def test_times_before_the_epoch_are_refused(ts: str) -> None:
    with pytest.raises(ValidationError, match="from 1970-01-01T00:00:00Z on") as info:
        wire.validate_event({**EVENT, "ts": ts}, line=3)
    assert info.value.field == "ts" and info.value.line == 3
    with pytest.raises(ValidationError, match="from 1970"):
        wire.validate_feedback({"model": "m1", "request_id": "r", "label": 1, "ts": ts})


def test_the_first_and_last_accepted_times_round_trip_with_uuid_ids() -> None:
    import uuid

    for ts in ("1970-01-01T00:00:00.000000Z", "9999-12-31T23:59:59.999999Z"):
        ev = wire.validate_event({**EVENT, "ts": ts})
        again = {k: v for k, v in ev.items() if k != "ts_us" and v is not None}
        assert ev["ts"] == ts and wire.validate_event(again)["ts"] == ts
        assert uuid.UUID(ev["event_id"]).version == 7


def test_times_are_written_with_four_digit_years() -> None:
    """Query bounds may be any year; what is written back is RFC 3339 (zero-padded)."""
    from mlwatch.times import format_us, parse_ts

    ts, us = parse_ts("0001-01-01T00:00:00Z", line=None, field="since")
    assert ts == "0001-01-01T00:00:00.000000Z" and format_us(us) == ts
    assert parse_ts(ts, line=None) == (ts, us)
    assert format_us(-1) == "1969-12-31T23:59:59.999999Z"


def test_drop_report_counts_and_entries_are_bounded() -> None:
    entry = {"model": "m1", "reason": "queue_full", "count": wire.MAX_DROP_COUNT}
    assert wire.validate_drop_report([entry])[1] == [("m1", "unknown", "queue_full", 10**12)]
    with pytest.raises(ValidationError, match="count: 0 to 10"):
        wire.validate_drop_report([{**entry, "count": 2**63}])
    with pytest.raises(ValidationError, match="at most 1000 entries"):
        wire.validate_drop_report([{**entry, "count": 1}] * 1001)
