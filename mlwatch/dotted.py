"""Dotted paths into values: ``prediction_field``, ``label_field``, ``score_field``.

One picker for every place that follows such a path — the client taking a prediction
out of a return value, the KPI inputs finding probabilities in a stored prediction — so
that a path means the same everywhere. A step is a key of a mapping (or of a pandas
object), an index of a list when the step is a number, the same key in every row of a
list otherwise, or an attribute.

The model spec's ``prediction_field`` and ``label_field`` are applied once, where the
value enters mlwatch (the Python client); what is stored is the value to score, so no
reader applies them again.

>>> pick_path({"out": {"label": 1, "score": 0.9}}, "out.label")
1
>>> pick_path({"proba": [0.2, 0.8]}, "proba.1")
0.8
>>> pick_path([{"y": 0}, {"y": 1}], "y")
[0, 1]
>>> pick_path({"a": 1}, "b", default=None) is None
True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

#: What :func:`pick_path` returns for an absent path when asked to (``default=MISSING``).
MISSING: Any = type("Missing", (), {"__repr__": lambda self: "MISSING"})()
_RAISE: Any = object()
_ABSENT = (KeyError, IndexError, AttributeError, TypeError)


def pick(value: Any, key: str) -> Any:
    """One step of a path (see the module doc); raises ``KeyError``, ``IndexError``,
    ``AttributeError`` or ``TypeError`` when it is not there."""
    if isinstance(value, Mapping) or (type(value).__module__ or "").startswith("pandas"):
        return value[key]
    if isinstance(value, (list, tuple)):
        if key.isdigit():
            return value[int(key)]
        return [pick(row, key) for row in value]
    return getattr(value, key)


def split(path: str | Sequence[str]) -> tuple[str, ...]:
    """The steps of a path: ``"a.b"`` → ``("a", "b")``; ``""`` is the value itself."""
    if isinstance(path, str):
        return tuple(path.split(".")) if path else ()
    return tuple(path)


def pick_path(value: Any, path: str | Sequence[str], *, default: Any = _RAISE) -> Any:
    """Follow ``path`` (a dotted string or its steps) through ``value``.

    Without ``default`` an absent step raises (``KeyError``, ``IndexError``,
    ``AttributeError`` or ``TypeError``); with it, ``default`` is returned instead.
    """
    steps = path if isinstance(path, tuple) else split(path)
    try:
        for key in steps:
            value = pick(value, key)
    except _ABSENT:
        if default is _RAISE:
            raise
        return default
    return value
