"""The result gauges: a run removes only the series it owns and did not write again."""

from __future__ import annotations

import threading
from typing import Any

from prometheus_client import CollectorRegistry

from mlwatch.scheduler.results import ResultMetrics
from mlwatch.stats.kpi import KPI, KPIReport


def drift_report(*features: str) -> dict[str, Any]:
    return {
        "features": [{"name": f, "method": "ks", "score": 0.1, "drifted": False} for f in features],
        "drift_share": 0.0,
        "dataset_drift": False,
    }


def kpi_report(value: float) -> KPIReport:
    kpi = KPI("accuracy", value, value - 0.1, value + 0.1, 100, "wilson")
    return KPIReport(
        task="classification",
        kpis={"accuracy": kpi},
        n_rows=100,
        n_labelled=100,
        n_missing=0,
        n_used=100,
        n_unusable=0,
    )


def samples(registry: CollectorRegistry, name: str) -> set[tuple[str, ...]]:
    return {
        tuple(sorted(s.labels.items()))
        for m in registry.collect()
        for s in m.samples
        if s.name == name
    }


def test_a_feature_no_longer_reported_is_removed() -> None:
    registry = CollectorRegistry()
    m = ResultMetrics(registry)
    m.drift("a", "1", drift_report("x", "y"))
    m.retire_drift("a")
    m.drift("a", "1", drift_report("x"))
    m.retire_drift("a")
    names = {dict(s)["feature"] for s in samples(registry, "mlwatch_feature_drift_detected")}
    assert names == {"x"}


def test_the_drift_and_kpi_runs_of_several_models_interleave() -> None:
    """drift:a writes, kpi:a and drift:b run and retire meanwhile, then drift:a retires:
    nobody removes a series another run just wrote."""
    registry = CollectorRegistry()
    m = ResultMetrics(registry)
    m.drift("a", "1", drift_report("x"))  # drift:a in progress
    m.kpis("a", "1", kpi_report(0.9))  # kpi:a runs to its end
    m.retire_kpis("a")
    m.drift("b", "1", drift_report("z"))  # drift:b runs to its end
    m.retire_drift("b")
    m.retire_drift("a")  # drift:a ends
    assert {dict(s)["model"] for s in samples(registry, "mlwatch_feature_drift_detected")} == {
        "a",
        "b",
    }
    assert samples(registry, "mlwatch_model_kpi")


def test_concurrent_runs_on_threads() -> None:
    registry = CollectorRegistry()
    m = ResultMetrics(registry)
    barrier = threading.Barrier(8)

    def run(model: str) -> None:
        for _ in range(50):
            barrier.wait()
            m.drift(model, "1", drift_report("x", "y"))
            m.kpis(model, "1", kpi_report(0.8))
            m.retire_drift(model)
            m.retire_kpis(model)

    threads = [threading.Thread(target=run, args=(f"m{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(samples(registry, "mlwatch_feature_drift_detected")) == 16
    assert len(samples(registry, "mlwatch_model_kpi")) == 8
