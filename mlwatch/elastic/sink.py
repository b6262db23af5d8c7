"""The Elasticsearch sink: spool batches to data streams, each acknowledged event exactly once.

Delivery rules:

- Every document is a bulk ``create`` with the event id as ``_id``. A replay (after a
  crash, an outage, a retried request) gets 409 for what is already there, which counts
  as delivered: at-least-once delivery plus idempotent ids is exactly once.
- 429, 5xx and connection errors are retried with capped backoff, only for the items
  that failed. If they keep failing, ``export`` returns a failed result and the consumer
  replays the whole batch later from the spool (its cursor has not moved), so nothing is
  skipped.
- A per-item error caused by the document (a mapping conflict, a document too large)
  will never succeed: the document goes to the dead-letter stream
  ``logs-mlwatch.deadletter-<namespace>`` with the reason and the original document, and
  the stream flows on (:mod:`mlwatch.elastic.bulk`).
- Templates and the ILM policy are installed before the first bulk request (not at
  construction), so a sidecar starts and acknowledges events while Elasticsearch is down.

Bulk requests carry ``elasticsearch_batch_size`` documents (and at most 16 MiB);
``elasticsearch_concurrency`` of them are in flight at once.
Connections and templates: :mod:`mlwatch.elastic.client`.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, Counter

from mlwatch.elastic.answers import read_items
from mlwatch.elastic.bulk import DOCUMENT_ERRORS, Op, Outcome, chunks, dead_letter, quiet
from mlwatch.elastic.client import install_templates, make_client
from mlwatch.elastic.documents import (
    DEAD_LETTER,
    FEEDBACK,
    MODELS,
    PREDICTIONS,
    Origin,
    event_document,
    feedback_document,
    registration_document,
    registration_id,
    stream_name,
)
from mlwatch.errors import DeliveryError
from mlwatch.settings import Config
from mlwatch.sinks.base import Batch, ConsumerOptions, ExportResult
from mlwatch.times import now_ts

log = logging.getLogger("mlwatch.elasticsearch")

ATTEMPTS = 4  # within one export; after that the consumer replays the batch later
SINK_NAME = "elasticsearch"


class ElasticsearchSink:
    """A :class:`~mlwatch.sinks.base.Sink` writing to Elasticsearch data streams."""

    name = SINK_NAME

    def __init__(
        self,
        config: Config,
        *,
        registry: CollectorRegistry | None = None,
        client: Any = None,
        origin: Origin | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config
        self.client = client if client is not None else make_client(config)
        self.origin = origin or Origin()
        self.namespace = config.data_stream_namespace
        self.streams = {
            d: stream_name(d, self.namespace) for d in (PREDICTIONS, FEEDBACK, MODELS, DEAD_LETTER)
        }
        self._installed = not config.elasticsearch_install_templates
        self._pool = ThreadPoolExecutor(
            config.elasticsearch_concurrency, thread_name_prefix="mlwatch-es-bulk"
        )
        self._sleep = sleep
        self._closed = threading.Event()
        registry = registry if registry is not None else CollectorRegistry()
        self.documents = Counter(
            "mlwatch_sink_documents",
            "Documents a sink delivered, by result (created, or "
            "duplicate: already there after a replay).",
            ["sink", "result"],
            registry=registry,
        )
        self.dead_letters = Counter(
            "mlwatch_sink_dead_letters",
            "Documents a sink rejected for good and wrote to the "
            "dead-letter stream, by data stream.",
            ["sink", "data_stream"],
            registry=registry,
        )
        self.lost = Counter(
            "mlwatch_sink_dead_letters_lost",
            "Dead letters the dead-letter stream itself "
            "refused (only possible when its template was changed).",
            ["sink"],
            registry=registry,
        )
        self.ilm: bool | None = None
        # how the spool consumer feeds this sink: a linger to fill bulk requests, and a
        # quicker retry after an outage than the local store needs
        self.options = ConsumerOptions(
            max_records=64,
            max_batch_bytes=32 << 20,
            max_backoff_s=5.0,
            linger_s=config.elasticsearch_flush_interval_ms / 1000,
        )

    # -- the Sink contract ---------------------------------------------------
    def export(self, batch: Batch) -> ExportResult:
        """Deliver every document of ``batch``, or say why not yet (the consumer retries
        the whole batch from the spool; what was created answers 409 the next time)."""
        from elasticsearch import ApiError, TransportError

        try:
            if not self._installed:
                self.ilm = self._install()
                self._installed = True
            self._export(batch)
        except DeliveryError as exc:
            return ExportResult.failed(str(exc))
        except ApiError as exc:
            return ExportResult.failed(f"HTTP {exc.meta.status} {exc.message}")
        except TransportError as exc:  # connection refused, timeout, TLS...
            return ExportResult.failed(f"{type(exc).__name__}: {exc.message}")
        return ExportResult.SUCCESS

    def _export(self, batch: Batch) -> None:
        # Documents are built a group at a time (batch_size x concurrency), so a large
        # backlog replayed after an outage never sits in memory as documents all at once.
        group_size = self.config.elasticsearch_batch_size * self.config.elasticsearch_concurrency
        group: list[Op] = []
        for op in self._operations(batch):
            group.append(op)
            if len(group) >= group_size:
                self._deliver(group)
                group = []
        if group:
            self._deliver(group)

    def force_flush(self, timeout: float = 10.0) -> bool:
        return True  # nothing is held between exports

    def shutdown(self, timeout: float = 10.0) -> bool:
        """Stop retrying, wait for requests in flight, close the connections."""
        if not self._closed.is_set():
            self._closed.set()
            self._pool.shutdown(wait=True)
            self.client.close()
        return True

    def _install(self) -> bool | None:
        from elasticsearch import ApiError

        try:
            return install_templates(self.client, self.config)
        except ApiError as exc:
            if exc.meta.status != 403:
                raise
            log.warning(
                "cannot install the index templates (HTTP 403: these credentials lack "
                "manage_index_templates / manage_ilm); assuming they are managed "
                "elsewhere (exporters/elasticsearch/)"
            )
            return None

    # -- building ------------------------------------------------------------
    def _operations(self, batch: Batch) -> Iterator[Op]:
        origin = self.origin
        build: Callable[[Any, Origin], dict[str, Any]]
        for stream, arrays, build in (
            (self.streams[PREDICTIONS], batch.event_arrays, event_document),
            (self.streams[FEEDBACK], batch.feedback_arrays, feedback_document),
        ):
            for array in arrays:
                for row in orjson.loads(array):
                    yield self._encode(stream, row, partial(build, row, origin))
        if batch.registrations:
            now = now_ts()
            for reg in batch.registrations:
                yield self._encode(
                    self.streams[MODELS], reg, partial(registration_document, reg, origin, now)
                )

    def _encode(self, stream: str, raw: Any, build: Callable[[], dict[str, Any]]) -> Op:
        """One document, or — when it cannot be built or encoded (a bug of ours, or a value
        no validation foresaw) — its dead letter, so one record never wedges the stream."""
        try:
            doc = build()
            return Op(stream, doc["event"]["id"], orjson.dumps(doc))
        except Exception as exc:
            doc_id = str(raw[0] if isinstance(raw, list) else _registration_key(raw))
            source = orjson.dumps(raw, default=str, option=orjson.OPT_PASSTHROUGH_DATACLASS)
            self.dead_letters.labels(SINK_NAME, stream).inc()
            log.warning(
                "record %s could not be turned into a document for %s (%s); written "
                "to the dead-letter stream",
                doc_id,
                stream,
                type(exc).__name__,
            )
            return dead_letter(
                Op(stream, doc_id, source),
                0,
                {"type": "unencodable", "reason": f"{type(exc).__name__}: {exc}"},
                self.streams[DEAD_LETTER],
                self.origin,
            )

    # -- sending -------------------------------------------------------------
    def _deliver(self, ops: list[Op]) -> None:
        """Send until every op is created, already there, or dead-lettered; raise
        :class:`~mlwatch.errors.DeliveryError` when some are still refused after a few
        attempts (the consumer then replays the batch later; the sink reports unhealthy)."""
        delay = 0.2
        problems: list[str] = []
        for attempt in range(ATTEMPTS):
            retry: list[Op] = []
            problems = []
            for outcome in self._pool.map(
                self._send, chunks(ops, self.config.elasticsearch_batch_size)
            ):
                retry.extend(outcome.retry)
                retry.extend(outcome.dead)  # dead letters get the same treatment
                problems.extend(outcome.problems)
            if not retry:
                return
            ops = retry
            if attempt < ATTEMPTS - 1 and not self._closed.is_set():
                self._sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 3, 5.0)
        raise DeliveryError(
            f"{len(ops)} document(s) not delivered yet: {'; '.join(sorted(set(problems))[:3])}"
        )

    def _send(self, chunk: list[Op]) -> Outcome:
        """One bulk request; never raises (a pool thread's exception would discard the
        other chunks' results). A request too large is split; one document too large is
        a dead letter."""
        from elasticsearch import ApiError, TransportError

        body = b"".join(op.lines() for op in chunk)
        try:
            resp = self.client.bulk(
                operations=body, filter_path="errors,items.*._id,items.*.status,items.*.error"
            )
        except ApiError as exc:
            status = exc.meta.status
            if status == 413:
                if len(chunk) == 1:
                    return self._refuse(
                        chunk[0], 413, {"type": "request_too_large", "reason": f"{len(body)} bytes"}
                    )
                half = len(chunk) // 2
                return self._send(chunk[:half]).join(self._send(chunk[half:]))
            return Outcome(retry=chunk, problems=[f"bulk request: HTTP {status} {exc.message}"])
        except TransportError as exc:  # connection refused, timeout, TLS...
            return Outcome(
                retry=chunk, problems=[f"bulk request: {type(exc).__name__}: {exc.message}"]
            )
        except Exception as exc:  # e.g. a response that does not parse
            return Outcome(
                retry=chunk, problems=[f"bulk request: {type(exc).__name__}: {str(exc)[:200]}"]
            )
        return self._tally(chunk, getattr(resp, "body", resp))

    def _tally(self, chunk: list[Op], body: Any) -> Outcome:
        """Sort the documents of one bulk answer: delivered (created or already there),
        refused for what they are (dead letters), or to retry (anything else, including
        every item the answer does not confirm in Elasticsearch's own shape)."""
        items = read_items(body, chunk)
        if isinstance(items, str):
            return Outcome(retry=chunk, problems=[items])
        outcome = Outcome()
        created = duplicate = 0
        for op, item in zip(chunk, items, strict=True):
            if item.status in (200, 201):
                created += 1
            elif item.status == 409:
                duplicate += 1
            elif item.status == 400 and item.error.get("type") in DOCUMENT_ERRORS:
                outcome.join(self._refuse(op, item.status, item.error))
            else:  # 401/403/404/429/5xx, blocks, index names: the cluster, not the document
                outcome.retry.append(op)
                outcome.problems.append(
                    f"bulk item: {item.problem}"
                    if item.problem
                    else f"HTTP {item.status} {item.error.get('type')}: "
                    f"{quiet(str(item.error.get('reason')))[:200]}"
                )
        if created:
            self.documents.labels(SINK_NAME, "created").inc(created)
        if duplicate:
            self.documents.labels(SINK_NAME, "duplicate").inc(duplicate)
        return outcome

    def _refuse(self, op: Op, status: int, error: dict[str, Any]) -> Outcome:
        """A document refused for what it is: to the dead-letter stream, once."""
        if op.stream == self.streams[DEAD_LETTER]:
            # only a changed dead-letter template can get here; retrying cannot help
            self.lost.labels(SINK_NAME).inc()
            log.error(
                "dead letter %s refused (HTTP %s %s); it is lost",
                op.doc_id,
                status,
                error.get("type"),
            )
            return Outcome()
        self.dead_letters.labels(SINK_NAME, op.stream).inc()
        log.warning(
            "document %s refused for good by %s (HTTP %s %s: %s); written to the "
            "dead-letter stream",
            op.doc_id,
            op.stream,
            status,
            error.get("type"),
            quiet(str(error.get("reason")))[:300],
        )
        return Outcome(
            dead=[dead_letter(op, status, error, self.streams[DEAD_LETTER], self.origin)]
        )


def _registration_key(reg: Any) -> str:
    try:
        return registration_id(reg)
    except Exception:
        return "unencodable-registration"
