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
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial
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
    registration_id,
    stream_name,
)
from mlwatch.settings import Config
from mlwatch.sidecar.pipeline import Batch

log = logging.getLogger("mlwatch.elasticsearch")

MAX_REQUEST_BYTES = 16 << 20
TRUNCATED_DEAD_LETTER = 64 << 10
# Per-item errors caused by the document itself: retrying cannot help, so the document
# goes to the dead-letter stream. Anything else (401, 403, 404, 429, 5xx, cluster blocks,
# bad index names) is the cluster's state or our configuration: retried, never skipped.
DOCUMENT_ERRORS = frozenset({
    "mapper_parsing_exception", "document_parsing_exception", "illegal_argument_exception",
    "strict_dynamic_mapping_exception", "x_content_parse_exception", "parse_exception",
    "mapper_exception", "json_parse_exception", "document_source_missing_exception"})
_PREVIEW = re.compile(r"Preview of field's value: .*", re.DOTALL)
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
    try:
        return Elasticsearch(hosts, **kwargs)
    except ValueError:  # the client's message quotes the URL, user-info included
        raise ValueError("elasticsearch_url: cannot parse "
                         + ", ".join(safe_url(h) for h in hosts)) from None


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
        self.lost = Counter(
            "mlwatch_sink_dead_letters_lost", "Dead letters the dead-letter stream itself "
            "refused (only possible when its template was changed).", ["sink"],
            registry=registry)
        self.ilm: bool | None = None
        # how the spool consumer feeds this sink: larger reads, a linger to fill bulk
        # requests, and a quicker retry after an outage than the local store needs
        self.consumer_options = {"max_records": 64, "max_batch_bytes": 32 << 20,
                                 "linger_s": config.elasticsearch_flush_interval_ms / 1000,
                                 "max_backoff_s": 5.0}

    # -- the Sink contract ---------------------------------------------------
    def export(self, batch: Batch) -> None:
        if not self._installed:
            self.ilm = self._install()
            self._installed = True
        # Documents are built a group at a time (batch_size x concurrency), so a large
        # backlog replayed after an outage never sits in memory as documents all at once.
        group_size = self.config.elasticsearch_batch_size * self.config.elasticsearch_concurrency
        group: list[_Op] = []
        for op in self._operations(batch):
            group.append(op)
            if len(group) >= group_size:
                self._deliver(group)
                group = []
        if group:
            self._deliver(group)

    def close(self) -> None:
        self._closed.set()
        self._pool.shutdown(wait=True)
        self.client.close()

    def _install(self) -> bool | None:
        from elasticsearch import ApiError

        try:
            return install_templates(self.client, self.config)
        except ApiError as exc:
            if exc.meta.status != 403:
                raise
            log.warning("cannot install the index templates (HTTP 403: these credentials lack "
                        "manage_index_templates / manage_ilm); assuming they are managed "
                        "elsewhere (exporters/elasticsearch/)")
            return None

    # -- building ------------------------------------------------------------
    def _operations(self, batch: Batch) -> Iterator[_Op]:
        origin = self.origin
        build: Callable[[Any, Origin], dict[str, Any]]
        for stream, arrays, build in (
                (self.streams[PREDICTIONS], batch.event_arrays, event_document),
                (self.streams[FEEDBACK], batch.feedback_arrays, feedback_document)):
            for array in arrays:
                for row in orjson.loads(array):
                    yield self._encode(stream, row, partial(build, row, origin))
        if batch.registrations:
            now = _now()
            for reg in batch.registrations:
                yield self._encode(self.streams[MODELS], reg,
                                   partial(registration_document, reg, origin, now))

    def _encode(self, stream: str, raw: Any, build: Callable[[], dict[str, Any]]) -> _Op:
        """One document, or — when it cannot be built or encoded (a bug of ours, or a value
        no validation foresaw) — its dead letter, so one record never wedges the stream."""
        try:
            doc = build()
            return _Op(stream, doc["event"]["id"], orjson.dumps(doc))
        except Exception as exc:
            doc_id = str(raw[0] if isinstance(raw, list) else _registration_key(raw))
            source = orjson.dumps(raw, default=str, option=orjson.OPT_PASSTHROUGH_DATACLASS)
            self.dead_letters.labels(SINK_NAME, stream).inc()
            log.warning("record %s could not be turned into a document for %s (%s); written "
                        "to the dead-letter stream", doc_id, stream, type(exc).__name__)
            return self._dead_letter(_Op(stream, doc_id, source), 0,
                                     {"type": "unencodable",
                                      "reason": f"{type(exc).__name__}: {exc}"})

    def _dead_letter(self, op: _Op, status: int, error: dict[str, Any]) -> _Op:
        # a document refused for its size keeps only its head, or its dead letter would be
        # refused too; the original is still in the embedded store
        limit = TRUNCATED_DEAD_LETTER if status == 413 else len(op.source)
        dead_letter = {"data_stream": op.stream, "status": status,
                       "document": op.source[:limit].decode(errors="replace")}
        if limit < len(op.source):
            dead_letter["truncated_from"] = len(op.source)
        doc = {"@timestamp": _now(),
               "event": {"id": op.doc_id, "kind": "event", "dataset": DEAD_LETTER},
               "error": {"type": str(error.get("type", "unknown")),
                         "message": str(error.get("reason", error))[:8192]},
               "mlwatch": {"dead_letter": dead_letter},
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
        """Send until every op is created, already there, or dead-lettered; raise
        :class:`BulkIncomplete` when some are still refused after a few attempts (the
        consumer then replays the batch later, and the sink reports unhealthy)."""
        delay = 0.2
        problems: list[str] = []
        for attempt in range(ATTEMPTS):
            retry: list[_Op] = []
            problems = []
            for outcome in self._pool.map(self._send, self._chunks(ops)):
                retry.extend(outcome.retry)
                retry.extend(outcome.dead)  # dead letters get the same treatment
                problems.extend(outcome.problems)
            if not retry:
                return
            ops = retry
            if attempt < ATTEMPTS - 1 and not self._closed.is_set():
                self._sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 3, 5.0)
        raise BulkIncomplete(f"{len(ops)} document(s) not delivered yet: "
                             f"{'; '.join(sorted(set(problems))[:3])}")

    def _send(self, chunk: list[_Op]) -> _Outcome:
        """One bulk request; never raises (a pool thread's exception would discard the
        other chunks' results). A request too large is split; one document too large is
        a dead letter."""
        from elasticsearch import ApiError, TransportError

        body = b"".join(op.lines() for op in chunk)
        try:
            resp = self.client.bulk(operations=body,
                                    filter_path="errors,items.*.status,items.*.error")
        except ApiError as exc:
            status = exc.meta.status
            if status == 413:
                if len(chunk) == 1:
                    return self._refuse(chunk[0], 413, {"type": "request_too_large",
                                                         "reason": f"{len(body)} bytes"})
                half = len(chunk) // 2
                return self._send(chunk[:half]).join(self._send(chunk[half:]))
            return _Outcome(retry=chunk, problems=[f"bulk request: HTTP {status} {exc.message}"])
        except TransportError as exc:  # connection refused, timeout, TLS...
            return _Outcome(retry=chunk, problems=[f"bulk request: {type(exc).__name__}: "
                                                   f"{exc.message}"])
        except Exception as exc:  # e.g. a response that does not parse
            return _Outcome(retry=chunk, problems=[f"bulk request: {type(exc).__name__}"])
        items = resp.get("items", [])
        if len(items) != len(chunk):
            return _Outcome(retry=chunk, problems=[
                f"bulk response has {len(items)} items for {len(chunk)} documents"])
        outcome = _Outcome()
        created = duplicate = 0
        for op, item in zip(chunk, items, strict=True):
            result = item.get("create") or next(iter(item.values()))
            status = int(result.get("status", 0))
            error = result.get("error") or {}
            if status in (200, 201):
                created += 1
            elif status == 409:
                duplicate += 1
            elif status == 400 and error.get("type") in DOCUMENT_ERRORS:
                outcome.join(self._refuse(op, status, error))
            else:  # 401/403/404/429/5xx, blocks, index names: the cluster, not the document
                outcome.retry.append(op)
                outcome.problems.append(f"HTTP {status} {error.get('type')}: "
                                        f"{_quiet(str(error.get('reason')))[:200]}")
        if created:
            self.documents.labels(SINK_NAME, "created").inc(created)
        if duplicate:
            self.documents.labels(SINK_NAME, "duplicate").inc(duplicate)
        return outcome

    def _refuse(self, op: _Op, status: int, error: dict[str, Any]) -> _Outcome:
        """A document refused for what it is: to the dead-letter stream, once."""
        if op.stream == self.streams[DEAD_LETTER]:
            # only a changed dead-letter template can get here; retrying cannot help
            self.lost.labels(SINK_NAME).inc()
            log.error("dead letter %s refused (HTTP %s %s); it is lost", op.doc_id, status,
                      error.get("type"))
            return _Outcome()
        self.dead_letters.labels(SINK_NAME, op.stream).inc()
        log.warning("document %s refused for good by %s (HTTP %s %s: %s); written to the "
                    "dead-letter stream", op.doc_id, op.stream, status, error.get("type"),
                    _quiet(str(error.get("reason")))[:300])
        return _Outcome(dead=[self._dead_letter(op, status, error)])


@dataclass
class _Outcome:
    """What one bulk request left to do."""

    retry: list[_Op] = field(default_factory=list)
    dead: list[_Op] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def join(self, other: _Outcome) -> _Outcome:
        self.retry += other.retry
        self.dead += other.dead
        self.problems += other.problems
        return self


def _now() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def _registration_key(reg: Any) -> str:
    try:
        return registration_id(reg)
    except Exception:
        return "unencodable-registration"


def _quiet(reason: str) -> str:
    """An Elasticsearch error reason without the value it quotes: feature values that are
    not marked sensitive still do not belong in logs."""
    return _PREVIEW.sub("Preview of field's value: (omitted)", reason)
