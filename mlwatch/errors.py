"""The exceptions mlwatch raises, in one place.

Two tiers (see the README): configuration and programmer errors raise at
construction time and name the offending parameter; nothing on the telemetry
path ever raises into the caller — there, problems are counted and logged.
"""

from __future__ import annotations


class MlwatchError(Exception):
    """Base class of every exception mlwatch raises on purpose."""


class ConfigError(MlwatchError, ValueError):
    """A setting is missing, malformed or out of range.

    The message names the key, and the file when the value came from one.
    """

    def __init__(self, key: str, message: str, *, source: str | None = None) -> None:
        self.key = key
        self.source = source
        where = f" (in {source})" if source else ""
        super().__init__(f"{key}: {message}{where}")


class ValidationError(MlwatchError, ValueError):
    """A record on the wire does not follow the event format.

    ``line`` is 1-based (the array index + 1 for JSON arrays); ``field`` is the
    dotted path of the offending field, or ``None`` when the whole record is bad.
    """

    def __init__(self, message: str, *, line: int | None = None, field: str | None = None) -> None:
        self.line = line
        self.field = field
        self.reason = message
        parts = []
        if line is not None:
            parts.append(f"line {line}")
        if field is not None:
            parts.append(f"field '{field}'")
        prefix = ", ".join(parts)
        super().__init__(f"{prefix}: {message}" if prefix else message)
