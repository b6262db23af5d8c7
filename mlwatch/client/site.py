"""A call site: one decorated function and its ``@monitor`` options.

Everything the worker needs to turn a queued call into events, fixed at decoration;
hashable by identity so identities and drop counts can be keyed by it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, eq=False)
class Site:
    """One decorated function and its ``@monitor`` options (hashable by identity)."""

    name: str
    model: str | None = None
    version: str | None = None
    batch: bool = False
    feature_names: tuple[str, ...] | None = None
    prediction: str | Callable[[Any], Any] | None = None
    capture: bool = True
    sample_rate: float | None = None
    labels: dict[str, str] | None = None
    params: dict[str, Any] | None = None
    run_id: str | None = None
