"""Any JSON model server: the features and the prediction found by dotted paths
(``proxy_features_path``, ``proxy_prediction_path``; :mod:`mlwatch.dotted`).

Features may be one object (one row), a list of objects, or rows of values (a list of
lists; named ``input_0``, …); one list of scalars is one row. The prediction is split
over the rows when it is a list of as many; otherwise a single row gets it whole.

>>> features({"data": {"age": 41}}, "data")
([{'age': 41}], None)
>>> features({"rows": [[1, 2], [3, 4]]}, "rows")
([{'input_0': 1, 'input_1': 2}, {'input_0': 3, 'input_1': 4}], None)
>>> predictions({"out": [0, 1]}, 2, "out")
([0, 1], None)
"""

from __future__ import annotations

from typing import Any

from mlwatch.dotted import pick_path
from mlwatch.errors import CaptureError
from mlwatch.proxy.rows import fit, flat_features

UNNAMED = "input"


def _pick(body: Any, path: str | None, what: str) -> Any:
    if not path:
        return body
    try:
        return pick_path(body, path)
    except (KeyError, IndexError, AttributeError, TypeError):
        raise CaptureError(f"no {what} at {path!r}") from None


def _row(value: Any) -> dict[str, Any] | None:
    if isinstance(value, dict):
        row: dict[str, Any] = {}
        for name, item in value.items():
            flat_features(str(name), item, row)
        return fit(row)
    return fit(flat_features(UNNAMED, value))


def features(body: Any, path: str | None) -> tuple[list[dict[str, Any] | None], str | None]:
    """The rows' features at ``path`` (the whole body when unset)."""
    value = _pick(body, path, "features")
    if isinstance(value, list) and value and all(isinstance(v, (dict, list)) for v in value):
        return [_row(v) for v in value], None
    return [_row(value)], None


def predictions(body: Any, n: int, path: str | None) -> tuple[list[Any], str | None]:
    """``n`` rows' predictions at ``path`` (the whole body when unset)."""
    value = _pick(body, path, "prediction")
    if n == 1:
        return [value], None
    if isinstance(value, list) and len(value) == n:
        return value, None
    raise CaptureError(f"expected a list of {n} predictions at {path or 'the body'!r}")
