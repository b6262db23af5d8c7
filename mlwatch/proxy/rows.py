"""What the protocol parsers share: tensors cut into rows, and feature values made to
fit the wire format (flat scalars, bounded strings) instead of refused by it.

>>> split_rows([1, 2, 3, 4, 5, 6], [3, 2])
[[1, 2], [3, 4], [5, 6]]
>>> split_rows([[1, 2], [3, 4]], [2, 2])
[[1, 2], [3, 4]]
>>> flat_features("x", [0.5, 1.5])
{'x_0': 0.5, 'x_1': 1.5}
>>> flat_features("age", 41)
{'age': 41}
"""

from __future__ import annotations

import math
from typing import Any

from mlwatch.errors import CaptureError
from mlwatch.wire import MAX_FEATURES, MAX_STRING

_SCALARS = (int, float, str, bool)


def flatten(data: Any) -> list[Any]:
    """Nested lists (a tensor written row-major) as one flat list."""
    if not isinstance(data, list):
        return [data]
    if not any(isinstance(item, list) for item in data):
        return data
    out: list[Any] = []
    for item in data:
        out.extend(flatten(item))
    return out


def batch_of(shape: Any) -> int:
    """The batch size of a tensor: the first dimension of its shape."""
    if not isinstance(shape, list) or not shape or not all(type(d) is int for d in shape):
        raise CaptureError(f"expected a shape of integers, got {shape!r:.60}")
    return max(int(shape[0]), 0)


def split_rows(data: Any, shape: Any) -> list[list[Any]]:
    """A tensor's data (flat or nested) cut into its ``shape[0]`` rows, each flat."""
    n = batch_of(shape)
    flat = flatten(data)
    per = math.prod(shape[1:])
    if len(flat) != n * per:
        raise CaptureError(f"{len(flat)} values do not fill a shape of {shape}")
    if n == 0 or per == 0:
        return []
    return [flat[i * per : (i + 1) * per] for i in range(n)]


def scalar(value: Any) -> Any:
    """A feature value the wire format takes: strings cut to its limit, non-finite
    numbers as null, anything else that is not a scalar as null."""
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return value[:MAX_STRING]
    return None


def flat_features(name: str, value: Any, out: dict[str, Any] | None = None) -> dict[str, Any]:
    """``value`` under ``name``: a scalar as itself, a list (of any depth) flattened to
    ``name_0``, ``name_1``, …; a one-element list is the name alone."""
    out = {} if out is None else out
    if isinstance(value, list):
        flat = flatten(value)
        if len(flat) == 1:
            out[name] = scalar(flat[0])
        else:
            for j, item in enumerate(flat):
                out[f"{name}_{j}"] = scalar(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            flat_features(f"{name}_{key}", item, out)
    else:
        out[name] = scalar(value)
    return out


def fit(features: dict[str, Any]) -> dict[str, Any] | None:
    """Features within the wire format's count, or None (the event keeps its prediction)."""
    return features if 0 < len(features) <= MAX_FEATURES else None


def one_value(row: list[Any]) -> Any:
    """A row's prediction: the value itself when the row has one, else the list."""
    return row[0] if len(row) == 1 else row
