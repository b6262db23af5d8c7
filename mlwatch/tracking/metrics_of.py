"""A window's drift or KPI report as MLflow metrics: ``{key: value}``, ready to log.

The keys: ``drift.share``, ``drift.dataset_drift`` (0/1), ``drift.rows`` (when the
scheduler stored it) and, per feature, ``drift.<feature>.score``,
``drift.<feature>.drifted`` (0/1) and ``drift.<feature>.p_value``; ``kpi.<name>``,
``kpi.<name>.lower``, ``kpi.<name>.upper`` and ``kpi.n_labelled``. A value the report
does not have (None, not finite) is left out rather than logged as a zero.

MLflow accepts in a metric key only letters, digits and ``_ - . / space``, at most 250
characters, and refuses a key that a path normalisation would change. Feature names are
the user's, so every other character (``/`` too: it would nest keys as paths) becomes
``_``, and a name too long for the key is cut and suffixed with a hash of the whole
name; two names that clean up alike also get the hash, so they never share a key.

>>> drift_metrics({"drift_share": 0.5, "dataset_drift": True, "features": [
...     {"name": "age (y)", "score": 0.2, "p_value": None, "drifted": True}]})
{'drift.share': 0.5, 'drift.dataset_drift': 1.0, 'drift.age _y_.score': 0.2, 'drift.age _y_.drifted': 1.0}
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from typing import Any

MAX_KEY = 250  # MLflow's MAX_ENTITY_KEY_LENGTH
_UNSAFE = re.compile(r"[^A-Za-z0-9_\-. ]")
_LONGEST_SUFFIX = len(".p_value")


def clean_name(name: str, room: int) -> str:
    """``name`` with only the characters MLflow allows, at most ``room`` long.

    >>> clean_name("a/b:c", 20), clean_name("x" * 30, 20)
    ('a_b_c', 'xxxxxxxxxxx_06431fcb')
    """
    clean = _UNSAFE.sub("_", name)
    if len(clean) <= room:
        return clean
    return clean[: room - 9] + "_" + _digest(name)


def _digest(name: str) -> str:
    return hashlib.blake2s(name.encode("utf-8", "replace"), digest_size=4).hexdigest()


def _number(value: Any) -> float | None:
    """A finite float, or None for what MLflow should not be given."""
    if value is None or isinstance(value, str):
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _put(out: dict[str, float], key: str, value: Any) -> None:
    number = _number(value)
    if number is not None:
        out[key] = number


def drift_metrics(report: Mapping[str, Any]) -> dict[str, float]:
    """The metrics of a drift report (``DriftReport.to_dict()``, maybe with ``rows``)."""
    out: dict[str, float] = {}
    _put(out, "drift.share", report.get("drift_share"))
    if report.get("dataset_drift") is not None:
        out["drift.dataset_drift"] = 1.0 if report["dataset_drift"] else 0.0
    _put(out, "drift.rows", report.get("rows"))
    room = MAX_KEY - len("drift.") - _LONGEST_SUFFIX
    taken: dict[str, str] = {}
    for feature in report.get("features") or ():
        name = str(feature.get("name"))
        clean = clean_name(name, room)
        if taken.setdefault(clean, name) != name:  # another name cleaned up the same
            clean = clean[: room - 9] + "_" + _digest(name)
        prefix = f"drift.{clean}"
        _put(out, f"{prefix}.score", feature.get("score"))
        if feature.get("drifted") is not None:
            out[f"{prefix}.drifted"] = 1.0 if feature["drifted"] else 0.0
        _put(out, f"{prefix}.p_value", feature.get("p_value"))
    return out


def kpi_metrics(report: Mapping[str, Any]) -> dict[str, float]:
    """The metrics of a KPI report (``KPIReport.to_dict()``)."""
    out: dict[str, float] = {}
    room = MAX_KEY - len("kpi.") - len(".lower")
    for name, kpi in (report.get("kpis") or {}).items():
        key = f"kpi.{clean_name(str(name), room)}"
        _put(out, key, kpi.get("value"))
        _put(out, f"{key}.lower", kpi.get("lower"))
        _put(out, f"{key}.upper", kpi.get("upper"))
    _put(out, "kpi.n_labelled", report.get("n_labelled"))
    return out
