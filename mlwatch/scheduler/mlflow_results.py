"""The jobs' results written back to MLflow, and the counters of that.

After a drift or KPI window is computed and stored, its report goes to a
:class:`~mlwatch.tracking.publish.Publisher`: appended to a bounded queue that one
background thread ships, so a slow or dead MLflow never slows a job. Each model version
gets a monitoring run tagged with its model, version and source (training) run, the
run the store's registrations give for that version (``run_id`` of ``POST /v1/models``
records, or of what the sidecar resolved from an MLflow model URI).

Published when ``mlflow_publish`` is on, for the models named by an MLflow URI, or for
every model when ``mlflow_tracking_uri`` is set. The counters
``mlwatch_mlflow_results_published_total``, ``mlwatch_mlflow_results_dropped_total`` and
``mlwatch_mlflow_results_failures_total`` (metric values logged, dropped, failed MLflow
calls) are read from the publisher at each scrape.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from mlwatch.settings import Config, ModelSpec
from mlwatch.store import EmbeddedStore
from mlwatch.tracking.publish import Publisher

COUNTERS = (
    ("published", "Metric values of drift and KPI results logged to MLflow"),
    ("dropped", "Metric values of results dropped (the queue to MLflow was full, or closed)"),
    ("failures", "Calls to MLflow that failed while logging results (retried)"),
)


def wanted(config: Config) -> bool:
    """Whether any monitored model's results go to MLflow."""
    return config.mlflow_publish and any(
        m.monitoring is not None and (m.mlflow or config.mlflow_tracking_uri) for m in config.models
    )


class MlflowResults:
    """Hands each stored window to a publisher; exports its counters to ``registry``."""

    def __init__(
        self,
        config: Config,
        store: EmbeddedStore,
        registry: CollectorRegistry,
        *,
        publisher: Publisher | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.publisher = publisher or Publisher(
            config.mlflow_tracking_uri,
            experiment=config.mlflow_experiment,
            timeout_s=config.mlflow_timeout_s,
        )
        registry.register(_Counters(self.publisher))

    def wants(self, spec: ModelSpec) -> bool:
        return bool(spec.mlflow or self.config.mlflow_tracking_uri)

    def drift(
        self, spec: ModelSpec, version: str, window: tuple[int, int], report: dict[str, Any]
    ) -> None:
        if self.wants(spec):
            source = self.source_run(spec.name, version)
            self.publisher.drift(spec.name, version, window, report, source_run=source)

    def kpis(
        self, spec: ModelSpec, version: str, windows: list[tuple[int, int, dict[str, Any]]]
    ) -> None:
        """The KPI reports of a run's windows (a window unchanged since it was last
        queued is skipped by the publisher)."""
        if self.wants(spec) and windows:
            source = self.source_run(spec.name, version)
            for start, end, report in windows:
                self.publisher.kpis(spec.name, version, (start, end), report, source_run=source)

    def source_run(self, model: str, version: str) -> str | None:
        """The training run of ``model``'s ``version``: the newest registration of that
        version that names one."""
        for reg in self.store.registrations(model):
            if reg["version"] == version and reg.get("run_id"):
                return str(reg["run_id"])
        return None

    def close(self, timeout: float) -> bool:
        """Ship what is queued within ``timeout`` seconds, then stop (idempotent)."""
        return self.publisher.close(timeout)


class _Counters(Collector):
    """The publisher's counts as Prometheus counters, read at each scrape."""

    def __init__(self, publisher: Publisher) -> None:
        self.publisher = publisher

    def describe(self) -> Iterator[CounterMetricFamily]:
        for name, doc in COUNTERS:
            yield CounterMetricFamily(f"mlwatch_mlflow_results_{name}", doc)

    def collect(self) -> Iterator[CounterMetricFamily]:
        for name, doc in COUNTERS:
            family = CounterMetricFamily(f"mlwatch_mlflow_results_{name}", doc)
            family.add_metric([], float(getattr(self.publisher, name)))
            yield family
