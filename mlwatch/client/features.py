"""Turn model inputs and outputs into what the event wire format accepts.

Features become a flat dict of JSON scalars (number, string, boolean, null);
predictions become any JSON value. Runs on the shipper's worker thread, so it may
take microseconds — the calling thread only makes a shallow copy of a dict input
(callers may mutate it after the call returns).

numpy, pandas and pydantic are recognised by duck typing (module name and
methods) and never imported: the client must not pin or load the host's
libraries. Rules:

- non-finite floats (NaN, ±inf) become ``None``; numpy scalars become Python scalars;
- integers outside 64 bits (orjson and SQLite refuse them) become floats, or strings
  when even a float would overflow;
- a non-scalar value inside a row (list, dict, array) becomes a JSON string;
  strings are cut at ``wire.MAX_STRING`` characters; at most ``wire.MAX_FEATURES`` keys;
- sequences and arrays are named by ``feature_names``, else ``f0..fN``;
  a bare scalar input is one feature named ``feature_names[0]`` or ``f0``.

>>> to_features({"a": 1, "b": float("nan"), "c": [1, 2]})
{'a': 1, 'b': None, 'c': '[1,2]'}
>>> to_features([5.1, 3.5], ["sepal_length", "sepal_width"])
{'sepal_length': 5.1, 'sepal_width': 3.5}
>>> to_rows([[1, 2], [3, 4]], None)
[{'f0': 1, 'f1': 2}, {'f0': 3, 'f1': 4}]
>>> split_rows({"label": [0, 1], "score": [0.2, 0.9]}, 2)
[{'label': 0, 'score': 0.2}, {'label': 1, 'score': 0.9}]
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from mlwatch.dotted import pick
from mlwatch.logs import failures
from mlwatch.wire import MAX_DEPTH, MAX_FEATURES, MAX_STRING

_MISSING_TYPES = frozenset({"NAType", "NaTType"})  # pandas.NA and pandas.NaT
_INT_MIN, _INT_MAX = -(1 << 63), (1 << 63) - 1  # what orjson and SQLite take as integers


def _module(x: Any) -> str:
    return type(x).__module__ or ""


def is_frame(x: Any) -> bool:
    """A pandas DataFrame, recognised without importing pandas."""
    return _module(x).startswith("pandas") and hasattr(x, "to_dict") and hasattr(x, "columns")


def is_series(x: Any) -> bool:
    return (
        _module(x).startswith("pandas")
        and hasattr(x, "to_dict")
        and hasattr(x, "tolist")
        and not hasattr(x, "columns")
    )


def is_array(x: Any) -> bool:
    """A numpy ndarray (or a numpy scalar: ``ndim == 0``)."""
    return _module(x).startswith("numpy") and hasattr(x, "tolist") and hasattr(x, "ndim")


def _is_model(x: Any) -> bool:
    """A pydantic (v2) model instance."""
    return callable(getattr(x, "model_dump", None)) and not isinstance(x, type)


def _is_dataclass(x: Any) -> bool:
    return dataclasses.is_dataclass(x) and not isinstance(x, type)


def printable(text: str, limit: int) -> str:
    """``text`` as the wire format takes ids and names: control and other non-printable
    characters escaped, cut at ``limit`` characters.

    >>> printable("req\\x00-1\\n", 64)
    'req\\\\x00-1\\\\n'
    """
    if not text.isprintable():
        text = "".join(
            c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text
        )
    return text[:limit]


def big_int(v: int) -> float | str:
    """An integer outside 64 bits: a float, or a string when even a float overflows.

    >>> big_int(10**20), big_int(10**400)[:5]
    (1e+20, '10000')
    """
    try:
        return float(v)
    except OverflowError:
        try:
            return str(v)[:MAX_STRING]
        except ValueError:  # more digits than sys.get_int_max_str_digits()
            return f"<integer of {v.bit_length()} bits>"


def clean_scalar(v: Any) -> Any:
    """One feature value as a JSON scalar (see the module rules)."""
    t = type(v)
    if t is float:
        return v if math.isfinite(v) else None
    if t is int:
        return v if _INT_MIN <= v <= _INT_MAX else big_int(v)
    if t is bool or v is None:
        return v
    if t is not str:
        v = to_jsonable(v)
        if isinstance(v, (dict, list)):
            v = json.dumps(v, separators=(",", ":"), allow_nan=False)
        elif not isinstance(v, str):
            return v
    return v if len(v) <= MAX_STRING else v[:MAX_STRING]


def _leaf(v: Any) -> Any:
    """A value that is not a container, as a JSON scalar."""
    if is_array(v) and v.ndim == 0:
        return to_jsonable(v.item())
    if type(v).__name__ in _MISSING_TYPES:
        return None
    if isinstance(v, bool):
        return bool(v)
    if isinstance(v, int):  # IntEnum, numpy ints that subclass int
        i = int(v)
        return i if _INT_MIN <= i <= _INT_MAX else big_int(i)
    if isinstance(v, float):
        f = float(v)
        return f if math.isfinite(f) else None
    if isinstance(v, (bytes, bytearray)):
        return bytes(v).decode("utf-8", "replace")[:MAX_STRING]
    if callable(getattr(v, "isoformat", None)):  # datetime, date, pandas.Timestamp
        return str(v.isoformat())
    return str(v)[:MAX_STRING]


def flat(d: Mapping[Any, Any]) -> dict[str, Any]:
    """A mapping as a flat dict of JSON scalars with string keys (the worker's hot loop)."""
    if len(d) > MAX_FEATURES:
        failures.warning(
            "features.too_many", "mlwatch: %d features, keeping the first %d", len(d), MAX_FEATURES
        )
        d = dict(list(d.items())[:MAX_FEATURES])
    out = dict(d)  # a C-level copy; only the values that need it are replaced below
    for k, v in d.items():
        t = type(v)
        if t is float:
            if v - v:  # NaN or ±inf (x - x is NaN, which is truthy); 0.0 for finite x
                out[k] = None
        elif t is str:
            if len(v) > MAX_STRING:
                out[k] = v[:MAX_STRING]
        elif t is int:
            if not _INT_MIN <= v <= _INT_MAX:
                out[k] = big_int(v)
        elif t is not bool and v is not None:
            out[k] = clean_scalar(v)
    try:
        "".join(out)  # the cheapest "are all keys strings?" (raises TypeError otherwise)
    except TypeError:
        out = {(k if type(k) is str else str(k)): v for k, v in out.items()}
    return out


def _named(values: Sequence[Any], names: Sequence[str] | None) -> dict[str, Any]:
    given = names or ()
    n = len(given)
    return flat({(given[i] if i < n else f"f{i}"): v for i, v in enumerate(values)})


def _first_row(rows: list[dict[str, Any]], what: str) -> dict[str, Any]:
    if len(rows) > 1:
        failures.warning(
            "features.multirow",
            "mlwatch: %s with %d rows on a monitor without "
            "batch=True; recording the first row only",
            what,
            len(rows),
        )
    return rows[0] if rows else {}


def to_features(obj: Any, names: Sequence[str] | None = None) -> dict[str, Any] | None:
    """The inputs of one prediction as a flat dict of JSON scalars (None for no input)."""
    if type(obj) is dict:
        return flat(obj)
    if obj is None:
        return None
    if is_frame(obj):
        return _first_row(to_rows(obj, names), "DataFrame")
    if is_series(obj):
        return flat(obj.to_dict())
    if is_array(obj):
        if obj.ndim == 0:
            return _named([obj.item()], names)
        if obj.ndim == 1:
            return _named(obj.tolist(), names)
        return _first_row(to_rows(obj, names), "array")
    if _is_model(obj):
        return flat(obj.model_dump())
    if isinstance(obj, Mapping):
        return flat(obj)
    if isinstance(obj, (list, tuple)):
        if obj and (
            isinstance(obj[0], (list, tuple, Mapping)) or is_array(obj[0]) or _is_model(obj[0])
        ):
            return _first_row(to_rows(obj, names), "list of rows")  # sklearn-style [[...]]
        return _named(obj, names)
    if _is_dataclass(obj):
        return flat({f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)})
    return _named([obj], names)


def to_rows(obj: Any, names: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The inputs of a batch call, one flat dict per row."""
    if is_frame(obj):
        return [flat(r) for r in obj.to_dict(orient="records")]
    if is_array(obj):
        if obj.ndim == 0:
            return [_named([obj.item()], names)]
        return [_named(r if isinstance(r, list) else [r], names) for r in obj.tolist()]
    if is_series(obj):
        key = names[0] if names else (str(obj.name) if obj.name is not None else "f0")
        return [flat({key: v}) for v in obj.tolist()]
    if isinstance(obj, (list, tuple)):
        return [to_features(row, names) or {} for row in obj]
    one = to_features(obj, names)
    return [one] if one is not None else []


def count_rows(obj: Any) -> int:
    """Rows in a batch input (DataFrame, array, list); 1 when it has no length."""
    try:
        return max(len(obj), 0)
    except TypeError:
        return 1


def to_jsonable(v: Any, depth: int = 0) -> Any:
    """Any return value as JSON (numpy → lists, pandas → records, models → dicts).

    ``depth`` is the nesting level of ``v`` in the result: a list or object at level
    ``MAX_DEPTH`` (the 33rd) becomes its string form, so the result nests at most
    ``MAX_DEPTH`` levels (``wire`` rejects deeper values).
    """
    t = type(v)
    if t is str or t is bool or v is None:
        return v
    if t is int:
        return v if _INT_MIN <= v <= _INT_MAX else big_int(v)
    if t is float:
        return v if math.isfinite(v) else None
    if t is dict or (isinstance(v, Mapping) and not is_series(v)):
        if depth >= MAX_DEPTH:
            return str(v)[:MAX_STRING]
        return {(k if type(k) is str else str(k)): to_jsonable(x, depth + 1) for k, x in v.items()}
    if t is list or t is tuple or isinstance(v, (list, tuple, set, frozenset)):
        if depth >= MAX_DEPTH:
            return str(v)[:MAX_STRING]
        return [to_jsonable(x, depth + 1) for x in v]
    # conversions to a dict or list at the same level (the branches above check the depth)
    if is_frame(v):
        return to_jsonable(v.to_dict(orient="records"), depth)
    if is_array(v) or is_series(v):
        return to_jsonable(v.tolist(), depth)
    if _is_model(v):
        return to_jsonable(v.model_dump(mode="json"), depth)
    if _is_dataclass(v):
        return to_jsonable({f.name: getattr(v, f.name) for f in dataclasses.fields(v)}, depth)
    return _leaf(v)


def select(result: Any, spec: str | Callable[[Any], Any] | None) -> Any:
    """Apply the ``prediction=`` option of ``@monitor`` to a return value."""
    if spec is None:
        return result
    if callable(spec):
        return spec(result)
    return pick(result, spec)


def split_rows(prediction: Any, n: int) -> list[Any] | None:
    """Per-row predictions of a batch (already JSON), or None if they do not split into ``n``."""
    if isinstance(prediction, list) and len(prediction) == n:
        return prediction
    if (
        isinstance(prediction, dict)
        and prediction
        and all(isinstance(col, list) and len(col) == n for col in prediction.values())
    ):
        return [{k: col[i] for k, col in prediction.items()} for i in range(n)]
    return None
