"""The client's exporter contract: the sidecar over HTTP, Fluentd, the embedded store, memory.

The same shape as a spool sink's (:mod:`mlwatch.sinks.base`), over records instead of
spool batches: a ``name``, ``export(batch) -> result``, ``force_flush(timeout)``,
``shutdown(timeout)``, and ``after_fork()`` for a forked child. As in OpenTelemetry's SDK,
the shipper never calls ``export`` concurrently, and the exporter owns its retries: it
returns only when the records are delivered, rejected, given up after the batch's
``deadline`` (``time.monotonic()`` seconds), or when ``interrupt`` is set (shutdown)
while it waits to retry. Shutdown may bring ``deadline`` forward while ``export`` runs,
so an exporter reads it again whenever it waits (on the network or to retry).

``export`` returns one :class:`Result` when every record met the same fate, or a
:class:`Partial` when the exporter delivered some and not others (it sent them in
several requests, or some could not be encoded or stored).

>>> settle(Result.OK, [{"a": 1}])
(True, [])
>>> settle(Result.FAILED, [{"a": 1}])
(False, [(<Result.FAILED: 'send_failed'>, [{'a': 1}])])
"""

from __future__ import annotations

import enum
import threading
from dataclasses import dataclass, field
from typing import Any, Protocol

#: The longest an exporter waits on a socket at once, so that a deadline brought
#: forward by shutdown is noticed within it.
WAIT_SLICE_S = 0.25


class Result(enum.Enum):
    """What became of one export. Anything but OK maps to a drop reason (its value)."""

    OK = "ok"
    REJECTED = "rejected"  # 4xx other than 429: the data is bad, retrying will not help
    FAILED = "send_failed"  # retries exhausted (retry_timeout_s) or a non-retryable 5xx
    INTERRUPTED = "shutdown"  # shutdown began while waiting to retry
    ERROR = "error"  # the record could not be encoded (a bug of ours, or an exotic value)


@dataclass
class Partial:
    """Some records delivered, some not: ``lost`` pairs each fate other than OK with
    its records; ``report_sent`` says whether the drop report (``dropped``) got through."""

    lost: list[tuple[Result, list[dict[str, Any]]]] = field(default_factory=list)
    report_sent: bool = False


def settle(
    res: Result | Partial, records: list[dict[str, Any]]
) -> tuple[bool, list[tuple[Result, list[dict[str, Any]]]]]:
    """(whether the drop report got through, the records not delivered with their fate)."""
    if isinstance(res, Partial):
        return res.report_sent, [(r, recs) for r, recs in res.lost if recs]
    if res is Result.OK:
        return True, []
    return False, [(res, records)] if records else []


@dataclass
class ExportBatch:
    """One export call: ``kind`` is "events", "feedback" or "models"; ``dropped`` is the
    drop report that travels with events (``X-Mlwatch-Dropped``); ``records`` may be
    empty when the call only carries a report."""

    kind: str
    records: list[dict[str, Any]]
    deadline: float = float("inf")
    interrupt: threading.Event = field(default_factory=threading.Event)
    dropped: list[dict[str, Any]] | None = None


class Exporter(Protocol):
    """See the module docstring. ``where`` names the destination (safe to log: no
    secret); ``last_error`` is the last failure in words a user can act on, or None."""

    name: str
    where: str
    last_error: str | None

    def export(self, batch: ExportBatch) -> Result | Partial: ...

    def force_flush(self, timeout: float = 5.0) -> bool: ...

    def shutdown(self, timeout: float = 5.0) -> bool: ...

    def after_fork(self) -> None: ...
