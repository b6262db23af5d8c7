"""The Elasticsearch sink: spool batches to data streams, each acknowledged event exactly once.

Delivery rules:

- Every document is a bulk ``create`` with the event id as ``_id``. A replay (after a
  crash, an outage, a retried request) gets 409 for what is already there, which counts
  as delivered: at-least-once delivery plus idempotent ids is exactly once.
- 429, 5xx and connection errors are retried with capped backoff, only for the items
  that failed. If they keep failing, ``export`` raises and the consumer replays the
  whole batch later from the spool (its cursor has not moved), so nothing is skipped.
- Any other per-item error (a mapping conflict, a document too large) will never succeed:
  the document goes to the dead-letter stream ``logs-mlwatch.deadletter-<namespace>``
  with the reason and the original document, and the stream flows on.
- Templates and the ILM policy are installed before the first bulk request (not at
  construction), so a sidecar starts and acknowledges events while Elasticsearch is down.

Bulk requests carry ``elasticsearch_batch_size`` documents (and at most 16 MiB);
``elasticsearch_concurrency`` of them are in flight at once.
Credentials (API key, password) are passed to the client only; URLs are logged without
their user-info part.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson
from prometheus_client import CollectorRegistry, Counter

from mlwatch.elastic import templates
from mlwatch.elastic.documents import (
    DEAD_LETTER,
    FEEDBACK,
    MODELS,
    PREDICTIONS,
    Origin,
    event_document,
    feedback_document,
    registration_document,
    stream_name,
)
from mlwatch.settings import Config
from mlwatch.sidecar.pipeline import Batch

log = logging.getLogger("mlwatch.elasticsearch")

MAX_REQUEST_BYTES = 16 << 20
RETRYABLE = frozenset({429, 500, 502, 503, 504})
ATTEMPTS = 4  # within one export; after that the consumer replays the batch later
SINK_NAME = "elasticsearch"


def safe_url(url: str) -> str:
    """A URL without ``user:password@``, fit for logs.

    >>> safe_url("https://elastic:s3cret@es.example:9200/")
    'https://es.example:9200/'
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def make_client(config: Config) -> Any:
    """An ``elasticsearch.Elasticsearch`` client from the settings (auth, TLS, timeouts)."""
    from elasticsearch import Elasticsearch

    hosts = [u.strip() for u in (config.elasticsearch_url or "").split(",") if u.strip()]
    if not hosts:
        raise ValueError("elasticsearch_url is empty")
    kwargs: dict[str, Any] = {"request_timeout": config.elasticsearch_timeout_s,
                              "max_retries": 2, "retry_on_timeout": True,
                              "http_compress": config.elasticsearch_compress}
    if config.elasticsearch_api_key:
        kwargs["api_key"] = config.elasticsearch_api_key
    elif config.elasticsearch_username:
        kwargs["basic_auth"] = (config.elasticsearch_username,
                                config.elasticsearch_password or "")
    if config.elasticsearch_ca_file:
        kwargs["ca_certs"] = config.elasticsearch_ca_file
    if not config.elasticsearch_verify_certs:
        kwargs["verify_certs"] = False
        kwargs["ssl_show_warn"] = False
    return Elasticsearch(hosts, **kwargs)


def install_templates(client: Any, config: Config) -> bool:
    """PUT the ILM policy, component and index templates (idempotent). Returns whether
    ILM is available; without it the templates go in without a lifecycle setting."""
    from elasticsearch import ApiError

    ilm = True
    try:
        client.perform_request("PUT", f"/_ilm/policy/{templates.POLICY}",
                               body=templates.ilm_policy(config),
                               headers={"content-type": "application/json",
                                        "accept": "application/json"})
    except ApiError as exc:
        if exc.meta.status not in (400, 404, 405) or "no handler" not in str(exc.body):
            raise
        ilm = False
        log.warning("this Elasticsearch has no ILM: data streams are created without a "
                    "lifecycle policy, so nothing is rolled over or deleted automatically")
    for path, body in templates.all_objects(config, ilm=ilm).items():
        if path.startswith("_ilm/"):
            continue
        client.perform_request("PUT", "/" + path, body=body,
                               headers={"content-type": "application/json",
                                        "accept": "application/json"})
    return ilm


@dataclass
class _Op:
    """One document to create: its target, id, and encoded source."""

    stream: str
    doc_id: str
    source: bytes

    def lines(self) -> bytes:
        action = orjson.dumps({"create": {"_index": self.stream, "_id": self.doc_id}})
        return action + b"\n" + self.source + b"\n"


class BulkIncomplete(Exception):
    """Some documents could not be delivered yet (Elasticsearch busy or unreachable)."""


class ElasticsearchSink:
    """A :class:`~mlwatch.sidecar.pipeline.Sink` writing to Elasticsearch data streams."""

    name = SINK_NAME

    def __init__(self, config: Config, *, registry: CollectorRegistry | None = None,
                 client: Any = None, origin: Origin | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.config = config
        self.client = client if client is not None else make_client(config)
        self.origin = origin or Origin()
        self.namespace = config.elasticsearch_namespace
        self.streams = {d: stream_name(d, self.namespace)
                        for d in (PREDICTIONS, FEEDBACK, MODELS, DEAD_LETTER)}
        self._installed = not config.elasticsearch_install_templates
        self._pool = ThreadPoolExecutor(config.elasticsearch_concurrency,
                                        thread_name_prefix="mlwatch-es-bulk")
        self._sleep = sleep
        self._closed = threading.Event()
        registry = registry if registry is not None else CollectorRegistry()
        self.documents = Counter(
            "mlwatch_sink_documents", "Documents a sink delivered, by result (created, or "
            "duplicate: already there after a replay).", ["sink", "result"], registry=registry)
        self.dead_letters = Counter(
            "mlwatch_sink_dead_letters", "Documents a sink rejected for good and wrote to the "
            "dead-letter stream, by data stream.", ["sink", "data_stream"], registry=registry)
        self.ilm: bool | None = None

    # -- the Sink contract ---------------------------------------------------
    def export(self, batch: Batch) -> None:
        if not self._installed:
            self.ilm = install_templates(self.client, self.config)
            self._installed = True
        ops = self._operations(batch)
        if ops:
            self._deliver(ops)

    def close(self) -> None:
        self._closed.set()
        self._pool.shutdown(wait=True)
        self.client.close()

    # -- building ------------------------------------------------------------
    def _operations(self, batch: Batch) -> list[_Op]:
        ops: list[_Op] = []
        dumps = orjson.dumps
        origin = self.origin
        stream = self.streams[PREDICTIONS]
        for array in batch.event_arrays:
            for row in orjson.loads(array):
                ops.append(_Op(stream, row[0], dumps(event_document(row, origin))))
        stream = self.streams[FEEDBACK]
        for array in batch.feedback_arrays:
            for row in orjson.loads(array):
                doc = feedback_document(row, origin)
                ops.append(_Op(stream, doc["event"]["id"], dumps(doc)))
        if batch.registrations:
            now = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
            stream = self.streams[MODELS]
            for reg in batch.registrations:
                doc = registration_document(reg, origin, now)
                ops.append(_Op(stream, doc["event"]["id"], dumps(doc)))
        return ops

    def _dead_letter(self, op: _Op, status: int, error: dict[str, Any]) -> _Op:
        doc = {"@timestamp": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
               "event": {"id": op.doc_id, "kind": "event", "dataset": DEAD_LETTER},
               "error": {"type": str(error.get("type", "unknown")),
                         "message": str(error.get("reason", error))[:8192]},
               "mlwatch": {"dead_letter": {"data_stream": op.stream, "status": status,
                                           "document": op.source.decode()}},
               **self.origin.fields()}
        return _Op(self.streams[DEAD_LETTER], op.doc_id, orjson.dumps(doc))

    # -- sending -------------------------------------------------------------
    def _chunks(self, ops: list[_Op]) -> list[list[_Op]]:
        out: list[list[_Op]] = []
        size = 0
        for op in ops:
            n = len(op.source) + 128
            if out and len(out[-1]) < self.config.elasticsearch_batch_size and \
                    size + n <= MAX_REQUEST_BYTES:
                out[-1].append(op)
                size += n
            else:
                out.append([op])
                size = n
        return out

    def _deliver(self, ops: list[_Op]) -> None:
        """Send until every op is created, already there, or dead-lettered."""
        delay = 0.2
        last_problem = ""
        for attempt in range(ATTEMPTS):
            results = list(self._pool.map(self._send, self._chunks(ops)))
            retry: list[_Op] = []
            dead: list[_Op] = []
            for retry_part, dead_part, problem in results:
                retry.extend(retry_part)
                dead.extend(dead_part)
                last_problem = problem or last_problem
            if dead:  # the dead-letter stream gets the same treatment (retry, never skip)
                retry.extend(dead)
            if not retry:
                return
            ops = retry
            if attempt < ATTEMPTS - 1 and not self._closed.is_set():
                self._sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 3, 5.0)
        raise BulkIncomplete(f"{len(ops)} document(s) not delivered yet: {last_problem}")

    def _send(self, chunk: list[_Op]) -> tuple[list[_Op], list[_Op], str]:
        """One bulk request. Returns (ops to retry, dead letters to write, a problem)."""
        from elasticsearch import ApiError, TransportError

        body = b"".join(op.lines() for op in chunk)
        try:
            resp = self.client.bulk(operations=body,
                                    filter_path="errors,items.*.status,items.*.error")
        except ApiError as exc:  # the whole request failed with a status
            if exc.meta.status in RETRYABLE or exc.meta.status >= 500:
                return chunk, [], f"bulk request: HTTP {exc.meta.status}"
            raise
        except TransportError as exc:  # connection refused, timeout, TLS...
            return chunk, [], f"bulk request: {type(exc).__name__}: {exc.message}"
        items = resp.get("items", [])
        if len(items) != len(chunk):
            return chunk, [], f"bulk response has {len(items)} items for {len(chunk)} documents"
        retry: list[_Op] = []
        dead: list[_Op] = []
        created = duplicate = 0
        problem = ""
        for op, item in zip(chunk, items, strict=True):
            result = item.get("create") or next(iter(item.values()))
            status = int(result.get("status", 0))
            if status in (200, 201):
                created += 1
            elif status == 409:
                duplicate += 1
            elif status in RETRYABLE or status >= 500:
                retry.append(op)
                problem = f"HTTP {status}: {(result.get('error') or {}).get('type')}"
            elif op.stream == self.streams[DEAD_LETTER]:
                # a dead letter that is itself refused: keep it in the log rather than loop
                log.error("dead letter %s refused (HTTP %s): %s", op.doc_id, status,
                          result.get("error"))
            else:
                self.dead_letters.labels(SINK_NAME, op.stream).inc()
                error = result.get("error") or {}
                log.warning("document %s refused for good by %s (HTTP %s %s: %s); written to "
                            "the dead-letter stream", op.doc_id, op.stream, status,
                            error.get("type"), str(error.get("reason"))[:300])
                dead.append(self._dead_letter(op, status, error))
        if created:
            self.documents.labels(SINK_NAME, "created").inc(created)
        if duplicate:
            self.documents.labels(SINK_NAME, "duplicate").inc(duplicate)
        return retry, dead, problem
