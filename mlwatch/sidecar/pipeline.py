"""Feed every sink from the spool, one consumer thread per sink.

The exporter contract (one for every sink): ``export(batch)`` delivers a batch or
raises; it is never called concurrently for one sink; ``close()`` releases it; an
optional ``tick()`` is called when the spool has nothing new (a sink that buffers
flushes then); an optional ``consumer_options`` dict sets the sink's :class:`Consumer`
keywords (batch size, linger, backoff).
The consumer commits a sink's spool cursor only after ``export`` returned, so a
crash replays at most the batch in flight, and sinks are idempotent (keys are
event ids), hence "delivered once". A failing sink is retried with capped,
jittered backoff and counted in ``mlwatch_sink_errors_total``; it never blocks
ingest or the other sinks — the spool absorbs the backlog up to its disk bound.

Spool record payloads are versioned: two bytes of kind and format version, then
a JSON array. ``E1``: events as rows in the store's column order
(:data:`mlwatch.store.EVENT_COLUMNS`) with features, prediction and labels as JSON
text — decoding rows of scalars is several times cheaper than rebuilding nested
objects, and the store inserts them as they are. ``F1``: feedback records;
``M1``: model registrations (wire-format objects).
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from mlwatch.sidecar.spool import Record, Spool
from mlwatch.store import EmbeddedStore, event_row, feedback_row

log = logging.getLogger("mlwatch.sidecar")

EVENTS, FEEDBACK, MODELS = b"E1", b"F1", b"M1"
STALL_S = 60.0


def encode(kind: bytes, items: list[dict[str, Any]]) -> bytes:
    if kind == EVENTS:
        return kind + orjson.dumps([event_row(e) for e in items])
    if kind == FEEDBACK:
        return kind + orjson.dumps([feedback_row(f) for f in items])
    return kind + orjson.dumps(items)


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
        kind, body = payload[:2], payload[2:]
        if kind == EVENTS:
            self.event_arrays.append(body)
        elif kind == FEEDBACK:
            self.feedback_arrays.append(body)
        elif kind == MODELS:
            self.registrations.extend(orjson.loads(body))
        else:  # written by a newer mlwatch; keep going rather than wedge the stream
            self.unknown_records += 1

    def event_rows_json(self) -> str:
        return _join_arrays(self.event_arrays)

    def feedback_rows_json(self) -> str:
        return _join_arrays(self.feedback_arrays)


class Sink(Protocol):
    name: str

    def export(self, batch: Batch) -> None: ...

    def close(self) -> None: ...


class StoreSink:
    """The embedded store as a sink."""

    name = "store"

    def __init__(self, store: EmbeddedStore) -> None:
        self.store = store

    def export(self, batch: Batch) -> None:
        for reg in batch.registrations:
            self.store.register_model(reg)
        self.store.insert_event_rows(batch.event_rows_json())
        self.store.insert_feedback_rows(batch.feedback_rows_json())

    def close(self) -> None:
        self.store.close()


def chunks_by_bytes(records: list[Record], max_bytes: int) -> list[list[Record]]:
    """Consecutive groups of records whose payloads add up to at most ``max_bytes``
    (a single larger record forms a group of its own)."""
    groups: list[list[Record]] = []
    size = 0
    for record in records:
        if groups and size + len(record.payload) <= max_bytes:
            groups[-1].append(record)
            size += len(record.payload)
        else:
            groups.append([record])
            size = len(record.payload)
    return groups


class Consumer(threading.Thread):
    """Moves records from the spool into one sink, in order, until stopped.

    Any failure — reading the spool, exporting, writing the cursor — is retried with
    capped, jittered backoff from the sink's last committed position: a sink never
    stops for good while the sidecar runs, and never skips a record.
    """

    def __init__(self, spool: Spool, sink: Sink, *, on_error: Any, max_records: int = 64,
                 max_batch_bytes: int = 32 << 20, max_backoff_s: float = 30.0,
                 linger_s: float = 0.0) -> None:
        super().__init__(name=f"mlwatch-sink-{sink.name}", daemon=True)
        self.spool = spool
        self.sink = sink
        self.max_records = max_records
        self.max_batch_bytes = max_batch_bytes
        self.max_backoff_s = max_backoff_s
        self.linger_s = linger_s
        self._on_error = on_error
        self._stop_event = threading.Event()
        self.healthy = True
        self.last_error: str | None = None
        self.busy_since: float | None = None  # monotonic start of the export in progress

    def stop(self) -> None:
        self._stop_event.set()

    def state(self, stall_s: float = STALL_S) -> dict[str, Any]:
        """Health as /readyz and the status endpoint show it. An export still running after
        ``stall_s`` (a sink that neither answers nor refuses) counts as unhealthy."""
        busy = self.busy_since
        stalled = busy is not None and time.monotonic() - busy > stall_s
        error = (f"export running for {time.monotonic() - busy:.0f} s" if stalled and busy
                 else self.last_error)
        return {"healthy": self.healthy and not stalled and self.is_alive(),
                "alive": self.is_alive(), "last_error": error}

    def run(self) -> None:
        delay = 0.1
        while not self._stop_event.is_set():
            try:
                self._step()
            except Exception as exc:  # the spool keeps the data: go back and try again
                self.healthy = False
                self.last_error = f"{type(exc).__name__}: {exc}"
                self._on_error(self.sink.name, exc)
                with contextlib.suppress(Exception):
                    self.spool.rewind(self.sink.name)
                self._stop_event.wait(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, self.max_backoff_s)
            else:
                delay = 0.1

    def _step(self) -> None:
        records = self.spool.read(self.sink.name, self.max_records, timeout=0.25)
        if not records:
            tick = getattr(self.sink, "tick", None)  # sinks that buffer flush when idle
            if tick is not None:
                tick()
            return
        if records and self.linger_s > 0:  # fill the batch a little longer (bulk efficiency)
            deadline = time.monotonic() + self.linger_s
            while len(records) < self.max_records and not self._stop_event.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                records += self.spool.read(self.sink.name, self.max_records - len(records),
                                           timeout=left)
        for group in chunks_by_bytes(records, self.max_batch_bytes):
            if self._stop_event.is_set():
                return  # uncommitted records are read again at the next start
            batch = Batch()
            for record in group:
                batch.add(record.payload)
            self.busy_since = time.monotonic()
            try:
                self.sink.export(batch)
            finally:
                self.busy_since = None
            self.spool.commit(self.sink.name, group[-1])
            self.healthy = True
            self.last_error = None
