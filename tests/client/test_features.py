"""Inputs and outputs of every supported type → the wire format's features and predictions."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json

import numpy as np
import pandas as pd
import pydantic
import pytest

from mlwatch.client import features as feat
from mlwatch.wire import MAX_FEATURES, MAX_STRING, validate_features


class Item(pydantic.BaseModel):
    age: int
    income: float
    city: str


@dataclasses.dataclass
class Point:
    x: float
    y: float


class Color(enum.IntEnum):
    RED = 1


def test_dict_is_flattened_and_cleaned() -> None:
    out = feat.to_features(
        {
            "a": 1,
            "b": 2.5,
            "c": "x",
            "d": True,
            "e": None,
            "nan": float("nan"),
            "inf": float("-inf"),
            3: "int key",
            "nested": {"k": [1, 2]},
            "arr": np.arange(3),
        }
    )
    assert out == {
        "a": 1,
        "b": 2.5,
        "c": "x",
        "d": True,
        "e": None,
        "nan": None,
        "inf": None,
        "3": "int key",
        "nested": '{"k":[1,2]}',
        "arr": "[0,1,2]",
    }
    assert validate_features(out, line=1) == out


def test_numpy_scalars_become_python_scalars() -> None:
    out = feat.to_features(
        {"i": np.int64(3), "f": np.float32(0.5), "b": np.bool_(True), "n": np.float64("nan")}
    )
    assert out == {"i": 3, "f": 0.5, "b": True, "n": None}
    assert [type(v) for v in out.values()] == [int, float, bool, type(None)]


def test_other_scalars() -> None:
    when = dt.datetime(2026, 1, 31, 12, 0, tzinfo=dt.timezone.utc)
    out = feat.to_features(
        {"when": when, "color": Color.RED, "raw": b"ab", "long": "x" * (MAX_STRING + 10)}
    )
    assert out == {
        "when": "2026-01-31T12:00:00+00:00",
        "color": 1,
        "raw": "ab",
        "long": "x" * MAX_STRING,
    }


def test_numpy_1d_with_and_without_names() -> None:
    arr = np.array([5.1, 3.5, np.nan])
    assert feat.to_features(arr, ["a", "b", "c"]) == {"a": 5.1, "b": 3.5, "c": None}
    assert feat.to_features(arr) == {"f0": 5.1, "f1": 3.5, "f2": None}
    assert feat.to_features(arr, ["a"]) == {"a": 5.1, "f1": 3.5, "f2": None}


def test_numpy_2d_single_row_like_sklearn() -> None:
    assert feat.to_features(np.array([[1, 2]]), ["a", "b"]) == {"a": 1, "b": 2}
    assert feat.to_features([[1, 2]], ["a", "b"]) == {"a": 1, "b": 2}


def test_pandas_frame_and_series() -> None:
    df = pd.DataFrame({"a": [1], "b": [np.nan], "c": ["x"], "t": [pd.Timestamp("2026-01-01")]})
    assert feat.to_features(df) == {"a": 1, "b": None, "c": "x", "t": "2026-01-01T00:00:00"}
    series = pd.Series({"a": 1.5, "b": 2})
    assert feat.to_features(series) == {"a": 1.5, "b": 2.0}
    assert feat.to_features(pd.Series([1, None, 3], dtype="Int64")) == {"0": 1, "1": None, "2": 3}


def test_pydantic_dataclass_and_list() -> None:
    assert feat.to_features(Item(age=3, income=1.5, city="Oslo")) == {
        "age": 3,
        "income": 1.5,
        "city": "Oslo",
    }
    assert feat.to_features(Point(1.0, float("inf"))) == {"x": 1.0, "y": None}
    assert feat.to_features((1, "a"), ["n", "s"]) == {"n": 1, "s": "a"}
    assert feat.to_features([1, 2]) == {"f0": 1, "f1": 2}


def test_scalar_and_none_inputs() -> None:
    assert feat.to_features("some text", ["text"]) == {"text": "some text"}
    assert feat.to_features(4.0) == {"f0": 4.0}
    assert feat.to_features(None) is None


def test_too_many_features_are_cut() -> None:
    out = feat.to_features({f"k{i}": i for i in range(MAX_FEATURES + 5)})
    assert out is not None and len(out) == MAX_FEATURES


def test_batch_rows_of_every_type() -> None:
    expected = [{"a": 1, "b": 2.0}, {"a": 3, "b": None}]
    assert feat.to_rows([{"a": 1, "b": 2.0}, {"a": 3, "b": float("nan")}]) == expected
    assert feat.to_rows(pd.DataFrame({"a": [1, 3], "b": [2.0, np.nan]})) == expected
    assert feat.to_rows(np.array([[1, 2.0], [3, np.nan]]), ["a", "b"]) == [
        {"a": 1.0, "b": 2.0},
        {"a": 3.0, "b": None},
    ]
    assert feat.to_rows([(1, 2.0), (3, None)], ["a", "b"]) == expected
    assert feat.to_rows(np.array([7, 8])) == [{"f0": 7}, {"f0": 8}]
    assert feat.to_rows(pd.Series([7, 8], name="age")) == [{"age": 7}, {"age": 8}]
    assert feat.to_rows([Item(age=1, income=2.0, city="a")]) == [
        {"age": 1, "income": 2.0, "city": "a"}
    ]


def test_count_rows() -> None:
    assert feat.count_rows(pd.DataFrame({"a": [1, 2, 3]})) == 3
    assert feat.count_rows(np.zeros((4, 2))) == 4
    assert feat.count_rows([{}, {}]) == 2
    assert feat.count_rows(object()) == 1


def test_predictions_to_json() -> None:
    assert feat.to_jsonable(np.array([[0.1, 0.9]])) == [[0.1, 0.9]]
    assert feat.to_jsonable(np.int64(2)) == 2
    assert feat.to_jsonable({"p": np.float32(0.5), "nan": float("nan"), 1: (1, 2)}) == {
        "p": 0.5,
        "nan": None,
        "1": [1, 2],
    }
    assert feat.to_jsonable(pd.Series([1, 2])) == [1, 2]
    assert feat.to_jsonable(pd.DataFrame({"a": [1]})) == [{"a": 1}]
    assert feat.to_jsonable(Item(age=1, income=2.0, city="a")) == {
        "age": 1,
        "income": 2.0,
        "city": "a",
    }
    assert feat.to_jsonable({1, 2}) in ([1, 2], [2, 1])
    opaque = object()
    assert feat.to_jsonable(opaque) == str(opaque)
    json.dumps(feat.to_jsonable({"deep": [[[[np.arange(2)]]]]}), allow_nan=False)


def test_prediction_selection_and_split() -> None:
    assert feat.select({"label": 1, "score": 0.2}, "label") == 1
    assert feat.select(Point(1.0, 2.0), "y") == 2.0
    assert feat.select([{"label": 0}, {"label": 1}], "label") == [0, 1]
    assert feat.select(5, lambda r: r * 2) == 10
    assert feat.split_rows([1, 2], 2) == [1, 2]
    assert feat.split_rows([1, 2, 3], 2) is None
    assert feat.split_rows(7, 2) is None
    assert feat.split_rows({"a": [1, 2], "b": [3, 4]}, 2) == [{"a": 1, "b": 3}, {"a": 2, "b": 4}]


def test_a_failing_str_is_an_error_for_the_caller_of_features_to_handle() -> None:
    class Evil:
        def __str__(self) -> str:
            raise RuntimeError("no")

    with pytest.raises(RuntimeError):
        feat.to_jsonable(Evil())


def test_integers_beyond_64_bits_become_floats_or_strings() -> None:
    import orjson

    big, huge = 10**20, 10**400
    assert feat.to_jsonable(big) == 1e20 and feat.to_jsonable(-(2**63)) == -(2**63)
    assert feat.to_jsonable(2**63 - 1) == 2**63 - 1 and feat.to_jsonable(2**63) == 2.0**63
    assert feat.to_jsonable([huge])[0] == str(huge)[:MAX_STRING]
    assert feat.to_jsonable(10**5000) == "<integer of 16610 bits>"  # over int_max_str_digits
    out = feat.to_features({"id": big, "n": np.uint64(2**64 - 1), "deep": [big], 1: 2})
    assert out == {"id": 1e20, "n": float(2**64 - 1), "deep": "[1e+20]", "1": 2}
    assert feat.to_rows([[big, 1]]) == [{"f0": 1e20, "f1": 1}]
    orjson.dumps([out, feat.to_jsonable({"p": [big, huge]})])


def test_nesting_is_cut_at_the_wire_depth() -> None:
    from mlwatch.wire import MAX_DEPTH, validate_event

    def nest(levels: int) -> object:
        value: object = 0
        for _ in range(levels):
            value = {"k": value}
        return value

    assert feat.to_jsonable(nest(MAX_DEPTH)) == nest(MAX_DEPTH)
    one_more = feat.to_jsonable(nest(MAX_DEPTH + 1))
    validate_event({"model": "m", "latency_ms": 1, "prediction": one_more})
    cut = feat.to_jsonable([np.array([nest(200)])])  # conversions do not add levels
    inner = cut
    for _ in range(MAX_DEPTH):
        inner = inner["k"] if isinstance(inner, dict) else inner[0]
    assert isinstance(inner, str) and inner.startswith("{'k': ") and len(inner) <= MAX_STRING
    validate_event({"model": "m", "latency_ms": 1, "prediction": cut})


def test_printable_escapes_what_ids_and_names_must_not_hold() -> None:
    assert feat.printable("plain id", 256) == "plain id"
    assert feat.printable("a\x00b\tc\u2028\ud800", 256) == "a\\x00b\\tc\\u2028\\ud800"
    assert feat.printable("x" * 300, 256) == "x" * 256
