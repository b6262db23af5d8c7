"""A model spec's ``alerts`` section: the thresholds and objectives the Prometheus rules
are generated from (``mlwatch alerts build``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlwatch.errors import ConfigError


@dataclass(frozen=True)
class AlertSpec:
    """Thresholds and service-level objectives of one model's alerts."""


def parse_alerts(raw: Any, at: str, source: str) -> AlertSpec:
    """``models[i].alerts``; every error names the key."""
    if not isinstance(raw, dict):
        raise ConfigError(at, "expected a mapping", source=source)
    return AlertSpec()
