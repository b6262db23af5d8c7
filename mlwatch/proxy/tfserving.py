"""TensorFlow Serving's REST API: ``POST /v1/models/{name}[/versions/{v}]:predict``
(also ``/labels/{label}``), in the row format (``instances`` → ``predictions``) or the
columnar one (``inputs`` → ``outputs``).

An instance that is an object gives one feature per input (``name``, or ``name_0``, …
for a list); a list or a scalar is the one unnamed input, ``input_0``, … (``input``).

>>> features({"instances": [{"age": 41, "x": [1, 2]}, {"age": 7, "x": [3, 4]}]})
([{'age': 41, 'x_0': 1, 'x_1': 2}, {'age': 7, 'x_0': 3, 'x_1': 4}], None)
>>> features({"inputs": {"age": [41, 7]}})
([{'age': 41}, {'age': 7}], None)
>>> predictions({"predictions": [[0.1, 0.9], [0.8, 0.2]]}, 2)
([[0.1, 0.9], [0.8, 0.2]], None)
"""

from __future__ import annotations

import re
from typing import Any

from mlwatch.errors import CaptureError
from mlwatch.proxy.rows import fit, flat_features

PATH = re.compile(
    r"^/v1/models/(?P<model>[^/:]+)(?:/versions/(?P<version>[^/:]+)|/labels/(?P<label>[^/:]+))?:predict$"
)
UNNAMED = "input"


def _row(instance: Any) -> dict[str, Any] | None:
    if isinstance(instance, dict):
        row: dict[str, Any] = {}
        for name, value in instance.items():
            flat_features(str(name), value, row)
        return fit(row)
    return fit(flat_features(UNNAMED, instance))


def _columns(inputs: Any) -> list[Any]:
    """Columnar ``inputs`` as instances: an object of equally long lists, or a list."""
    if isinstance(inputs, list):
        return inputs
    if isinstance(inputs, dict) and all(isinstance(v, list) for v in inputs.values()):
        lengths = {len(v) for v in inputs.values()}
        if len(lengths) == 1:
            n = lengths.pop()
            return [{k: v[i] for k, v in inputs.items()} for i in range(n)]
    raise CaptureError("expected 'inputs' as a list, or an object of equally long lists")


def features(body: Any) -> tuple[list[dict[str, Any] | None], str | None]:
    """The rows' features (no request id in this protocol)."""
    if isinstance(body, dict) and isinstance(body.get("instances"), list):
        return [_row(instance) for instance in body["instances"]], None
    if isinstance(body, dict) and "inputs" in body:
        return [_row(instance) for instance in _columns(body["inputs"])], None
    raise CaptureError("expected 'instances' or 'inputs'")


def predictions(body: Any, n: int) -> tuple[list[Any], str | None]:
    """``n`` rows' predictions from ``predictions`` or ``outputs``."""
    if not isinstance(body, dict):
        raise CaptureError("expected an object with 'predictions' or 'outputs'")
    preds = body["predictions"] if "predictions" in body else body.get("outputs")
    if isinstance(preds, dict) and "predictions" not in body:
        try:
            preds = _columns(preds)
        except CaptureError:
            preds = None
    if not isinstance(preds, list) or len(preds) != n:
        raise CaptureError(f"expected {n} predictions")
    return preds, None
