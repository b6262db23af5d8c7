"""A retraining trigger, and the contract every CI/CD target follows.

A trigger is recorded (durably, in the outbox) before it is sent; its ``key`` is the
idempotency key that travels in the payload and in a header, so a retry after a crash
has one effect at the provider. A target makes one attempt per call and says what became
of it; the outbox owns retries, backoff and the deadline.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Trigger:
    """One request to retrain a model, with what caused it."""

    key: str  # idempotency key (a UUIDv7): one trigger, one effect
    model: str
    version: str
    reason: str  # a sentence a person reads, e.g. "dataset drift share 0.40 >= 0.30"
    cause: str  # what the hysteresis and the storm guard compare: "alert:MlwatchDatasetDrift"
    evidence: dict[str, Any] = field(default_factory=dict)  # alert labels, statistics, window
    created: str = ""  # RFC 3339 UTC
    code_version: str | None = None
    run_id: str | None = None
    status_url: str | None = None  # GET /v1/models/{model}/status of the sidecar
    target: str = ""  # the target's name in the config
    dry_run: bool = False

    def payload(self) -> dict[str, Any]:
        """What every target sends (as inputs, variables, parameters or data)."""
        return {
            "idempotency_key": self.key,
            "model": self.model,
            "version": self.version,
            "code_version": self.code_version,
            "run_id": self.run_id,
            "reason": self.reason,
            "cause": self.cause,
            "evidence": self.evidence,
            "created": self.created,
            "status_url": self.status_url,
        }


class Outcome(enum.Enum):
    """What one attempt at a target came to."""

    DELIVERED = "delivered"  # the provider accepted it (2xx)
    RETRY = "retry"  # 429, 5xx, 408, a connection error or a timeout: try again later
    REJECTED = "rejected"  # any other 4xx: retrying would not help


@dataclass(frozen=True)
class Attempt:
    """One attempt: its outcome, the HTTP status (None without an answer), the provider's
    words (bounded; never a secret), a ``Retry-After`` in seconds, and what the provider
    gave back to follow the build (a queue item, a pipeline URL)."""

    outcome: Outcome
    status: int | None
    detail: str
    retry_after_s: float | None = None
    reference: str | None = None


class Target(Protocol):
    """A CI/CD target: ``name`` from the config, ``kind`` (``github_workflow``, …) and one
    attempt per ``send`` (never raises: an error is an Attempt)."""

    name: str
    kind: str

    def send(self, trigger: Trigger, *, timeout_s: float) -> Attempt: ...
