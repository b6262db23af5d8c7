"""The ``targets`` list of a config file: where retraining is started (GitHub Actions,
GitLab, Jenkins, a signed webhook), each with its secret from the environment or a file."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlwatch.errors import ConfigError


@dataclass(frozen=True)
class TargetSpec:
    """One CI/CD target, by name."""

    name: str
    kind: str


def parse_targets(raw: Any, source: str) -> tuple[TargetSpec, ...]:
    """``targets``; every error names the key (``targets[0].repo``) and the file."""
    if not isinstance(raw, list):
        raise ConfigError("targets", "expected a list of targets", source=source)
    return ()
