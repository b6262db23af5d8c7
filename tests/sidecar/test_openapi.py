"""The OpenAPI document is the sidecar's true contract.

Schemathesis runs against a real sidecar process with every check, positive and
negative data, a fixed seed and a bounded number of cases (``schemathesis.toml``
beside this file): a schema-valid request refused, a schema-violating one accepted, an
answer that does not match its documented status, content type or body, or any 5xx
fails the test. The record schemas are also checked case by case against the wire
format's validator, on the edges Schemathesis is unlikely to draw.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest

from mlwatch import wire
from mlwatch.errors import ValidationError
from mlwatch.sidecar import schemas
from tests.integration.servers import SidecarProcess

TOKEN = "openapi-token-123456"
CONFIG = Path(__file__).with_name("schemathesis.toml")


@pytest.fixture(scope="module")
def sidecar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SidecarProcess]:
    sc = SidecarProcess(tmp_path_factory.mktemp("openapi") / "data", MLWATCH_TOKEN=TOKEN).start()
    yield sc
    sc.stop()


@pytest.mark.integration
def test_schemathesis_finds_no_failure(sidecar: SidecarProcess, tmp_path: Path) -> None:
    cmd = [
        *(sys.executable, "-m", "schemathesis.cli", "--config-file", str(CONFIG)),
        *("run", f"{sidecar.url}/openapi.json", "--checks", "all", "--no-color"),
        *("--header", f"Authorization: Bearer {TOKEN}", "--request-timeout", "30"),
    ]
    run = subprocess.run(  # in tmp_path: Schemathesis keeps a cache where it runs
        cmd, capture_output=True, text=True, timeout=300, check=False, cwd=tmp_path
    )
    report = run.stdout[-6000:] + run.stderr[-2000:]
    assert run.returncode == 0, report
    assert "12 selected / 12 total" in run.stdout, report  # every operation was tested
    assert " 5xx" not in sidecar.log() and "Traceback" not in sidecar.log()


def _validator(name: str) -> Any:
    """A validator with ECMA 262 pattern semantics, as JSON Schema has them (``$`` is the
    end of the text; Python's ``re.search``, used by python-jsonschema, also matches
    before a final newline)."""
    found = schemas.components(max_records=10)
    root = {"$ref": schemas.REF + name, "components": {"schemas": found}}
    return jsonschema_rs.Draft202012Validator(root)


def _accepted(validate: Any, record: dict[str, Any]) -> bool:
    try:
        validate(record, line=1)
    except ValidationError:
        return False
    return True


EVENT = {"model": "churn", "latency_ms": 1.5}
EVENT_CASES = [
    {},
    {"ts": "2024-02-29T23:59:59.123456789+05:30"},
    {"ts": "2023-02-29T00:00:00Z"},
    {"ts": "2100-02-29T00:00:00Z"},
    {"ts": "2000-02-29T00:00:00Z"},
    {"ts": "1969-12-31T23:59:59Z"},
    {"ts": "1970-01-01T00:00:00Z"},
    {"ts": "2026-04-31T00:00:00Z"},
    {"ts": "2026-01-01T24:00:00Z"},
    {"ts": "2026-01-01T00:00:60Z"},
    {"ts": "2026-01-01T00:00:00+24:00"},
    {"ts": "2026-01-01T00:00:00Z\n"},
    {"ts": "2026-01-01 00:00:00Z"},
    {"ts": "2026-01-01 00:00:00.000000Z"},
    {"ts": "2026-01-01x00:00:00.000000Z"},
    {"ts": "2026-01-01t00:00:00.000000Z"},
    {"ts": "2026-01-01T00:00:00.12345ZZ"},
    {"ts": "\u0662\u0660\u0662\u0666-01-01T00:00:00Z"},
    {"ts": None},
    {"model": "m1\n"},
    {"model": "a" * 128},
    {"model": "a" * 129},
    {"model": "-x"},
    {"version": "v2 (é)"},
    {"version": "v\u202e2"},
    {"version": "v\x00"},
    {"version": ""},
    {"version": None},
    {"request_id": "r" * 256},
    {"request_id": "r" * 257},
    {"event_id": "e\u2028"},
    {"features": {"a\x00b": 1}},
    {"features": {"x": "\x00 free text"}},
    {"features": {"x": "s" * 2049}},
    {"features": {"x": [1]}},
    {"features": {"": 1}},
    {"features": None},
    {"labels": {"region": "eu"}},
    {"labels": {"region": ""}},
    {"labels": {"1x": "eu"}},
    {"labels": {"region": "eu\n"}},
    {"labels": {"region": 1}},
    {"latency_ms": -0.1},
    {"latency_ms": wire.MAX_LATENCY_MS + 1},
    {"latency_ms": True},
    {"status": "error", "error": "ValueError"},
    {"status": "failed"},
    {"status": None},
    {"batch_size": 32},
    {"batch_size": 32.0},
    {"batch_size": 32.5},
    {"batch_size": 0},
    {"batch_size": wire.MAX_BATCH_SIZE + 1},
    {"prediction": {"p": [0.1, 0.9]}},
    {"unknown": 1},
]


@pytest.mark.parametrize("change", EVENT_CASES, ids=repr)
def test_the_event_schema_and_the_validator_agree(change: dict[str, Any]) -> None:
    record = EVENT | change
    by_schema = _validator("Event").is_valid(record)
    assert by_schema == _accepted(wire.validate_event, record), record


@pytest.mark.parametrize("ts", ["1970-01-01T00:30:00+01:00", "9999-12-31T23:59:59-00:30"], ids=repr)
def test_an_offset_out_of_range_is_the_one_time_rule_the_pattern_cannot_say(ts: str) -> None:
    record = EVENT | {"ts": ts}
    assert _validator("Event").is_valid(record) and not _accepted(wire.validate_event, record)
    assert (
        "1970-01-01T00:30:00+01:00 is refused" in schemas.event()["properties"]["ts"]["description"]
    )


@pytest.mark.parametrize(
    ("kind", "record"),
    [
        ("Feedback", {"model": "m", "request_id": "r1", "label": None}),
        ("Feedback", {"model": "m", "request_id": "r1"}),
        ("Feedback", {"model": "m", "request_id": None, "label": 1}),
        ("Feedback", {"model": "m", "request_id": "r\n", "label": 1}),
        ("Feedback", {"model": "m", "request_id": "r", "label": 1, "ts": "1960-01-01T00:00:00Z"}),
        ("Registration", {"model": "m", "task": "regression", "params": {"C": 1}}),
        ("Registration", {"model": "m", "task": "ranking"}),
        ("Registration", {"model": "m", "params": [1]}),
        ("Registration", {"model": "m", "code_version": "abc\x7f"}),
    ],
    ids=repr,
)
def test_feedback_and_registration_schemas_agree(kind: str, record: dict[str, Any]) -> None:
    validate = wire.validate_feedback if kind == "Feedback" else wire.validate_registration
    assert _validator(kind).is_valid(record) == _accepted(validate, record), record


def test_a_body_is_an_array_within_the_record_limit_or_one_record() -> None:
    body = _validator("Events")
    assert body.is_valid([EVENT] * 10) and body.is_valid(EVENT) and body.is_valid([])
    assert not body.is_valid([EVENT] * 11)


def test_the_document_describes_answers_auth_and_content_types(sidecar: SidecarProcess) -> None:
    import json
    import urllib.request

    with urllib.request.urlopen(sidecar.url + "/openapi.json", timeout=10) as r:
        doc = json.loads(r.read())
    paths = doc["paths"]
    metrics = paths["/metrics"]["get"]["responses"]["200"]["content"]
    assert list(metrics) == ["text/plain"]
    for path, ops in paths.items():
        for method, op in ops.items():
            for status, answer in op["responses"].items():
                if status.startswith("4"):
                    schema = answer["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Error"}, (path, method)
            secured = path.startswith("/v1/") or path == "/metrics"
            assert ("security" in op) == secured, (path, method)
            assert ("401" in op["responses"]) == secured, (path, method)
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    body = paths["/v1/events"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/Events"}
    assert doc["components"]["schemas"]["Event"]["required"] == ["model", "latency_ms"]
