"""exporters/fluent-bit and exporters/fluentd: pipelines that write mlwatch events straight
into the Elasticsearch data streams, in the layout of ``mlwatch.elastic.documents``.

Neither Fluent Bit nor Fluentd can be installed here, so:

* ``mlwatch.lua`` runs for real in LuaJIT (``lupa``), the Lua Fluent Bit embeds, behind a
  harness that converts records the way Fluent Bit's ``flb_lua.c`` does (msgpack maps and
  arrays become tables marked with their type, null becomes ``flb_null``, integer-valued
  numbers go back as integers); the pipeline around it (filters in order, ``rewrite_tag``,
  output matching, the es output's ``@timestamp`` and ``_id``) is replayed from
  ``fluent-bit.yaml`` itself.
* the Fluentd filter (``plugin/filter_mlwatch.rb``) runs for real in Ruby (Debian's
  ``ruby``) on a stub of the three Fluentd classes it touches; ``fluent.conf`` is parsed
  and its routing replayed.

Every document is compared, field by field and type by type, with
``event_document(event_row(validate_event(record)), Origin(...))`` (or the feedback
equivalents) for the same record. Differences, by design:

* host.name / kubernetes.* describe the machine the pipeline runs on (here: this one),
  as they describe the sidecar's machine when the sidecar writes;
* Fluent Bit: the document has no ``@timestamp``; the es output adds it from the record
  time, which the filter sets to the event's ts, with nine fraction digits
  (``...05.000006000Z`` for ``...05.000006Z``) - the same instant;
* a record without ``event_id`` (or ``ts``) gets a content-derived UUIDv7 (or the record
  time) where the sidecar would draw a random one (or take the time of receipt);
* Lua has one number type: ``prediction: 2.0`` is indexed like ``2`` (also as a class);
* Fluent Bit's registration ids are a 40-hex-digit content hash, not ``registration_id``'s
  SHA-256 (Fluentd's are exactly ``registration_id``).
"""

from __future__ import annotations

import json
import math
import os
import re
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlwatch.elastic.documents import (
    DEAD_LETTER,
    FEEDBACK,
    MODELS,
    PREDICTIONS,
    Origin,
    event_document,
    feedback_document,
    registration_document,
    registration_id,
    stream_name,
)
from mlwatch.errors import ValidationError
from mlwatch.store import event_row, feedback_row
from mlwatch.wire import format_ts, validate_event, validate_feedback, validate_registration
from tests.helpers import IN_CI, REPO, require_binary

ROOT = REPO
FLUENT_BIT = ROOT / "exporters" / "fluent-bit"
FLUENTD = ROOT / "exporters" / "fluentd"
UUID7 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
RECORD_TIME = (1_767_323_045, 123_456_789)  # when the forward input received the record
POD = {"POD_NAME": "model-7f9c-abcde", "POD_NAMESPACE": "ml"}
DROPS = "mlwatch.drops"  # drop reports (mlwatch.client.fluent); documents.py has no dataset yet


# --- samples -----------------------------------------------------------------------------------

EVENTS: dict[str, dict[str, Any]] = {
    "ok_everything": {
        "event_id": "0190c1de-0000-7000-8000-000000000001",
        "ts": "2026-01-02T03:04:05.000006Z",
        "model": "iris",
        "version": "3",
        "request_id": "r-1",
        "features": {"x": 1.5, "n": 3, "neg": -2.25, "c": "a", "b": True, "missing": None},
        "prediction": 1,
        "latency_ms": 2.5,
        "status": "ok",
        "code_version": "9f2c1e0",
        "run_id": "run-7",
        "labels": {"trace_id": "t9", "region": "eu"},
        "batch_size": 4,
    },
    "error_no_request_id": {
        "event_id": "0190c1de-0000-7000-8000-000000000002",
        "ts": "2026-01-02T03:04:06.5Z",
        "model": "iris",
        "version": "3",
        "status": "error",
        "error": "ValueError",
        "latency_ms": 0.25,
        "features": None,
    },
    "string_prediction_offset_ts": {
        "event_id": "e-3",
        "ts": "2026-03-04T05:06:07.123456789+02:00",
        "model": "iris",
        "request_id": "r-3",
        "prediction": "setosa",
        "latency_ms": 3,
        "labels": {"region": "us"},
    },
    "float_prediction_no_ts_no_id": {
        "model": "churn-v2",
        "request_id": "r-4",
        "prediction": 0.731,
        "latency_ms": 1.25,
        "features": {"tenure": 12},
    },
    "bool_prediction": {
        "event_id": "e-5",
        "ts": "2026-01-02T03:04:05Z",
        "model": "spam",
        "version": "1",
        "prediction": True,
        "latency_ms": 0.5,
        "labels": {"trace_id": "abc"},
    },
    "nested_prediction_empty_features": {
        "event_id": "e-6",
        "ts": "2026-01-02T03:04:05.1Z",
        "model": "iris",
        "prediction": {"label": "a", "proba": [0.1, 0.9], "top": [{"k": "a", "p": 0.9}]},
        "features": {},
        "latency_ms": 7.125,
        "labels": {},
    },
    "list_prediction_batch": {
        "event_id": "e-7",
        "ts": "2026-01-02T03:04:05.999999Z",
        "model": "iris",
        "request_id": "batch-1:0",
        "prediction": [0.2, 0.8],
        "latency_ms": 12.0,
        "batch_size": 32,
        "features": {"f0": 0.0, "f1": -1, "f2": 1e-7},
    },
    "null_prediction_unicode": {
        "event_id": "e-8",
        "ts": "2026-01-02T03:04:05Z",
        "model": "geo",
        "request_id": "réq-ü-1",
        "prediction": None,
        "latency_ms": 0.0000025,
        "features": {"city": "Zürich", "emoji": "🙂"},
        "code_version": "v1.2.3",
    },
    "large_int_prediction": {
        "event_id": "e-9",
        "ts": "2026-01-02T03:04:05Z",
        "model": "ids",
        "prediction": 12345678901,
        "latency_ms": 0.0000035,
        "status": "ok",
    },
    "empty_list_prediction": {
        "event_id": "e-10",
        "ts": "2026-01-02T03:04:05Z",
        "model": "recsys",
        "prediction": [],
        "latency_ms": 1,
    },
}

FEEDBACK_RECORDS: dict[str, dict[str, Any]] = {
    "int_label": {
        "feedback_id": "f-1",
        "model": "iris",
        "request_id": "r-1",
        "label": 1,
        "ts": "2026-01-03T00:00:00Z",
    },
    "string_label_no_ts_no_id": {"model": "iris", "request_id": "r-2", "label": "cat"},
    "null_label": {
        "feedback_id": "f-3",
        "model": "iris",
        "request_id": "r-3",
        "label": None,
        "ts": "2026-01-03T00:00:00.5-05:00",
    },
    "nested_label": {
        "feedback_id": "f-4",
        "model": "iris",
        "request_id": "r-4",
        "label": {"a": [1, 2], "b": None},
        "ts": "2026-01-03T00:00:00Z",
    },
    "bool_label": {
        "feedback_id": "f-5",
        "model": "spam",
        "request_id": "r-5",
        "label": False,
        "ts": "2026-01-03T00:00:00Z",
    },
    "float_label": {
        "feedback_id": "f-6",
        "model": "reg",
        "request_id": "r-6",
        "label": 0.5,
        "ts": "2026-01-03T00:00:00Z",
    },
}

REGISTRATIONS: dict[str, dict[str, Any]] = {
    "everything": {
        "model": "iris",
        "version": "3",
        "code_version": "9f2c1e0",
        "run_id": "r-7",
        "task": "classification",
        "params": {"C": 1, "kernel": "rbf", "cv": [3, 5], "grid": {"a": None, "b": True}},
    },
    "minimal": {"model": "churn"},
    "empty_params": {"model": "churn", "version": "2", "params": {}, "task": "regression"},
}

DROP_REPORTS: dict[str, dict[str, Any]] = {
    "with_report_id": {
        "model": "iris",
        "version": "3",
        "reason": "queue_full",
        "count": 12,
        "report_id": "rep-1",
    },
    "no_version_no_id": {"model": "iris", "reason": "send_failed", "count": 0},
}

_OK = {"model": "iris", "latency_ms": 1.0}
_DEEP: Any = 1
for _ in range(33):
    _DEEP = [_DEEP]

INVALID_EVENTS: dict[str, dict[str, Any]] = {
    "no_model": {"latency_ms": 1.0},
    "bad_model": {**_OK, "model": "bad model"},
    "no_latency": {"model": "iris"},
    "latency_string": {**_OK, "latency_ms": "fast"},
    "latency_negative": {**_OK, "latency_ms": -1},
    "latency_over_a_week": {**_OK, "latency_ms": 604_800_001},
    "latency_nan": {**_OK, "latency_ms": math.nan},
    "latency_bool": {**_OK, "latency_ms": True},
    "bad_status": {**_OK, "status": "maybe"},
    "null_status": {**_OK, "status": None},
    "unknown_field": {**_OK, "colour": "red"},
    "ts_words": {**_OK, "ts": "yesterday"},
    "ts_feb_30": {**_OK, "ts": "2026-02-30T00:00:00Z"},
    "ts_second_60": {**_OK, "ts": "2026-01-01T00:00:60Z"},
    "ts_before_year_1": {**_OK, "ts": "0001-01-01T00:30:00+01:00"},
    "ts_offset_24h": {**_OK, "ts": "2026-01-01T00:00:00+24:00"},
    "ts_ten_digit_fraction": {**_OK, "ts": "2026-01-01T00:00:00.1234567891Z"},
    "label_name": {**_OK, "labels": {"1bad": "x"}},
    "label_value": {**_OK, "labels": {"a": 1}},
    "labels_list": {**_OK, "labels": ["a"]},
    "too_many_labels": {**_OK, "labels": {f"l{i}": "v" for i in range(33)}},
    "batch_size_zero": {**_OK, "batch_size": 0},
    "batch_size_string": {**_OK, "batch_size": "32"},
    "feature_list": {**_OK, "features": {"x": [1]}},
    "feature_nan": {**_OK, "features": {"x": math.inf}},
    "feature_too_long": {**_OK, "features": {"s": "x" * 2049}},
    "features_list": {**_OK, "features": [1, 2]},
    "too_many_features": {**_OK, "features": {f"f{i}": i for i in range(2001)}},
    "prediction_too_deep": {**_OK, "prediction": _DEEP},
    "prediction_nan_inside": {**_OK, "prediction": [0.5, math.nan]},
    "empty_request_id": {**_OK, "request_id": ""},
    "request_id_control_char": {**_OK, "request_id": "a\x00b"},
    "request_id_too_long": {**_OK, "request_id": "r" * 257},
    "event_id_too_long": {**_OK, "event_id": "e" * 65},
    "empty_version": {**_OK, "version": ""},
    "error_too_long": {**_OK, "error": "E" * 129},
    "run_id_not_string": {**_OK, "run_id": 7},
}

INVALID_REGISTRATIONS: dict[str, dict[str, Any]] = {
    "no_model": {"version": "1"},
    "bad_task": {"model": "iris", "task": "clustering"},
    "params_list": {"model": "iris", "params": [1]},
    "unknown_field": {"model": "iris", "latency_ms": 1},
}

INVALID_FEEDBACK: dict[str, dict[str, Any]] = {
    "no_request_id": {"model": "iris", "label": 1},
    "no_label": {"model": "iris", "request_id": "r-1"},
    "no_model": {"request_id": "r-1", "label": 1},
    "unknown_field": {"model": "iris", "request_id": "r-1", "label": 1, "latency_ms": 1},
    "bad_ts": {"model": "iris", "request_id": "r-1", "label": 1, "ts": "2026-13-01T00:00:00Z"},
    "label_nan": {"model": "iris", "request_id": "r-1", "label": [math.nan]},
}


# --- expectations from mlwatch itself -----------------------------------------------------------


def origin() -> Origin:
    return Origin(
        host=socket.gethostname(), pod=POD["POD_NAME"], namespace=POD["POD_NAMESPACE"], node=None
    )


def expected_event(record: dict[str, Any]) -> dict[str, Any]:
    if record.get("ts") is None:  # the pipeline takes the record time, as the sidecar takes now
        record = {**record, "ts": format_ts(RECORD_TIME[0] * 10**9 + RECORD_TIME[1])}
    return event_document(event_row(validate_event(record)), origin())


def expected_feedback(record: dict[str, Any]) -> dict[str, Any]:
    if record.get("ts") is None:
        record = {**record, "ts": format_ts(RECORD_TIME[0] * 10**9 + RECORD_TIME[1])}
    return feedback_document(feedback_row(validate_feedback(record)), origin())


def python_field(validate: Any, record: dict[str, Any]) -> str | None:
    with pytest.raises(ValidationError) as info:
        validate(record)
    return info.value.field


def assert_same(got: Any, want: Any, path: str = "doc") -> None:
    """Equal values of the same JSON type (an int equals the same float: JSON has one number
    type; a bool never equals a number)."""
    if isinstance(want, bool) or isinstance(got, bool):
        assert type(got) is type(want) and got == want, f"{path}: {got!r} != {want!r}"
    elif isinstance(want, (int, float)):
        assert isinstance(got, (int, float)) and got == want, f"{path}: {got!r} != {want!r}"
    elif isinstance(want, dict):
        assert isinstance(got, dict), f"{path}: {got!r} is not an object"
        assert sorted(got) == sorted(want), f"{path}: keys {sorted(got)} != {sorted(want)}"
        for key in want:
            assert_same(got[key], want[key], f"{path}.{key}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), f"{path}: {got!r} != {want!r}"
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert_same(g, w, f"{path}[{i}]")
    else:
        assert type(got) is type(want) and got == want, f"{path}: {got!r} != {want!r}"


def assert_content_id(doc_id: str, ts: str) -> None:
    """A UUIDv7 whose 48-bit time is the event's millisecond."""
    assert UUID7.match(doc_id), doc_id
    _, us = _parse_ts(ts)
    assert int(doc_id.replace("-", "")[:12], 16) == us // 1000


def _parse_ts(ts: str) -> tuple[str, int]:
    from mlwatch.wire import parse_ts

    return parse_ts(ts, line=None)


# --- Fluent Bit: the Lua filter in LuaJIT ---------------------------------------------------------


def _luajit() -> Any:
    try:
        from lupa import luajit21 as luajit
    except ImportError:
        try:
            from lupa import luajit20 as luajit
        except ImportError:
            message = "lupa with LuaJIT is not installed (pip install lupa)"
            if IN_CI:
                pytest.fail(message)
            pytest.skip(message)
    return luajit


class FluentBitLua:
    """The lua filter as Fluent Bit runs it (plugins/filter_lua, src/flb_lua.c)."""

    def __init__(self, script: Path, *, call: str, time_as_table: bool, enable_flb_null: bool):
        self.luajit = _luajit()
        self.lua = self.luajit.LuaRuntime(unpack_returned_tuples=True)
        self.lua.execute(script.read_text(encoding="utf-8"))  # the script loads first, ...
        if enable_flb_null:  # ... then Fluent Bit sets the global (a NULL light userdata)
            self.lua.execute(
                "flb_null = setmetatable({}, {__tostring = function() return 'flb_null' end})"
            )
        self.null = "flb_null" if enable_flb_null else "nil"
        self.time_as_table = time_as_table
        self.function = self.lua.globals()[call]
        assert self.function is not None, f"{script} defines no function {call}"
        self.is_null = self.lua.eval(
            "function(v) return flb_null ~= nil and rawequal(v, flb_null) end"
        )
        self.describe = self.lua.eval(
            "function(t) local m = getmetatable(t); local n = 0; local max = 0; local ints = true;"
            " for k in pairs(t) do n = n + 1; if type(k) == 'number' and k > 0 and k % 1 == 0"
            " then if k > max then max = k end else ints = false end end;"
            " return (type(m) == 'table' and m.type) or -1, n, (ints and max == n) and n or 0 end"
        )

    # msgpack -> Lua (flb_lua_pushmsgpack)
    def literal(self, value: Any) -> str:
        if value is None:
            return self.null
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int):
            return repr(value)
        if isinstance(value, float):
            if math.isnan(value):
                return "(0/0)"
            if math.isinf(value):
                return "(1/0)" if value > 0 else "(-1/0)"
            return repr(value)
        if isinstance(value, str):
            return (
                '"'
                + "".join(
                    chr(b) if 32 <= b < 127 and chr(b) not in '"\\' else f"\\{b:03d}"
                    for b in value.encode("utf-8")
                )
                + '"'
            )
        if isinstance(value, list):
            return "setmetatable({" + ",".join(self.literal(v) for v in value) + "}, {type = 1})"
        if isinstance(value, dict):
            items = ",".join(f"[{self.literal(k)}]={self.literal(v)}" for k, v in value.items())
            return "setmetatable({" + items + "}, {type = 2})"
        raise TypeError(type(value))

    # Lua -> msgpack (flb_lua_tomsgpack)
    def value(self, v: Any) -> Any:
        lua_type = self.luajit.lua_type
        if lua_type(v) == "table":
            if self.is_null(v):
                return None
            mark, _count, array_len = self.describe(v)
            if mark == 1 or (mark == -1 and array_len > 0):
                return [self.value(v[i]) for i in range(1, len(v) + 1)]
            return {self.value(k): self.value(v[k]) for k in list(v.keys())}
        if isinstance(v, float) and v.is_integer() and abs(v) < 2**63:
            return int(v)  # lua_isinteger: an integer-valued number goes out as an integer
        assert lua_type(v) is None, f"cannot serialize a Lua {lua_type(v)}"
        return v

    def __call__(
        self, tag: str, time: tuple[int, int], record: dict[str, Any]
    ) -> tuple[int, tuple[int, int], dict[str, Any] | None]:
        table = self.lua.execute("return " + self.literal(record))
        if self.time_as_table:
            stamp = self.lua.table_from({"sec": time[0], "nsec": time[1]})
        else:
            stamp = time[0] + time[1] / 1e9
        code, new_time, new_record = self.function(tag, stamp, table)
        code = int(code)
        if code == -1:
            return code, time, None
        if code == 0:
            return code, time, record
        assert code in (1, 2), f"unexpected return code {code}"
        if code == 1:
            if self.time_as_table:
                time = (int(new_time["sec"]), int(new_time["nsec"]))
            else:
                time = (math.floor(new_time), round((new_time % 1) * 1e9))
        out = self.value(new_record)
        assert isinstance(out, dict), "the filter must return a map"
        return code, time, out


def fluent_bit_config() -> dict[str, Any]:
    return yaml.safe_load((FLUENT_BIT / "fluent-bit.yaml").read_text(encoding="utf-8"))


def flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).lower() in ("on", "true", "yes")


def tag_matches(plugin: dict[str, Any], tag: str) -> bool:
    """Fluent Bit's router: `match` is a wildcard pattern, `match_regex` a regex."""
    if "match_regex" in plugin:
        return re.search(plugin["match_regex"], tag) is not None
    pattern = "^" + re.escape(plugin["match"]).replace(r"\*", ".*") + "$"
    return re.match(pattern, tag) is not None


def record_accessor(pattern: str, record: dict[str, Any]) -> Any:
    """$key['sub']['subsub'] (Fluent Bit's record accessor)."""
    m = re.fullmatch(r"\$([A-Za-z0-9_@.-]+)((?:\['[^']+'\])*)", pattern)
    assert m, f"not a record accessor: {pattern}"
    value: Any = record.get(m.group(1))
    for key in re.findall(r"\['([^']+)'\]", m.group(2)):
        value = value.get(key) if isinstance(value, dict) else None
    return value


def es_time(time: tuple[int, int], output: dict[str, Any]) -> str:
    """The es output's time key: Time_Key_Format plus .%09d (time_key_nanos) or .%03d."""
    fmt = output.get("time_key_format", "%Y-%m-%dT%H:%M:%S")
    import datetime as dt

    text = dt.datetime.fromtimestamp(time[0], dt.timezone.utc).strftime(fmt)
    if flag(output.get("time_key_nanos", False)):
        return f"{text}.{time[1]:09d}Z"
    return f"{text}.{time[1] // 1_000_000:03d}Z"


class FluentBitPipeline:
    """fluent-bit.yaml replayed: filters in order, rewrite_tag re-emission, es outputs."""

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        self.config = config or fluent_bit_config()
        self.filters = self.config["pipeline"]["filters"]
        self.outputs = self.config["pipeline"]["outputs"]
        self.lua: dict[int, FluentBitLua] = {}
        for i, f in enumerate(self.filters):
            if f["name"] == "lua":
                self.lua[i] = FluentBitLua(
                    FLUENT_BIT / f["script"],
                    call=f["call"],
                    time_as_table=flag(f.get("time_as_table")),
                    enable_flb_null=flag(f.get("enable_flb_null")),
                )

    def run(
        self, tag: str, record: dict[str, Any], time: tuple[int, int] = RECORD_TIME
    ) -> list[dict[str, Any]]:
        """-> one entry per record that reaches the output stage: tag, outputs, bulk item."""
        queue = [(tag, time, record)]
        delivered = []
        while queue:
            tag, time, rec = queue.pop(0)
            dropped = False
            for i, f in enumerate(self.filters):
                if not tag_matches(f, tag):
                    continue
                if f["name"] == "lua":
                    code, time, out = self.lua[i](tag, time, rec)
                    if code == -1:
                        dropped = True
                        break
                    assert out is not None
                    rec = out
                elif f["name"] == "rewrite_tag":
                    key, regex, new_tag, keep = f["rule"].split()
                    value = record_accessor(key, rec)
                    if isinstance(value, str) and re.search(regex, value):
                        queue.append((new_tag, time, rec))
                        if not flag(keep):
                            dropped = True
                            break
                else:
                    raise AssertionError(f"the replay does not know filter {f['name']}")
            if dropped:
                continue
            outputs = [o for o in self.outputs if tag_matches(o, tag)]
            items = []
            for o in outputs:
                assert o["name"] == "es"
                time_key = o.get("time_key", "@timestamp")
                assert time_key not in rec, f"{time_key} twice: Elasticsearch refuses that"
                items.append(
                    {
                        "index": o["index"],
                        "_id": record_accessor(o["id_key"], rec),
                        "op": o["write_operation"],
                        "source": {time_key: es_time(time, o), **rec},
                    }
                )
            delivered.append({"tag": tag, "time": time, "record": rec, "items": items})
        return delivered


@pytest.fixture
def kube_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in POD.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("NODE_NAME", raising=False)


@pytest.fixture
def pipeline(kube_env: None) -> FluentBitPipeline:
    return FluentBitPipeline()


def only_item(delivered: list[dict[str, Any]]) -> dict[str, Any]:
    assert len(delivered) == 1, delivered
    assert len(delivered[0]["items"]) == 1, (
        f"{delivered[0]['tag']} reaches {len(delivered[0]['items'])} outputs"
    )
    return delivered[0]["items"][0]


def check_fluent_bit_document(
    item: dict[str, Any], want: dict[str, Any], stream: str, record: dict[str, Any], id_key: str
) -> None:
    assert item["index"] == stream
    assert item["op"] == "create"
    source = dict(item["source"])
    stamp = source.pop("@timestamp")
    assert stamp == want.pop("@timestamp")[:-1] + "000Z"  # the same instant, in nanoseconds
    if record.get(id_key) is None:
        assert_content_id(source["event"]["id"], stamp)
        want["event"]["id"] = source["event"]["id"]
    assert_same(source, want)
    assert item["_id"] == source["event"]["id"]


@pytest.mark.parametrize("name", sorted(EVENTS))
def test_fluent_bit_event_documents(pipeline: FluentBitPipeline, name: str) -> None:
    record = EVENTS[name]
    item = only_item(pipeline.run(f"mlwatch.{record['model']}", record))
    check_fluent_bit_document(
        item, expected_event(record), stream_name(PREDICTIONS, "default"), record, "event_id"
    )


@pytest.mark.parametrize("name", sorted(FEEDBACK_RECORDS))
def test_fluent_bit_feedback_documents(pipeline: FluentBitPipeline, name: str) -> None:
    record = FEEDBACK_RECORDS[name]
    item = only_item(pipeline.run("mlwatch.feedback", record))
    check_fluent_bit_document(
        item, expected_feedback(record), stream_name(FEEDBACK, "default"), record, "feedback_id"
    )


def test_fluent_bit_content_ids_are_stable(pipeline: FluentBitPipeline) -> None:
    record = EVENTS["float_prediction_no_ts_no_id"]
    first = only_item(pipeline.run("mlwatch.churn-v2", record))["_id"]
    again = only_item(pipeline.run("mlwatch.churn-v2", dict(record)))["_id"]
    other = only_item(pipeline.run("mlwatch.churn-v2", {**record, "request_id": "r-5"}))["_id"]
    assert first == again != other


def _dead_letter_checks(
    delivered: list[dict[str, Any]],
    tag: str,
    record: dict[str, Any],
    field: str | None,
    dataset: str = PREDICTIONS,
) -> dict[str, Any]:
    assert len(delivered) == 1 and delivered[0]["tag"] == "mlwatch_deadletter", delivered
    item = only_item(delivered)
    assert item["index"] == stream_name(DEAD_LETTER, "default")
    doc = item["source"]
    assert doc["event"]["dataset"] == DEAD_LETTER and doc["event"]["kind"] == "pipeline_error"
    dead = doc["mlwatch"]["dead_letter"]
    assert doc["mlwatch"] == {"tag": tag, "dead_letter": dead}
    assert dead["data_stream"] == stream_name(dataset, "*") and dead["status"] == 422
    assert doc["error"]["type"] == "ValidationError"
    named = re.match(r"field '([^']*)': ", doc["error"]["message"])
    assert (named.group(1) if named else None) == field, doc["error"]["message"]
    assert UUID7.match(item["_id"]) and item["_id"] == doc["event"]["id"]
    assert doc["host"] == {"name": socket.gethostname()}
    return doc


@pytest.mark.parametrize("name", sorted(INVALID_EVENTS))
def test_fluent_bit_dead_letters_what_the_sidecar_refuses(
    pipeline: FluentBitPipeline, name: str
) -> None:
    record = INVALID_EVENTS[name]
    field = python_field(validate_event, record)
    doc = _dead_letter_checks(pipeline.run("mlwatch.iris", record), "mlwatch.iris", record, field)
    original = json.loads(doc["mlwatch"]["dead_letter"]["document"])
    if "nan" not in name:  # NaN has no JSON form: event.original shows it as null
        assert_same(original, record)
    assert doc["@timestamp"] == es_time(RECORD_TIME, {"time_key_nanos": True})


@pytest.mark.parametrize("name", sorted(INVALID_FEEDBACK))
def test_fluent_bit_dead_letters_bad_feedback(pipeline: FluentBitPipeline, name: str) -> None:
    record = INVALID_FEEDBACK[name]
    field = python_field(validate_feedback, record)
    _dead_letter_checks(
        pipeline.run("mlwatch.feedback", record), "mlwatch.feedback", record, field, FEEDBACK
    )


@pytest.mark.parametrize("name", sorted(INVALID_REGISTRATIONS))
def test_fluent_bit_dead_letters_bad_registrations(pipeline: FluentBitPipeline, name: str) -> None:
    record = INVALID_REGISTRATIONS[name]
    with pytest.raises(ValidationError) as info:
        validate_registration(record)
    _dead_letter_checks(
        pipeline.run("mlwatch.models", record), "mlwatch.models", record, info.value.field, MODELS
    )


@pytest.mark.parametrize("name", sorted(REGISTRATIONS))
def test_fluent_bit_registration_documents(pipeline: FluentBitPipeline, name: str) -> None:
    record = REGISTRATIONS[name]
    item = only_item(pipeline.run("mlwatch.models", record))
    assert item["index"] == stream_name(MODELS, "default")
    want = registration_document(
        validate_registration(record), origin(), format_ts(RECORD_TIME[0] * 10**9 + RECORD_TIME[1])
    )
    source = dict(item["source"])
    want.pop("@timestamp")  # the time of receipt: the record time, to the nanosecond
    assert source.pop("@timestamp") == es_time(RECORD_TIME, {"time_key_nanos": True})
    # the id is a 40-hex-digit content hash, as registration_id, but FNV, not SHA-256
    assert (
        re.fullmatch(r"[0-9a-f]{40}", source["event"]["id"])
        and item["_id"] == source["event"]["id"]
    )
    want["event"]["id"] = source["event"]["id"]
    assert_same(source, want)
    again = only_item(pipeline.run("mlwatch.models", record, (RECORD_TIME[0] + 60, 0)))
    assert again["_id"] == item["_id"]  # the same registration from another process


def test_fluent_bit_registration_ids_follow_the_content(pipeline: FluentBitPipeline) -> None:
    ids = {only_item(pipeline.run("mlwatch.models", r))["_id"] for r in REGISTRATIONS.values()}
    assert len(ids) == len(REGISTRATIONS)


@pytest.mark.parametrize("name", sorted(DROP_REPORTS))
def test_fluent_bit_drop_reports(pipeline: FluentBitPipeline, name: str) -> None:
    record = DROP_REPORTS[name]
    item = only_item(pipeline.run("mlwatch.drops", record))
    assert item["index"] == stream_name(DROPS, "default")
    doc = item["source"]
    assert doc["event"]["dataset"] == DROPS and doc["event"]["kind"] == "metric"
    version = record.get("version", "unknown")
    assert doc["service"] == {"name": record["model"], "version": version}
    want = {
        "model": record["model"],
        "version": version,
        "reason": record["reason"],
        "dropped": record["count"],
    }
    if "report_id" in record:
        want["report_id"] = record["report_id"]
    assert_same(doc["mlwatch"], want)
    if "report_id" not in record:
        assert UUID7.match(item["_id"])
    else:  # a report is applied once: resent later, it is the same document
        assert re.fullmatch(r"[0-9a-f]{40}", item["_id"])
        later = only_item(pipeline.run("mlwatch.drops", record, (RECORD_TIME[0], 0)))
        assert later["_id"] == item["_id"]


def test_fluent_bit_integer_valued_float_prediction(pipeline: FluentBitPipeline) -> None:
    """The one documented difference of the Lua path: Lua cannot tell 2.0 from 2."""
    record = {
        "event_id": "e",
        "ts": "2026-01-02T03:04:05Z",
        "model": "reg",
        "prediction": 2.0,
        "latency_ms": 1.0,
    }
    ml = only_item(pipeline.run("mlwatch.reg", record))["source"]["mlwatch"]
    assert expected_event(record)["mlwatch"].get("prediction_class") is None
    assert ml["prediction_value"] == 2 and ml["prediction_class"] == "2"


@pytest.mark.parametrize(
    ("tag", "stream"),
    [
        ("mlwatch.iris", PREDICTIONS),
        ("mlwatch.churn-v2", PREDICTIONS),
        ("mlwatch.team.model.v2", PREDICTIONS),
        ("mlwatch.feedbackish", PREDICTIONS),
        ("mlwatch.events.feedback", PREDICTIONS),
        ("mlwatch.events.models", PREDICTIONS),
        ("mlwatch.feedback", FEEDBACK),
        ("mlwatch.models", MODELS),
        ("mlwatch.drops", DROPS),
    ],
)
def test_fluent_bit_every_tag_reaches_one_output(
    pipeline: FluentBitPipeline, tag: str, stream: str
) -> None:
    record = {
        FEEDBACK: FEEDBACK_RECORDS["int_label"],
        MODELS: REGISTRATIONS["minimal"],
        DROPS: DROP_REPORTS["with_report_id"],
    }.get(stream, {**_OK, "event_id": "x"})
    assert only_item(pipeline.run(tag, record))["index"] == stream_name(stream, "default")


def test_fluent_bit_leaves_other_tags_alone(pipeline: FluentBitPipeline) -> None:
    delivered = pipeline.run("kube.var.log.containers.app", {"log": "hello"})
    assert delivered == [
        {
            "tag": "kube.var.log.containers.app",
            "time": RECORD_TIME,
            "record": {"log": "hello"},
            "items": [],
        }
    ]


def test_fluent_bit_outputs_are_durable_and_idempotent() -> None:
    config = fluent_bit_config()
    assert config["service"]["storage.path"]
    assert config["service"]["storage.sync"] == "full"
    inputs = config["pipeline"]["inputs"]
    assert [i["name"] for i in inputs] == ["forward"]
    assert inputs[0]["storage.type"] == "filesystem"
    assert inputs[0]["port"] == "${MLWATCH_FLUENTD_PORT}"
    lua, rewrite = config["pipeline"]["filters"]
    assert (lua["name"], lua["match"], lua["call"]) == ("lua", "mlwatch.*", "mlwatch_document")
    assert flag(lua["time_as_table"]) and flag(lua["enable_flb_null"])
    assert rewrite["name"] == "rewrite_tag" and rewrite["emitter_storage.type"] == "filesystem"
    indexes = set()
    for out in config["pipeline"]["outputs"]:
        assert out["name"] == "es"
        assert flag(out["suppress_type_name"])
        assert out["write_operation"] == "create"
        assert out["id_key"] == "$event['id']"
        assert out["retry_limit"] in (False, "false", "False", "no_limits")
        assert out.get("time_key", "@timestamp") == "@timestamp" and flag(out["time_key_nanos"])
        assert not flag(out.get("replace_dots", False))
        assert not flag(out.get("logstash_format", False))
        assert "generate_id" not in out
        indexes.add(out["index"])
    assert indexes == {
        stream_name(d, "default") for d in (PREDICTIONS, FEEDBACK, MODELS, DROPS, DEAD_LETTER)
    }


def test_fluent_bit_alternative_route_to_the_sidecar() -> None:
    text = (FLUENT_BIT / "fluent-bit.yaml").read_text(encoding="utf-8")
    block = text.split("Replace the filters and outputs above with:")[1]
    block = block.split("# --- end of the alternative route")[0]
    lines = [line[1:] for line in block.splitlines() if line.startswith("#")]
    alternative = yaml.safe_load("\n".join(lines))
    assert alternative["filters"] == []
    (out,) = alternative["outputs"]
    assert out["name"] == "forward" and out["match"] == "mlwatch.*"
    assert out["port"] == "${MLWATCH_FORWARD_PORT}"
    assert flag(out["require_ack_response"])
    assert out["retry_limit"] is False


# --- Fluentd: the filter plugin in Ruby, the configuration parsed -------------------------------

FLUENTD_STUB = r"""
# The three pieces of Fluentd the mlwatch filter touches, as Fluentd v1 defines them.
module Fluent
  class EventTime
    attr_reader :sec, :nsec
    def initialize(sec, nsec = 0)
      @sec = sec
      @nsec = nsec
    end
  end

  class MultiEventStream
    include Enumerable
    def initialize
      @events = []
    end

    def add(time, record)
      @events << [time, record]
    end

    def each(&block)
      @events.each(&block)
    end
  end

  module Plugin
    FILTERS = {}
    def self.register_filter(name, klass)
      FILTERS[name] = klass
    end

    class Filter
      attr_accessor :router

      def self.desc(_text); end

      def self.config_param(name, type, list: nil, default: nil)
        (@params ||= {})[name] = [type, list, default]
      end

      def self.params
        @params || {}
      end

      def configure(conf)
        self.class.params.each do |name, (type, list, default)|
          value = conf.fetch(name.to_s, default)
          value = value.to_sym if type == :enum
          raise ArgumentError, "#{name}: #{value}" if list && !list.include?(value)
          instance_variable_set("@#{name}", value)
        end
      end
    end
  end
end
"""

FLUENTD_DRIVER = r"""
require 'json'
require 'fluent/plugin/filter'
require 'filter_mlwatch'

class Router
  attr_reader :errors
  def initialize
    @errors = []
  end

  def emit_error_event(tag, time, record, error)
    @errors << [tag, time, record, error]
  end
end

def run(mode, tag, events)
  router = Router.new
  filter = Fluent::Plugin::FILTERS.fetch('mlwatch').new
  filter.router = router
  filter.configure('mode' => mode)
  stream = Fluent::MultiEventStream.new
  events.each { |time, record| stream.add(time, record) }
  out = filter.filter_stream(tag, stream).map do |time, record|
    { 'time' => [time.sec, time.nsec], 'record' => record }
  end
  [out, router.errors]
end

STDIN.each_line do |line|
  c = JSON.parse(line, allow_nan: true)
  time = Fluent::EventTime.new(c['sec'], c['nsec'])
  out, errors = run(c.fetch('mode', 'document'), c['tag'], [[time, c['record']]])
  dead, = run('deadletter', c['tag'], errors.map { |_, t, r, _| [t, r] })
  failures = errors.map do |tag, _, _, e|
    { 'tag' => tag, 'error' => e.class.name, 'field' => e.respond_to?(:field) ? e.field : nil }
  end
  puts JSON.generate({ 'out' => out, 'errors' => failures, 'dead' => dead }, allow_nan: true)
end
"""


@pytest.fixture(scope="module")
def ruby(tmp_path_factory: pytest.TempPathFactory) -> Any:
    binary = require_binary("ruby")
    stub_dir = tmp_path_factory.mktemp("fluentd-stub")
    (stub_dir / "fluent" / "plugin").mkdir(parents=True)
    (stub_dir / "fluent" / "plugin" / "filter.rb").write_text(FLUENTD_STUB)
    (stub_dir / "driver.rb").write_text(FLUENTD_DRIVER)

    def run(cases: list[dict[str, Any]], env: dict[str, str] | None = None) -> list[dict[str, Any]]:
        proc = subprocess.run(
            [
                binary,
                "-I",
                str(stub_dir),
                "-I",
                str(FLUENTD / "plugin"),
                str(stub_dir / "driver.rb"),
            ],
            input="".join(json.dumps(c) + "\n" for c in cases),
            capture_output=True,
            text=True,
            env={**os.environ, **(env or {})},
            timeout=120,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        return [json.loads(line) for line in proc.stdout.splitlines()]

    return run


def _fluentd_case(tag: str, record: dict[str, Any]) -> dict[str, Any]:
    return {"tag": tag, "sec": RECORD_TIME[0], "nsec": RECORD_TIME[1], "record": record}


def _kube() -> dict[str, str]:
    return {**POD, "NODE_NAME": ""}


def test_fluentd_event_and_feedback_documents(ruby: Any) -> None:
    cases = [(f"mlwatch.{r['model']}", r, expected_event(r), "event_id") for r in EVENTS.values()]
    cases += [
        ("mlwatch.feedback", r, expected_feedback(r), "feedback_id")
        for r in FEEDBACK_RECORDS.values()
    ]
    results = ruby([_fluentd_case(tag, record) for tag, record, _, _ in cases], env=_kube())
    for (tag, record, want, id_key), result in zip(cases, results, strict=True):
        assert result["errors"] == [] and result["dead"] == [], (tag, record, result)
        (event,) = result["out"]
        doc = event["record"]
        if record.get(id_key) is None:
            assert_content_id(doc["event"]["id"], doc["@timestamp"])
            want["event"]["id"] = doc["event"]["id"]
        assert_same(doc, want, f"{tag} {record}")
        _, us = _parse_ts(want["@timestamp"])
        assert event["time"] == [us // 10**6, us % 10**6 * 1000]  # the event time is the ts


def test_fluentd_refuses_what_the_sidecar_refuses(ruby: Any) -> None:
    cases = [("mlwatch.iris", r, python_field(validate_event, r)) for r in INVALID_EVENTS.values()]
    cases += [
        ("mlwatch.feedback", r, python_field(validate_feedback, r))
        for r in INVALID_FEEDBACK.values()
    ]
    cases += [
        ("mlwatch.models", r, python_field(validate_registration, r))
        for r in INVALID_REGISTRATIONS.values()
    ]
    results = ruby([_fluentd_case(tag, record) for tag, record, _ in cases], env=_kube())
    for (tag, record, field), result in zip(cases, results, strict=True):
        assert result["out"] == [], (tag, record)
        assert result["errors"] == [
            {"tag": tag, "error": "Mlwatch::Documents::Invalid", "field": field}
        ], (record, result["errors"])
        (dead,) = result["dead"]
        doc = dead["record"]
        assert doc["event"]["dataset"] == DEAD_LETTER and doc["event"]["kind"] == "pipeline_error"
        assert doc["error"]["type"] == "ValidationError"
        dead_letter = doc["mlwatch"]["dead_letter"]
        assert doc["mlwatch"] == {"tag": tag, "dead_letter": dead_letter}
        dataset = {"mlwatch.feedback": FEEDBACK, "mlwatch.models": MODELS}.get(tag, PREDICTIONS)
        assert dead_letter["data_stream"] == stream_name(dataset, "*")
        assert dead_letter["status"] == 422 and UUID7.match(doc["event"]["id"])
        assert doc["@timestamp"] == format_ts(RECORD_TIME[0] * 10**9 + RECORD_TIME[1])
        if not any(isinstance(v, float) and math.isnan(v) for v in _scalars(record)):
            assert_same(json.loads(dead_letter["document"]), record)


def _scalars(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in _scalars(v)]
    if isinstance(value, list):
        return [s for v in value for s in _scalars(v)]
    return [value]


def test_fluentd_error_label_wraps_what_elasticsearch_refused(ruby: Any) -> None:
    doc = expected_event(EVENTS["ok_everything"])  # what a 400 sends to @ERROR
    record = EVENTS["ok_everything"]  # valid, failed elsewhere (e.g. a buffer overflow)
    refused, other = ruby(
        [
            {**_fluentd_case("mlwatch.iris", doc), "mode": "deadletter"},
            {**_fluentd_case("mlwatch.iris", record), "mode": "deadletter"},
        ],
        env=_kube(),
    )
    for result, original, error, status in (
        (refused, doc, "ElasticsearchError", 400),
        (other, record, "ProcessingError", None),
    ):
        (dead,) = result["out"]
        assert dead["record"]["error"]["type"] == error
        assert dead["record"]["event"]["dataset"] == DEAD_LETTER
        dead_letter = dead["record"]["mlwatch"]["dead_letter"]
        assert dead_letter.get("status") == status
        assert_same(json.loads(dead_letter["document"]), original)


def test_fluentd_registrations_and_drop_reports(ruby: Any) -> None:
    regs = list(REGISTRATIONS.values())
    drops = list(DROP_REPORTS.values())
    results = ruby(
        [_fluentd_case("mlwatch.models", r) for r in regs]
        + [_fluentd_case("mlwatch.drops", r) for r in drops],
        env=_kube(),
    )
    received = format_ts(RECORD_TIME[0] * 10**9 + RECORD_TIME[1])
    for record, result in zip(regs, results[: len(regs)], strict=True):
        (event,) = result["out"]
        reg = validate_registration(record)
        want = registration_document(reg, origin(), received)
        assert_same(event["record"], want)  # the id too: SHA-256 of the same JSON
        assert event["record"]["event"]["id"] == registration_id(reg)
    for record, result in zip(drops, results[len(regs) :], strict=True):
        (event,) = result["out"]
        doc = event["record"]
        assert doc["event"]["dataset"] == DROPS and doc["event"]["kind"] == "metric"
        assert doc["mlwatch"]["dropped"] == record["count"]
        assert doc["mlwatch"].get("report_id") == record.get("report_id")
        assert doc["service"]["version"] == record.get("version", "unknown")


# --- fluent.conf ---------------------------------------------------------------------------


def parse_fluentd_config(text: str) -> list[dict[str, Any]]:
    """Fluentd's directive syntax: <name arg> ... </name>, `key value` lines, # comments."""
    root: dict[str, Any] = {"name": "root", "arg": None, "params": {}, "children": []}
    stack = [root]
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if m := re.fullmatch(r"<(@?\w+)(?:\s+([^>]+))?>", line):
            node = {"name": m.group(1), "arg": m.group(2), "params": {}, "children": [], "line": n}
            stack[-1]["children"].append(node)
            stack.append(node)
        elif m := re.fullmatch(r"</(@?\w+)>", line):
            assert stack[-1]["name"] == m.group(1), (
                f"line {n}: </{m.group(1)}> closes <{stack[-1]['name']}>"
            )
            stack.pop()
        else:
            key, _, value = line.partition(" ")
            assert key not in stack[-1]["params"], f"line {n}: {key} set twice"
            stack[-1]["params"][key] = value.strip()
    assert len(stack) == 1, f"<{stack[-1]['name']}> is not closed"
    return root["children"]


def fluentd_matches(pattern: str, tag: str) -> bool:
    """Fluentd's match patterns: * one tag part, ** zero or more, {a,b}, space = or."""

    def regex(p: str) -> str:
        out, i = "", 0
        while i < len(p):
            if p.startswith(".**", i):
                out += r"(?:\..*)?"
                i += 3
            elif p.startswith("**", i):
                out += ".*"
                i += 2
            elif p[i] == "*":
                out += r"[^.]+"
                i += 1
            elif p[i] == "{":
                j = p.index("}", i)
                out += "(?:" + "|".join(regex(a) for a in p[i + 1 : j].split(",")) + ")"
                i = j + 1
            else:
                out += re.escape(p[i])
                i += 1
        return out

    return any(re.fullmatch(regex(p), tag) for p in pattern.split())


def fluentd_route(directives: list[dict[str, Any]], tag: str) -> tuple[list[str], dict[str, Any]]:
    """(@type of the filters a record passes, the <match> that takes it) in one label."""
    filters = [
        d["params"]["@type"]
        for d in directives
        if d["name"] == "filter" and fluentd_matches(d["arg"], tag)
    ]
    match = next(d for d in directives if d["name"] == "match" and fluentd_matches(d["arg"], tag))
    return filters, match


def fluentd_config() -> list[dict[str, Any]]:
    return parse_fluentd_config((FLUENTD / "fluent.conf").read_text(encoding="utf-8"))


def _check_es_output(match: dict[str, Any], stream: str) -> str:
    params = match["params"]
    assert params["@type"] == "elasticsearch", "elasticsearch_data_stream ignores id_key"
    assert params["index_name"] == stream
    assert params["write_operation"] == "create"
    assert params["id_key"] == "$.event.id"
    assert params["suppress_type_name"] == "true"
    assert params["include_timestamp"] == "false" and params["logstash_format"] == "false"
    (buffer,) = [c for c in match["children"] if c["name"] == "buffer"]
    b = buffer["params"]
    assert b["@type"] == "file" and b["retry_forever"] == "true"
    assert b["overflow_action"] == "block"
    return b["path"]


@pytest.mark.parametrize(
    ("tag", "stream"),
    [
        ("mlwatch.iris", PREDICTIONS),
        ("mlwatch.churn-v2", PREDICTIONS),
        ("mlwatch.team.model.v2", PREDICTIONS),
        ("mlwatch.events.feedback", PREDICTIONS),
        ("mlwatch.feedback", FEEDBACK),
        ("mlwatch.models", MODELS),
        ("mlwatch.drops", DROPS),
    ],
)
def test_fluentd_routes_every_tag_to_one_stream(tag: str, stream: str) -> None:
    top = fluentd_config()
    filters, match = fluentd_route(top, tag)
    assert filters == ["mlwatch"]
    _check_es_output(match, stream_name(stream, "default"))
    (error_label,) = [d for d in top if d["name"] == "label" and d["arg"] == "@ERROR"]
    filters, match = fluentd_route(error_label["children"], tag)
    assert filters == ["mlwatch"]
    (dead_filter,) = [d for d in error_label["children"] if d["name"] == "filter"]
    assert dead_filter["params"]["mode"] == "deadletter"
    _check_es_output(match, stream_name(DEAD_LETTER, "default"))


def test_fluentd_outputs_are_durable_and_idempotent() -> None:
    top = fluentd_config()
    (source,) = [d for d in top if d["name"] == "source"]
    assert source["params"]["@type"] == "forward"
    assert "ENV.fetch('MLWATCH_FLUENTD_PORT', '24224')" in source["params"]["port"]
    matches = [d for d in top if d["name"] == "match"]
    matches += [
        d
        for label in top
        if label["name"] == "label"
        for d in label["children"]
        if d["name"] == "match"
    ]
    paths = [_check_es_output(m, m["params"]["index_name"]) for m in matches]
    assert len(paths) == len(set(paths)) == 5, "each output needs its own buffer directory"
    assert {m["params"]["index_name"] for m in matches} == {
        stream_name(d, "default") for d in (PREDICTIONS, FEEDBACK, MODELS, DROPS, DEAD_LETTER)
    }
    # the id_key reaches the document's event.id
    doc = expected_event(EVENTS["ok_everything"])
    path = matches[0]["params"]["id_key"].removeprefix("$.").split(".")
    value: Any = doc
    for key in path:
        value = value[key]
    assert value == doc["event"]["id"]
    # feedback is matched before the catch-all
    order = [m["arg"] for m in top if m["name"] == "match"]
    for tag in ("mlwatch.feedback", "mlwatch.models", "mlwatch.drops"):
        assert order.index(tag) < order.index("mlwatch.**")
    for plugin in ("filter_mlwatch.rb", "mlwatch_documents.rb"):
        assert (FLUENTD / "plugin" / plugin).is_file()


def test_fluentd_config_parser_catches_mistakes() -> None:
    with pytest.raises(AssertionError):
        parse_fluentd_config("<match a>\n  @type null\n</filter>\n")
    with pytest.raises(AssertionError):
        parse_fluentd_config("<match a>\n  @type null\n")
    assert fluentd_matches("mlwatch.**", "mlwatch")
    assert fluentd_matches("mlwatch.*", "mlwatch.a") and not fluentd_matches(
        "mlwatch.*", "mlwatch.a.b"
    )
    assert fluentd_matches("a.{b,c}", "a.c") and not fluentd_matches("a.{b,c}", "a.d")
