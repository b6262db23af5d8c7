"""Open Inference Protocol v2 (KServe, MLServer, Triton): ``POST
/v2/models/{name}[/versions/{v}]/infer`` with ``inputs`` and ``outputs`` tensors.

One row per element of the batch dimension (``shape[0]``): features are named by input
tensor (``name`` for one value a row, ``name_0``, ``name_1``, … for a 2-D input's
columns); the prediction is the row of the one output, or an object of every output's
row when there are several.

>>> request = {"id": "r1", "inputs": [
...     {"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
>>> features(request)
([{'x_0': 1, 'x_1': 2}, {'x_0': 3, 'x_1': 4}], 'r1')
>>> response = {"model_version": "3", "outputs": [
...     {"name": "y", "shape": [2, 1], "datatype": "INT64", "data": [0, 1]}]}
>>> predictions(response, 2)
([0, 1], '3')
"""

from __future__ import annotations

import re
from typing import Any

from mlwatch.errors import CaptureError
from mlwatch.proxy.rows import fit, flat_features, one_value, split_rows

PATH = re.compile(r"^/v2/models/(?P<model>[^/]+)(?:/versions/(?P<version>[^/]+))?/infer$")


def _tensors(body: Any, key: str) -> list[dict[str, Any]]:
    tensors = body.get(key) if isinstance(body, dict) else None
    if not isinstance(tensors, list) or not tensors:
        raise CaptureError(f"expected a non-empty list of tensors under {key!r}")
    for tensor in tensors:
        if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
            raise CaptureError(f"expected tensors with a name under {key!r}")
    return tensors


def features(body: Any) -> tuple[list[dict[str, Any] | None], str | None]:
    """The rows' features and the request's ``id``; raises CaptureError for a body that
    is not an inference request."""
    rows: list[dict[str, Any]] | None = None
    for tensor in _tensors(body, "inputs"):
        cut = split_rows(tensor.get("data"), tensor.get("shape"))
        if rows is None:
            rows = [{} for _ in cut]
        elif len(cut) != len(rows):
            raise CaptureError("inputs disagree on the batch size")
        name = tensor["name"]
        for row, values in zip(rows, cut, strict=True):
            flat_features(name, values if len(values) > 1 else values[0], row)
    rid = body.get("id")
    return [fit(row) for row in rows or []], rid if isinstance(rid, str) else None


def predictions(body: Any, n: int) -> tuple[list[Any], str | None]:
    """``n`` rows' predictions and the answer's ``model_version``; raises CaptureError
    for an answer that is not an inference response of ``n`` rows."""
    outputs = [
        (t["name"], split_rows(t.get("data"), t.get("shape"))) for t in _tensors(body, "outputs")
    ]
    if any(len(cut) != n for _, cut in outputs):
        raise CaptureError(f"outputs do not have the {n} rows of the inputs")
    if len(outputs) == 1:
        preds = [one_value(row) for row in outputs[0][1]]
    else:
        preds = [{name: one_value(cut[i]) for name, cut in outputs} for i in range(n)]
    version = body.get("model_version")
    return preds, version if isinstance(version, str) and version else None
