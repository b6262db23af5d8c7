"""Every exception mlwatch raises on purpose, in one tree rooted at :class:`MlwatchError`.

::

    MlwatchError
    ├── ConfigError (also ValueError)     a setting is missing, malformed or out of range
    ├── ValidationError (also ValueError) a record breaks the wire format
    ├── StoreError                        the embedded store cannot be opened or used
    ├── SpoolError                        the spool directory is in use, or an fsync failed
    │   ├── SpoolFull                     its disk bound is reached (ingest answers 503)
    │   └── SpoolClosed                   it was closed
    ├── IngestError                       a request the sidecar refuses (an HTTP status)
    ├── CaptureError                      a proxied call cannot be captured (counted, never raised to the caller)
    ├── UpstreamError                     the model server behind the proxy did not answer (the caller gets 502 / 504)
    ├── ForwardError                      a forward-protocol peer answered the unexpected
    │   └── HandshakeRefused              the shared-key handshake failed
    ├── DeliveryError                     a sink could not deliver a batch yet (retried)
    ├── JobError                          a drift or KPI job cannot run
    ├── RetrainError                      a retraining request cannot be made
    ├── InputError                        an input file cannot be read as a table
    ├── TrackingError                     MLflow cannot give a model URI, run or artifact
    └── GrafanaError                      Grafana refused a request of the sync, or did not answer

Two tiers: configuration and programmer errors raise at construction and name the
parameter; nothing on the telemetry path raises into serving code — there problems are
counted and logged. Third-party errors are translated where they enter
(``raise ... from exc``). The ``mlwatch`` command prints any of these as one line and
exits 2. A test walks the package and checks that every exception class derives from
:class:`MlwatchError`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class MlwatchError(Exception):
    """Base class of every exception mlwatch raises on purpose."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """A hint for a misspelled name, to append to an error message ("" when nothing is close).

    >>> did_you_mean("sampl_rate", ["sample_rate", "port"])
    "; did you mean 'sample_rate'?"
    """
    import difflib

    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.75)
    return f"; did you mean {close[0]!r}?" if close else ""


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


class StoreError(MlwatchError):
    """The store file cannot be opened, has an unknown schema, or is closed."""


class SpoolError(MlwatchError):
    """The spool directory is in use, or an fsync failed (then every later append is refused)."""


class SpoolFull(SpoolError):
    """Disk bound reached; the caller answers 503 with Retry-After."""


class SpoolClosed(SpoolError):
    """The spool was closed; nothing more can be appended."""


class IngestError(MlwatchError):
    """A request the sidecar refuses, with its HTTP status and a message naming the line,
    field, header or parameter; ``errors`` lists up to ten problems of one body."""

    def __init__(
        self,
        status: int,
        message: str,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors or []
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """The JSON answer: ``{"detail": message, "errors": [...]}``."""
        out: dict[str, Any] = {"detail": self.message}
        if self.errors:
            out["errors"] = self.errors
        return out


class CaptureError(MlwatchError):
    """A call through the proxy cannot be turned into events (no model name, a body
    that is not the protocol it claims). ``reason`` is the label of
    ``mlwatch_proxy_capture_failures_total``; the caller never sees it."""

    def __init__(self, message: str, *, reason: str = "unparsable") -> None:
        super().__init__(message)
        self.reason = reason


class UpstreamError(MlwatchError):
    """The model server behind the proxy cannot be reached (``reason`` ``connect``), does
    not answer in time (``timeout``) or breaks HTTP (``protocol``). The caller gets the
    502 or 504 a reverse proxy answers; the reason labels
    ``mlwatch_proxy_upstream_errors_total``."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class ForwardError(MlwatchError):
    """A forward-protocol peer sent something unexpected. ``reason`` is the label the
    sidecar's input counts it under (``malformed``, ``too_large``, ``gzip``, ``auth``,
    ``timeout``, ``buffer_limit``); the client retries it like a connection error."""

    def __init__(self, message: str, *, reason: str = "malformed") -> None:
        super().__init__(message)
        self.reason = reason


class HandshakeRefused(ForwardError):
    """The shared-key handshake failed: retrying will not help."""


class DeliveryError(MlwatchError):
    """A sink could not deliver a batch yet (the destination is busy or unreachable); the
    spool keeps it and the consumer retries."""


class JobError(MlwatchError):
    """A job cannot run (no reference, unreadable reference file, no features)."""


class RetrainError(MlwatchError):
    """A retraining request that cannot be made: the model has no ``retrain`` section, or
    names a target the configuration does not have."""


class InputError(MlwatchError):
    """An input file cannot be read as a table (missing, empty, malformed)."""


class TrackingError(MlwatchError):
    """MLflow cannot give what was asked: a malformed model URI, a missing model version,
    alias, run or artifact, or a tracking server that does not answer. The message names
    the URI."""


class GrafanaError(MlwatchError):
    """Grafana refused a request of ``mlwatch dashboards sync`` (a bad token, a missing
    permission, a body it rejects) or did not answer. The message names the dashboard, rule
    or folder and Grafana's answer, never the token."""
