"""The sidecar's core, independent of HTTP: ingest, spool, sinks, status.

``ingest`` is the whole acknowledged path: decode → validate → redact → one
durable spool append → fold into metrics. It returns only once the records are
durable under the fsync policy, which is when the HTTP layer may answer 202.
Everything after that (the store, later Elasticsearch) is fed from the spool by
:mod:`mlwatch.sinks.consumer`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import OrderedDict
from operator import itemgetter
from pathlib import Path
from typing import Any, Literal, cast

import orjson
from prometheus_client import CollectorRegistry
from prometheus_client.process_collector import ProcessCollector

from mlwatch import wire
from mlwatch.errors import IngestError, SpoolClosed, SpoolError, SpoolFull, ValidationError
from mlwatch.inputs import body
from mlwatch.logs import RateLimitedLog
from mlwatch.redact import Redactor, load_or_create_key
from mlwatch.settings import Config
from mlwatch.sidecar.metrics import SidecarMetrics
from mlwatch.sinks.base import Sink
from mlwatch.sinks.consumer import Consumer
from mlwatch.sinks.store import StoreSink
from mlwatch.store import EmbeddedStore
from mlwatch.store.catalog import unknown_model
from mlwatch.store.payloads import EVENTS, FEEDBACK, MODELS, encode
from mlwatch.store.spool import HEADER_LEN, Spool

log = logging.getLogger("mlwatch.sidecar")
RESTORE_MAX_EVENTS = 2_000_000
RESTORE_WAIT_S = 10.0  # the longest the start waits for the store sink to catch up

VALIDATORS = {
    EVENTS: wire.validate_event,
    FEEDBACK: wire.validate_feedback,
    MODELS: wire.validate_registration,
}
RETRY_AFTER_FULL_S = 5
REPORT_IDS_KEPT = 1000
PURGE_EVERY_S = 3600.0
SPOOL_CHECK_S = 1.0  # while the spool's disk fails: how often it tries to go on


class Sidecar:
    """Owns the spool, the store, the sink consumers and the metrics of one sidecar."""

    def __init__(self, config: Config, *, registry: CollectorRegistry | None = None) -> None:
        self.config = config
        self.data_dir = Path(config.data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.registry = registry if registry is not None else CollectorRegistry()
        self._tasks: dict[str, str] = {m.name: m.task for m in config.models}
        buckets = {m.name: m.value_buckets for m in config.models if m.value_buckets}
        self.metrics = SidecarMetrics(
            self.registry, self._tasks.get, buckets.get, config.environment
        )
        if registry is None:
            ProcessCollector(registry=self.registry)
        self._stop = threading.Event()
        self._failures = RateLimitedLog(log)  # a failing sink fails on every retry
        self._reports_seen: OrderedDict[str, None] = OrderedDict()
        self._reports_lock = threading.Lock()
        self._started = False
        self._configured = frozenset(m.name for m in config.models)
        # models with records acknowledged since the start, stored or still in the spool
        self._accepted: frozenset[str] = frozenset()
        self._accepted_lock = threading.Lock()
        self.store = EmbeddedStore(self.data_dir / "store.db", retention_days=config.retention_days)
        self.sinks: list[Sink] = []
        try:
            self._build()
        except BaseException:  # a half-built sidecar must not keep the spool's lock
            self._release()
            raise

    def _build(self) -> None:
        """The sinks, the spool that feeds them, the inputs and the scheduler."""
        config = self.config
        self.sinks.append(StoreSink(self.store, on_joined=self._count_outcomes))
        if config.elasticsearch_url:
            from mlwatch.elastic.sink import ElasticsearchSink

            self.sinks.append(ElasticsearchSink(config, registry=self.registry))
        if any(m.monitoring for m in config.models):
            from mlwatch.sinks.profiles import ProfileSink

            self.sinks.append(
                ProfileSink(self.store, config.profile_slice_s, environment=config.environment)
            )
        self.spool = Spool(
            self.data_dir / "spool",
            consumers=[s.name for s in self.sinks],
            fsync=cast("Literal['always', 'interval']", config.spool_fsync),
            fsync_interval_ms=config.spool_fsync_interval_ms,
            segment_bytes=config.spool_segment_bytes,
            max_bytes=config.spool_max_bytes,
        )
        # the largest record that fits while the active segment holds data (spool.py)
        self._max_record_bytes = (
            config.spool_max_bytes - config.spool_segment_bytes - 2 * HEADER_LEN - 64
        )
        self._corrupt_counted = 0
        self._count_corrupt()
        self.redactor = Redactor(
            config.models, key=load_or_create_key(config.hash_key, self.data_dir)
        )
        # a sink with records to deliver that commits none for this long is unready
        self.consumers = [
            Consumer(self.spool, sink, on_error=self._sink_error, stall_s=config.sink_stall_s)
            for sink in self.sinks
        ]
        # other ways in besides HTTP; each hands decoded records to accept()
        self.inputs: list[Any] = []
        if config.forward_port is not None:
            from mlwatch.inputs.forward import ForwardInput

            self.inputs.append(ForwardInput(config, self.accept, registry=self.registry))
        self.retrainer: Any = None
        if any(m.retrain for m in config.models):
            from mlwatch.alerting.retrain import Retrainer, targets_of

            audit = None
            if config.elasticsearch_url:
                from mlwatch.alerting.audit import ElasticAudit

                audit = ElasticAudit(config)
            self.retrainer = Retrainer(
                config, self.store, self.registry, targets=targets_of(config), audit=audit
            )
        self.scheduler: Any = None
        if config.scheduler and (any(m.monitoring for m in config.models) or config.grafana_sync_s):
            from mlwatch.scheduler import Scheduler

            self.scheduler = Scheduler(config, self.store, self.registry)
            self.scheduler.jobs.retrainer = self.retrainer
        self.mlflow: Any = None
        if any(m.mlflow for m in config.models):
            from mlwatch.sidecar.mlflow_identity import MlflowIdentities

            self.mlflow = MlflowIdentities(
                config, lambda regs: self.accept(MODELS, regs), self.registry
            )
        self._maintenance = threading.Thread(
            target=self._maintain, name="mlwatch-maintenance", daemon=True
        )

    def _release(self) -> None:
        """Close what a failed construction opened (no thread has started yet)."""
        for sink in self.sinks:
            with contextlib.suppress(Exception):
                sink.shutdown(1.0)
        spool: Spool | None = self.__dict__.get("spool")  # None: it was never opened
        if spool is not None:
            with contextlib.suppress(Exception):
                spool.close()
        self.store.close()

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> None:
        if self._started:
            return
        self._started = True
        for consumer in self.consumers:
            consumer.start()
        self._restore_counters()  # before the inputs run: nothing counted twice
        self._maintenance.start()
        for source in self.inputs:
            source.start()
        if self.mlflow is not None:
            self.mlflow.start()
        if self.scheduler is not None:
            self.scheduler.start()
        if self.retrainer is not None:
            self.retrainer.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop consumers (what they have not committed is replayed at the next start)."""
        deadline = time.monotonic() + timeout
        self._stop.set()
        if self.mlflow is not None:
            self.mlflow.stop()
        if self.scheduler is not None:
            self.scheduler.shutdown()
        if self.retrainer is not None:
            self.retrainer.stop(0.0)  # no new attempt; one under way is let finish below
        for source in self.inputs:
            source.stop()
        for consumer in self.consumers:
            consumer.stop()
        self.spool.close()
        threads: list[threading.Thread] = [*self.consumers, self._maintenance]
        for thread in threads:
            if thread.is_alive():
                thread.join(max(0.0, deadline - time.monotonic()))
        retrainer_done = self.retrainer is None or self.retrainer.stop(
            max(0.0, deadline - time.monotonic())
        )
        # a sink (a SQLite connection) closed while its thread still uses it can crash the
        # process: leave a busy one open, shut the others down, the store last (the
        # profile sink writes to it when it shuts down)
        for consumer in self.consumers:
            if consumer.is_alive():
                log.warning(
                    "sidecar stop: sink %s is still busy; leaving it open", consumer.sink.name
                )
                continue
            try:
                consumer.sink.shutdown(max(0.0, deadline - time.monotonic()))
            except Exception as exc:  # one sink's failure must not keep the others open
                log.warning(
                    "sidecar stop: closing sink %s failed: %s: %s",
                    consumer.sink.name,
                    type(exc).__name__,
                    exc,
                )
        if not retrainer_done or any(t.is_alive() for t in threads):  # all use the store
            log.warning("sidecar stop: the store is still in use; leaving it open")
        else:
            self.store.close()

    def _maintain(self) -> None:
        """Retention every hour; and every second, while the spool's disk fails, a try to go
        on (so that readiness comes back even when no request comes to try it), and the
        MLflow registrations the spool could not take yet."""
        purge_at = time.monotonic()
        while True:
            if time.monotonic() >= purge_at:
                self._purge()
                purge_at = time.monotonic() + PURGE_EVERY_S
            if self.spool.last_error is not None:
                self.spool.recover()
            if self.mlflow is not None:
                self.mlflow.flush()  # registrations the spool could not take yet
            if self._stop.wait(SPOOL_CHECK_S):
                return

    def _purge(self) -> None:
        try:
            removed = self.store.purge()
            if removed:
                log.info(
                    "retention: removed %d rows older than %s days",
                    removed,
                    self.config.retention_days,
                )
        except Exception as exc:  # keep running; the next round retries
            self._sink_error("retention", exc)

    def _sink_error(self, sink: str, exc: BaseException) -> None:
        self.metrics.sink_errors.labels(sink).inc()
        self._failures.warning(
            sink, "sink %s failed (will retry): %s: %s", sink, type(exc).__name__, exc
        )

    # -- ingest ------------------------------------------------------------
    def ingest(
        self,
        kind: bytes,
        raw: bytes,
        *,
        content_type: str | None,
        content_encoding: str | None,
        dropped: str | None = None,
    ) -> int:
        """Validate and durably append one request's records; return how many were accepted.

        Raises :class:`~mlwatch.errors.IngestError` for anything refused.
        """
        try:
            report_id, drops = (
                wire.validate_drop_report(orjson.loads(dropped)) if dropped else (None, [])
            )
        except (orjson.JSONDecodeError, ValidationError) as exc:
            raise IngestError(400, f"header X-Mlwatch-Dropped: {exc}") from None
        data = body.decompress(raw, content_encoding, self.config.max_body_bytes)
        return self.accept(kind, body.parse_documents(data, content_type), report_id, drops)

    def accept(
        self,
        kind: bytes,
        items: list[Any],
        report_id: str | None = None,
        drops: list[tuple[str, str, str, int]] | None = None,
    ) -> int:
        """Validate decoded records and append them durably: the path every input shares
        (HTTP bodies, the forward-protocol input). Raises ``IngestError`` for anything refused."""
        drops = drops or []
        records = body.validate_all(items, VALIDATORS[kind], self.config.max_events_per_request)
        taken = len(records)
        if self.mlflow is not None:  # provisional versions ('@champion') as MLflow names them
            records = self._mlflow_versions(kind, records)
            drops = [(m, self.mlflow.version_of(m, v), r, n) for m, v, r, n in drops]
        if not records:  # e.g. a client's last drop report at shutdown, with no events
            self._apply_drops(report_id, drops)
            return taken
        if kind == EVENTS:
            _stamp_environment(records, self.config.environment)
        if kind == EVENTS and self.redactor:
            for record in records:
                self.redactor.apply(record)
        payload = encode(kind, records)
        if len(payload) > self._max_record_bytes:  # would never fit, however empty the spool
            raise IngestError(
                413,
                f"batch of {len(payload)} bytes is larger than the spool "
                f"can hold ({self._max_record_bytes}); send smaller batches",
            )
        try:
            self.spool.append([payload])
        except SpoolFull:
            raise IngestError(
                503,
                "spool is full (sinks are behind); retry later",
                headers={"Retry-After": str(RETRY_AFTER_FULL_S)},
            ) from None
        except SpoolClosed:
            raise IngestError(
                503, "sidecar is shutting down", headers={"Retry-After": "1"}
            ) from None
        except SpoolError as exc:  # the disk failed us: not the client's fault, not a 500 either
            self._sink_error("spool", exc)
            raise IngestError(
                503, f"spool unavailable: {exc}", headers={"Retry-After": str(RETRY_AFTER_FULL_S)}
            ) from None
        self._note_models(records)
        if kind == EVENTS:
            self.metrics.models.observe_events(records)
        elif kind == FEEDBACK:
            self.metrics.models.observe_feedback(records)
        else:
            for reg in records:
                if reg.get("task"):
                    self._tasks.setdefault(reg["model"], reg["task"])
                self.metrics.models.observe_registration(reg)
        self._apply_drops(report_id, drops)
        return taken

    def _mlflow_versions(self, kind: bytes, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Events with a provisional version get the one MLflow named; a client's registration
        of a provisional version is left out (the sidecar registers the resolved one)."""
        if kind == EVENTS:
            self.mlflow.stamp(records)
        elif kind == MODELS:
            records = [r for r in records if not self.mlflow.provisional(r)]
        return records

    def _note_models(self, records: list[dict[str, Any]]) -> None:
        """Remember the models of acknowledged records, so that a status asked for right
        after a 202 knows the model before the store has the records. Copy on change: the
        readers take the set without a lock, and a batch rarely brings a new model."""
        names = set(map(itemgetter("model"), records))
        if not names <= self._accepted:
            with self._accepted_lock:
                self._accepted = self._accepted | names

    def _apply_drops(self, report_id: str | None, drops: list[tuple[str, str, str, int]]) -> None:
        """Count a client's drop report once, even when the client resends it."""
        if not drops:
            return
        with self._reports_lock:
            if report_id is not None:
                if report_id in self._reports_seen:
                    return
                self._reports_seen[report_id] = None
                while len(self._reports_seen) > REPORT_IDS_KEPT:
                    self._reports_seen.popitem(last=False)
        self.metrics.models.observe_drops(drops)

    # -- queries -----------------------------------------------------------
    def _count_corrupt(self) -> None:
        """Fold corrupt records the spool found (at recovery or while reading) into the metric."""
        found = self.spool.corrupt_records
        if found > self._corrupt_counted:
            log.warning(
                "spool: %d torn or corrupt record(s) skipped", found - self._corrupt_counted
            )
            self.metrics.spool_corrupt.inc(found - self._corrupt_counted)
            self._corrupt_counted = found

    def _count_outcomes(self, joined: list[tuple[str, str, dict[str, Any], Any]]) -> None:
        """Fold predictions that met their ground truth into the labelled counters, each
        scored as the model's KPIs score it (a regression model needs the tolerance of its
        quality objective)."""
        from mlwatch.stats.kpi.outcomes import outcomes

        groups: dict[tuple[str, str, str], list[tuple[dict[str, Any], Any]]] = {}
        for model, version, event, label in joined:
            groups.setdefault((model, version, event["environment"]), []).append((event, label))
        for (model, version, env), rows in groups.items():
            spec = self.config.model_spec(model)
            right, wrong = outcomes(
                rows,
                task=spec.task if spec else self._tasks.get(model, "classification"),
                score_field=spec.score_field if spec else None,
                classes=spec.classes if spec else None,
                tolerance=spec.alerts.quality_tolerance if spec and spec.alerts else None,
            )
            if right or wrong:
                self.metrics.models.observe_outcomes((model, version, env), right, wrong)

    def _restore_counters(self) -> None:
        """Start the counters from what the store holds, so that a restarted sidecar's
        /metrics shows it; a store of more than RESTORE_MAX_EVENTS events (a pass costs
        about a second a million) starts from zero instead, and says so."""
        self._await_store(RESTORE_WAIT_S)
        size = self.store.event_count()
        if size > RESTORE_MAX_EVENTS:
            log.info(
                "counters start at zero: the store holds %d events (restored up to %d)",
                size,
                RESTORE_MAX_EVENTS,
            )
            return
        try:
            totals = self.store.totals()
            for model, task in totals.tasks.items():  # what registrations said, as ingest does
                self._tasks.setdefault(model, task)
            self.metrics.models.restore(totals)
        except Exception as exc:  # a damaged store must not stop the sidecar from starting
            log.warning("counters start at zero: reading the store's totals failed: %s", exc)

    def _await_store(self, timeout: float) -> None:
        """Let the store sink deliver what the spool held at the start (acknowledged by the
        previous run, so counted nowhere else) before the totals are read; new records
        cannot arrive yet, since ingest opens after the start."""
        deadline = time.monotonic() + timeout
        while self.spool.lag_bytes("store") > 0:
            if time.monotonic() > deadline:
                log.info(
                    "counters from the store exclude %d spool bytes not yet stored",
                    self.spool.lag_bytes("store"),
                )
                return
            time.sleep(0.02)

    def refresh_gauges(self) -> None:
        self._count_corrupt()
        self.metrics.spool_bytes.set(self.spool.total_bytes())
        for sink in self.sinks:
            self.metrics.sink_lag.labels(sink.name).set(self.spool.lag_bytes(sink.name))

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Ready: not stopping, the spool takes writes (its disk did not refuse the last
        one, or has room again), and every sink is healthy."""
        error = self.spool.last_error
        spool = {"healthy": error is None, "last_error": error}
        sinks = {c.sink.name: c.state() for c in self.consumers}
        ok = error is None and all(s["healthy"] for s in sinks.values()) and not self._stop.is_set()
        return ok, {"ready": ok, "spool": spool, "sinks": sinks}

    def known_models(self) -> list[str]:
        """Every model the sidecar knows: in the store (events, feedback or a registration),
        named by the configuration, or with records acknowledged since the start."""
        return self.store.known_models(self._configured | self._accepted)

    def require_model(self, model: str) -> None:
        """Refuse a model nothing is known about (404), naming close and known models, so
        that a misspelt name does not read as "no traffic yet"."""
        if model in self._configured or model in self._accepted or self.store.has_model(model):
            return
        raise IngestError(404, unknown_model(model, self.known_models()))

    def models(self, environment: str | None = None) -> dict[str, Any]:
        """Every known model with its versions, counts and last event time (of one
        environment's events, when given)."""
        return {
            "models": self.store.model_list(
                self._configured, also=self._accepted, environment=environment
            )
        }

    def status(self, model: str, environment: str | None = None) -> dict[str, Any]:
        """Counts, sink lag and results of one known model (404 for an unknown one).

        The lag is taken before the counts: a sink commits its spool cursor only after
        its write is committed, so a store lag of 0 then means the counts include every
        event acknowledged until that moment. (Counted first, a batch committed in
        between would show "lag 0" next to a count that misses it.)
        """
        self.require_model(model)
        sinks = {
            c.sink.name: {"lag_bytes": self.spool.lag_bytes(c.sink.name), **c.state()}
            for c in self.consumers
        }
        spool_bytes = self.spool.total_bytes()
        status = self.store.model_status(model, environment=environment) | {
            "sinks": sinks,
            "spool_bytes": spool_bytes,
            "environment": environment or self.config.environment,
        }
        spec = self.config.model_spec(model)
        status["task"] = spec.task if spec is not None else None
        for version in status["versions"]:  # a client without the spec registers no task
            version["task"] = version["task"] or status["task"]
        if self.scheduler is not None and spec is not None and spec.monitoring is not None:
            status["jobs"] = self.scheduler.runs_of(model)
        if spec is not None and spec.retrain is not None:
            newest = self.store.triggers(model, limit=1)
            status["retrain"] = {
                "target": spec.retrain.target,
                "pending": sum(t["state"] == "pending" for t in self.store.triggers(model)),
                "last": _summary(newest[0]) if newest else None,
            }
        return status

    def events(
        self,
        model: str,
        *,
        since_us: int | None = None,
        until_us: int | None = None,
        version: str | None = None,
        environment: str | None = None,
        limit: int = 100,
    ) -> dict[str, Any]:
        """Stored events of one known model, newest first (404 for an unknown one)."""
        self.require_model(model)
        rows = self.store.events(
            model,
            since_us=since_us,
            until_us=until_us,
            version=version,
            environment=environment,
            limit=limit,
        )
        return {"model": model, "count": len(rows), "events": rows}


def _stamp_environment(events: list[dict[str, Any]], environment: str) -> None:
    """Events that name no environment were served in the sidecar's own (a client of
    an older mlwatch, Fluent Bit, a hand-written producer)."""
    for event in events:
        if event["environment"] is None:
            event["environment"] = environment


def _summary(trigger: dict[str, Any]) -> dict[str, Any]:
    """A trigger as the status shows it: what, why, where it stands."""
    body = trigger["body"]
    return {
        "key": trigger["key"],
        "cause": trigger["cause"],
        "reason": body["reason"],
        "state": trigger["state"],
        "created": body["created"],
        "attempts": len(trigger["attempts"]),
        "detail": trigger["detail"],
    }
