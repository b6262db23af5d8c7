"""The versions of models whose spec names an MLflow model URI, resolved by the sidecar.

A model spec with ``version: models:/churn@champion`` is resolved in the background
(:class:`~mlwatch.tracking.resolver.Resolver`); each new answer becomes a registration
record (version, run, code version, MLflow's parameters and training metrics), appended to
the spool like a ``POST /v1/models`` — so it reaches the store, Elasticsearch and
``mlwatch_model_info`` — and retried until the spool takes it. Events that arrive with the
provisional version (``@champion``: a client without MLflow, a Fluent Bit pipeline) are
stamped with the version MLflow named.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, Metric

from mlwatch.errors import IngestError
from mlwatch.tracking.uris import parse_model_uri, provisional_version

if TYPE_CHECKING:
    from mlwatch.settings import Config, ModelSpec
    from mlwatch.tracking.identity import Identity

log = logging.getLogger("mlwatch.sidecar")


class MlflowIdentities:
    """Resolves the configured model URIs and hands each new identity to ``register``."""

    def __init__(
        self,
        config: Config,
        register: Callable[[list[dict[str, Any]]], Any],
        registry: CollectorRegistry,
    ) -> None:
        from mlwatch.tracking.resolver import Resolver

        self._register = register
        self._specs: dict[str, list[ModelSpec]] = {}  # one URI may name several models
        for spec in config.models:
            if spec.mlflow:
                self._specs.setdefault(spec.mlflow, []).append(spec)
        # model -> (provisional version, resolved version, run id); read without a lock
        self.stamps: dict[str, tuple[str, str, str | None]] = {}
        self._provisional = {
            s.name: provisional_version(parse_model_uri(uri))
            for uri, specs in self._specs.items()
            for s in specs
        }
        self._pending: dict[str, dict[str, Any]] = {}  # model -> registration not yet taken
        self._lock = threading.Lock()
        self.resolver = Resolver(
            config.mlflow_tracking_uri,
            refresh_s=config.mlflow_refresh_s,
            timeout_s=config.mlflow_timeout_s,
            on_change=self._changed,
        )
        registry.register(self)

    def collect(self) -> Iterator[Metric]:
        """``mlwatch_mlflow_lookup_failures_total``: lookups MLflow did not answer (or
        answered with an error); each is retried with backoff."""
        yield CounterMetricFamily(
            "mlwatch_mlflow_lookup_failures",
            "MLflow model URI lookups that failed (retried with backoff).",
            value=self.resolver.failures,
        )

    def start(self) -> None:
        for uri in self._specs:
            self.resolver.current(uri)  # schedules the first lookup

    def stop(self) -> None:
        self.resolver.close(1.0)

    def _changed(self, found: Identity) -> None:
        provisional = provisional_version(parse_model_uri(found.uri))
        regs = {
            spec.name: {
                "model": spec.name,
                "version": found.version,
                "code_version": found.code_version,
                "run_id": found.run_id,
                "task": spec.task,
                "params": found.registration_params(),
            }
            for spec in self._specs[found.uri]
        }
        self.stamps = {
            **self.stamps,
            **{name: (provisional, found.version, found.run_id) for name in regs},
        }
        with self._lock:
            self._pending.update(regs)
        log.info("%s is version %s (run %s)", found.uri, found.version, found.run_id)
        self.flush()

    def flush(self) -> None:
        """Append the registrations not yet taken; the spool full or closed keeps them for
        the next call (the sidecar's maintenance loop calls this every second)."""
        with self._lock:
            pending, self._pending = self._pending, {}
        if not pending:
            return
        try:
            self._register(list(pending.values()))
        except IngestError as exc:
            if exc.status != 503:  # refused for good: trying again every second would not help
                log.error("registering %s failed: %s", ", ".join(sorted(pending)), exc)
                return
            log.warning("registering %s waits: %s", ", ".join(sorted(pending)), exc)
            with self._lock:  # a newer answer that came meanwhile wins
                self._pending = {**pending, **self._pending}

    def provisional(self, reg: dict[str, Any]) -> bool:
        """Whether ``reg`` is a client's registration of a provisional version ('@champion')
        of a model this sidecar resolves itself: its own registration supersedes it."""
        return self._provisional.get(reg["model"]) == reg.get("version")

    def version_of(self, model: str, version: str) -> str:
        """``version``, or the version MLflow named when it is the provisional one."""
        hit = self.stamps.get(model)
        return hit[1] if hit is not None and version == hit[0] else version

    def stamp(self, events: list[dict[str, Any]]) -> None:
        """Events with the provisional version get the version (and run) MLflow named."""
        stamps = self.stamps
        if not stamps:
            return
        for event in events:
            hit = stamps.get(event["model"])
            if hit is not None and event.get("version") == hit[0]:
                event["version"] = hit[1]
                if hit[2] and not event.get("run_id"):
                    event["run_id"] = hit[2]
