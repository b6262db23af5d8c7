"""A model spec's ``retrain`` section: what starts retraining, how often at most, and
which target (``targets``) it goes to."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlwatch.errors import ConfigError


@dataclass(frozen=True)
class RetrainSpec:
    """One model's retraining policy."""

    target: str


def parse_retrain(raw: Any, at: str, source: str) -> RetrainSpec:
    """``models[i].retrain``; every error names the key."""
    if not isinstance(raw, dict) or not isinstance(raw.get("target"), str):
        raise ConfigError(at, "expected a mapping with a target", source=source)
    return RetrainSpec(target=raw["target"])
