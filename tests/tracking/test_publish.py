"""mlwatch.tracking.publish against a real MLflow server: results read back through
MLflow's own client, a restart finding the same run, a server down and back."""

from __future__ import annotations

import logging
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlwatch.stats.drift import DriftReport, compare_profiles
from mlwatch.stats.kpi import KPIReport, compute_kpis
from mlwatch.stats.profile import DatasetProfile
from mlwatch.tracking.publish import Publisher
from tests.helpers import wait_until
from tests.integration.mlflow_server import MlflowServer

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("mlflow_calls_end")]

HOUR_US = 3600 * 1_000_000
T0_US = 1_700_000_000 * 1_000_000  # a whole hour


def window(i: int) -> tuple[int, int]:
    return T0_US + i * HOUR_US, T0_US + (i + 1) * HOUR_US


def drift_result(shift: float, seed: int) -> tuple[DriftReport, dict[str, Any]]:
    """A real drift report (and the dict the scheduler stores) of a window whose numeric
    feature moved by ``shift`` standard deviations."""
    rng = np.random.default_rng(seed)
    ref = DatasetProfile.from_reference(
        {"age (years)": rng.normal(size=3000), "plan": rng.choice(["a", "b", "c"], size=3000)},
        seed=1,
    )
    current = ref.new_window(seed=2)
    current.update(
        {"age (years)": rng.normal(shift, 1, size=600), "plan": rng.choice(["a", "b", "c"], 600)}
    )
    report = compare_profiles(ref, current, method="ks")
    return report, report.to_dict() | {"rows": current.rows}


def kpi_result(correct: int, n: int = 100) -> tuple[KPIReport, dict[str, Any]]:
    rows = [({"prediction": 1}, 1)] * correct + [({"prediction": 1}, 0)] * (n - correct)
    report = compute_kpis(rows, min_samples=50)
    return report, report.to_dict()


def history(client: Any, run_id: str, key: str) -> list[tuple[int, int, float]]:
    points = client.get_metric_history(run_id, key)
    return sorted((m.step, m.timestamp, m.value) for m in points)


def runs_of(client: Any, experiment_id: str, model: str) -> list[Any]:
    return list(
        client.search_runs([experiment_id], filter_string=f"tags.`mlwatch.model` = '{model}'")
    )


@pytest.fixture
def client(mlflow_server: MlflowServer) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=mlflow_server.url)


def test_three_windows_read_back_through_mlflow(mlflow_server: MlflowServer, client: Any) -> None:
    experiment_id = client.create_experiment(f"training-{uuid.uuid4().hex}")
    source = client.create_run(experiment_id, run_name="training").info.run_id
    model = f"churn-{uuid.uuid4().hex[:8]}"
    drifts = [drift_result(shift, seed) for seed, shift in enumerate((0.0, 0.5, 1.0))]
    kpis = [kpi_result(correct) for correct in (90, 80, 70)]
    publisher = Publisher(mlflow_server.url, min_interval_s=0.05)
    for i in range(3):
        publisher.drift(model, "3", window(i), drifts[i][1], source_run=source)
        publisher.kpis(model, "3", window(i), kpis[i][1], source_run=source)
    assert publisher.flush(60), publisher.last_error
    assert publisher.close()
    assert publisher.failures == 0 and publisher.dropped == 0

    (run,) = runs_of(client, experiment_id, model)
    assert run.info.run_name == f"mlwatch {model} 3"
    tags = run.data.tags
    assert tags["mlflow.parentRunId"] == source
    assert (tags["mlwatch.model"], tags["mlwatch.version"]) == (model, "3")
    assert tags["mlwatch.source_run"] == source

    def expect(values: list[float]) -> list[tuple[int, int, float]]:
        return [(window(i)[1] // 10**6, window(i)[1] // 1000, v) for i, v in enumerate(values)]

    run_id = run.info.run_id
    reports = [d[0] for d in drifts]
    assert history(client, run_id, "drift.share") == expect([r.drift_share for r in reports])
    assert [d for d in reports if d.dataset_drift] == reports[1:]  # the shift is seen
    assert history(client, run_id, "drift.dataset_drift") == expect([0.0, 1.0, 1.0])
    assert history(client, run_id, "drift.rows") == expect([600.0] * 3)
    for name, key in (("age (years)", "age _years_"), ("plan", "plan")):
        for field in ("score", "drifted", "p_value"):
            values = [getattr(r[name], field) for r in reports]
            expected = [] if None in values else expect([float(v) for v in values])
            assert history(client, run_id, f"drift.{key}.{field}") == expected
    assert reports[0]["plan"].p_value is None  # JS distance has no p-value: none logged
    for field, key in (("value", "kpi.accuracy"), ("lower", "kpi.accuracy.lower")):
        values = [getattr(k[0].kpis["accuracy"], field) for k in kpis]
        assert history(client, run_id, key) == expect(values)
    assert history(client, run_id, "kpi.n_labelled") == expect([100.0] * 3)
    assert kpis[0][0].kpis["roc_auc"].value is None  # no probabilities: nothing logged
    assert "kpi.roc_auc" not in client.get_run(run_id).data.metrics

    restarted = Publisher(mlflow_server.url, min_interval_s=0.05)
    restarted.kpis(model, "3", window(3), kpi_result(60)[1], source_run=source)
    restarted.kpis(model, "3", window(2), kpis[2][1], source_run=source)  # MLflow keeps one
    assert restarted.flush(60), restarted.last_error
    restarted.close()
    assert [r.info.run_id for r in runs_of(client, experiment_id, model)] == [run_id]
    assert [v for _, _, v in history(client, run_id, "kpi.accuracy")] == [0.9, 0.8, 0.7, 0.6]


def test_same_window_once_changed_value_again(mlflow_server: MlflowServer, client: Any) -> None:
    model = f"fraud-{uuid.uuid4().hex[:8]}"
    publisher = Publisher(mlflow_server.url, min_interval_s=0.05)
    publisher.kpis(model, "1", window(0), kpi_result(80)[1])
    publisher.kpis(model, "1", window(0), kpi_result(80)[1])  # recomputed, same labels
    assert publisher.flush(60), publisher.last_error
    logged = publisher.published
    publisher.kpis(model, "1", window(0), kpi_result(80)[1])
    assert publisher.flush(60) and publisher.published == logged
    publisher.kpis(model, "1", window(0), kpi_result(85, n=110)[1])  # late labels
    assert publisher.flush(60), publisher.last_error
    publisher.close()

    experiment = client.get_experiment_by_name("mlwatch-monitoring")
    (run,) = runs_of(client, experiment.experiment_id, model)
    step = window(0)[1] // 10**6
    # both points sit at the window's step and time; MLflow orders them by value
    points = history(client, run.info.run_id, "kpi.accuracy")
    assert points == [(step, step * 1000, 85 / 110), (step, step * 1000, 0.8)]
    assert [v for _, _, v in history(client, run.info.run_id, "kpi.n_labelled")] == [100, 110]


def test_without_source_run_in_the_monitoring_experiment(
    mlflow_server: MlflowServer, client: Any
) -> None:
    model = f"price-{uuid.uuid4().hex[:8]}"
    publisher = Publisher(mlflow_server.url, min_interval_s=0.05)
    publisher.drift(model, "7", window(0), drift_result(0.0, 1)[1])
    assert publisher.flush(60), publisher.last_error
    publisher.close()

    experiment = client.get_experiment_by_name("mlwatch-monitoring")
    assert experiment is not None
    (run,) = runs_of(client, experiment.experiment_id, model)
    assert run.info.run_name == f"mlwatch {model} 7"
    assert "mlflow.parentRunId" not in run.data.tags
    assert "mlwatch.source_run" not in run.data.tags
    assert run.data.tags["mlwatch.version"] == "7"


def test_server_down_never_slows_the_caller_and_nothing_queued_is_lost(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from mlflow.tracking import MlflowClient

    caplog.set_level(logging.WARNING, logger="mlwatch.tracking")
    server = MlflowServer(tmp_path / "mlflow").start()
    try:
        secret_url = server.url.replace("://", "://bob:s3cret@")
        publisher = Publisher(secret_url, min_interval_s=0.01, retry_max_s=0.5, max_queue=4000)
        _, report = drift_result(0.5, 3)
        publisher.drift("churn", "1", window(0), report)
        assert publisher.flush(60), publisher.last_error
        per_window = publisher.published  # the values of one report

        server.stop()
        started = time.perf_counter()
        for i in range(1, 1001):
            publisher.drift("churn", "1", window(i), report)
        elapsed = time.perf_counter() - started
        assert elapsed < 0.5, f"1000 calls took {elapsed * 1000:.1f} ms"
        wait_until(lambda: publisher.failures > 0, timeout=30, what="a failed call")
        accepted = 1000 * per_window - publisher.dropped
        assert publisher.dropped > 0 and 0 < accepted <= 4000
        assert accepted % per_window == 0  # a report is queued whole or dropped whole

        server.start()
        assert publisher.flush(120), publisher.last_error
        assert publisher.published == per_window + accepted
        publisher.close()
        client = MlflowClient(tracking_uri=server.url)
        (run,) = runs_of(
            client, client.get_experiment_by_name("mlwatch-monitoring").experiment_id, "churn"
        )
        steps = [s for s, _, _ in history(client, run.info.run_id, "drift.share")]
        windows = accepted // per_window
        assert steps == [window(i)[1] // 10**6 for i in range(windows + 1)]
    finally:
        server.stop()
    warnings = [r.getMessage() for r in caplog.records if r.name == "mlwatch.tracking"]
    assert sum("failed" in w for w in warnings) == 1
    assert sum("answers again" in w for w in warnings) == 1
    assert sum("full" in w for w in warnings) == 1
    assert "s3cret" not in " ".join(warnings) + str(publisher.last_error)
