"""Durations in the config file: ``90`` (seconds), ``"30s"``, ``"5m"``, ``"1h"``, ``"7d"``
(a module of its own: the model-spec sections all read them, and specs import those)."""

from __future__ import annotations

import re
from typing import Any

from mlwatch.errors import ConfigError

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(raw: Any, at: str, source: str | None = None) -> float:
    """Seconds from ``90``, ``"30s"``, ``"5m"``, ``"1h"``, ``"7d"``.

    >>> parse_duration("5m", "schedule")
    300.0
    """
    if isinstance(raw, (int, float)) and not isinstance(raw, bool) and raw > 0:
        return float(raw)
    match = _DURATION_RE.fullmatch(str(raw)) if isinstance(raw, str) else None
    if match is None or float(match.group(1)) <= 0:
        raise ConfigError(
            at, f"expected a duration such as 30s, 5m, 1h or 7d, got {raw!r}", source=source
        )
    return float(match.group(1)) * _UNIT_S[match.group(2) or "s"]
