"""The one contract of a spool sink: the embedded store, the profiles, Elasticsearch.

A sink has a ``name`` (its spool cursor), ``options`` (how the consumer feeds it), and

- ``export(batch) -> ExportResult``: deliver a :class:`Batch`; never called concurrently
  for one sink. ``ExportResult.failed(why)`` when the destination could not take it yet
  (an outage, a refusal about the cluster): the consumer keeps the batch in the spool and
  retries with backoff. An exception is handled the same way, as a bug;
- ``force_flush(timeout) -> bool``: write what the sink holds in memory (the profile
  sink's slices); the consumer calls it when the spool is idle, every
  ``options.idle_flush_s``;
- ``shutdown(timeout) -> bool``: flush and release connections; idempotent.

The consumer commits a sink's cursor only after ``export`` succeeded, so a crash replays
at most the batch in flight; sinks are idempotent (keys are event ids), hence "delivered
once". The client's exporters (:mod:`mlwatch.client.exporter`) have the same shape over
records instead of spool batches.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from mlwatch.store.payloads import EVENTS, FEEDBACK, MODELS, body_of, kind_of
from mlwatch.store.rows import loads


@dataclass(frozen=True)
class ConsumerOptions:
    """How the spool consumer feeds one sink."""

    max_records: int = 64  # spool records per read (one record is one ingested request)
    max_batch_bytes: int = 32 << 20  # payload bytes per export
    linger_s: float = 0.0  # wait up to this long to fill a batch (bulk efficiency)
    max_backoff_s: float = 30.0  # longest pause between retries of a failing export
    idle_flush_s: float | None = None  # force_flush when idle, at most this often


@dataclass(frozen=True)
class ExportResult:
    """What one export achieved: ``ok``, or the reason it must be retried."""

    ok: bool
    error: str | None = None
    SUCCESS: ClassVar[ExportResult]

    @classmethod
    def failed(cls, error: str) -> ExportResult:
        return cls(False, error)


ExportResult.SUCCESS = ExportResult(True)


def _join_arrays(arrays: list[bytes]) -> str:
    """Concatenate JSON arrays without decoding them: ``[a,b]`` + ``[c]`` -> ``[a,b,c]``."""
    return "[" + ",".join(a[1:-1].decode() for a in arrays if len(a) > 2) + "]"


@dataclass
class Batch:
    """What one export call delivers: consecutive spool records.

    Event and feedback rows stay as the JSON text they were spooled as; the store
    inserts that text in one statement, and other sinks decode what they need.
    """

    event_arrays: list[bytes] = field(default_factory=list)
    feedback_arrays: list[bytes] = field(default_factory=list)
    registrations: list[dict[str, Any]] = field(default_factory=list)
    unknown_records: int = 0

    def add(self, payload: bytes) -> None:
        kind, body = kind_of(payload), body_of(payload)
        if kind == EVENTS:
            self.event_arrays.append(body)
        elif kind == FEEDBACK:
            self.feedback_arrays.append(body)
        elif kind == MODELS:
            self.registrations.extend(loads(body))
        else:  # written by a newer mlwatch; keep going rather than wedge the stream
            self.unknown_records += 1

    def event_rows_json(self) -> str:
        return _join_arrays(self.event_arrays)

    def feedback_rows_json(self) -> str:
        return _join_arrays(self.feedback_arrays)


class Sink(Protocol):
    """See the module docstring."""

    name: str
    options: ConsumerOptions

    def export(self, batch: Batch) -> ExportResult: ...

    def force_flush(self, timeout: float = 10.0) -> bool: ...

    def shutdown(self, timeout: float = 10.0) -> bool: ...
