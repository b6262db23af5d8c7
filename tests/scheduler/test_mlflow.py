"""The jobs with MLflow, against a real MLflow server: a reference profile from a run's
artifact (equal to the profile of the same file read locally, renewed when the alias
moves), each window's drift and KPIs read back through MLflow's client, and an MLflow
that does not answer or lacks the run or file: bounded jobs, counted, named."""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from prometheus_client import CollectorRegistry

from mlwatch.errors import ConfigError, JobError
from mlwatch.scheduler import Jobs, Scheduler, window_bounds
from mlwatch.settings import Config, FeatureSpec, ModelSpec, Monitoring
from mlwatch.store import EmbeddedStore
from mlwatch.wire import format_ts, validate_event, validate_feedback, validate_registration
from tests.helpers import free_port, wait_until
from tests.integration.mlflow_server import MlflowServer
from tests.tracking.test_identity import register, train

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("mlflow_calls_end")]

HOUR = 3600.0
NOW = 1_790_000_000.0 - 1_790_000_000.0 % HOUR + 600  # ten minutes into an hour
FEATURES = (FeatureSpec("x", "numeric"), FeatureSpec("c", "categorical"))


def reference_csv(shift: float, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"x": rng.normal(shift, 1, 3000), "c": rng.choice(["a", "b", "c"], 3000)})
    return frame.to_csv(index=False).encode()


def make_config(tmp_path: Path, model: str, tracking_uri: str, **monitoring: Any) -> Config:
    mon = Monitoring(**{"every_s": 60.0, "kpi_min_samples": 50, "kpi_lookback": 2, **monitoring})
    spec = ModelSpec(name=model, monitoring=mon, features=FEATURES)
    return Config(
        data_dir=str(tmp_path / "data"),
        models=(spec,),
        mlflow_tracking_uri=tracking_uri,
        mlflow_timeout_s=1.0,
        mlflow_refresh_s=1.0,
    )


def fill(store: EmbeddedStore, model: str, start_s: float, n: int, shift: float) -> None:
    """``n`` events of version 1 across the hour from ``start_s``, each labelled (3 in 4
    right)."""
    rng = np.random.default_rng(7)
    events = [
        validate_event(
            {
                "model": model,
                "version": "1",
                "latency_ms": 1.0,
                "request_id": f"r{i}",
                "ts": format_ts(int((start_s + i * (HOUR / n)) * 1e9)),
                "features": {"x": float(rng.normal(shift, 1)), "c": str(rng.choice(["a", "b"]))},
                "prediction": i % 2,
            }
        )
        for i in range(n)
    ]
    store.insert_events(events)
    store.insert_feedback(
        validate_feedback(
            {"model": model, "request_id": e["request_id"], "label": e["prediction"] ^ (i % 4 == 0)}
        )
        for i, e in enumerate(events)
    )


def comparable(profile: Any) -> dict[str, Any]:
    """A profile's dict without its reservoir's random sample (the rest is exact)."""
    out = profile.to_dict()
    for column in out["columns"].values():
        if "reservoir" in column:
            column["reservoir"] = {k: column["reservoir"][k] for k in ("capacity", "seen")}
    return out  # type: ignore[no-any-return]


def closed_port_url() -> str:
    return f"http://127.0.0.1:{free_port()}"  # nothing listens there


@pytest.fixture(autouse=True)
def mlflow_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the code under test sets in the environment for MLflow (``setdefault``) is
    undone after each test, so no other test runs with it."""
    for name in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT"):
        monkeypatch.setenv(name, "")  # remembers the value to restore, even "not set"
        monkeypatch.delenv(name)


@pytest.fixture
def mlflow_client(mlflow_server: MlflowServer) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)


def test_a_reference_from_mlflow_is_profiled_like_the_same_file(
    mlflow_server: MlflowServer, mlflow_client: Any, tmp_path: Path
) -> None:
    model = f"ref-{uuid.uuid4().hex[:8]}"
    first, second = reference_csv(0.0, 1), reference_csv(2.0, 2)
    run1 = train(mlflow_client, tmp_path, model, commit="c1", files={"reference.csv": first})
    mlflow_client.create_registered_model(model)
    register(mlflow_client, model, run1)
    mlflow_client.set_registered_model_alias(model, "champion", "1")
    uri = f"models:/{model}@champion"
    cfg = make_config(tmp_path, model, mlflow_server.url, reference_mlflow=(uri, "reference.csv"))
    cfg = replace(cfg, mlflow_publish=False)

    def local(data: bytes, name: str) -> Any:
        """The profile of ``data`` as a file reference of another store."""
        (tmp_path / name).write_bytes(data)
        other = replace(
            cfg,
            data_dir=str(tmp_path / name / "data"),
            models=(
                replace(
                    cfg.models[0],
                    monitoring=Monitoring(reference=str(tmp_path / name)),
                ),
            ),
        )
        store = EmbeddedStore(tmp_path / f"{name}.db")
        return comparable(Jobs(other, store, CollectorRegistry()).reference(other.models[0]))

    store = EmbeddedStore(tmp_path / "data" / "store.db")
    jobs = Jobs(cfg, store, CollectorRegistry())
    now = [0.0]
    jobs.references.mlflow.clock = lambda: now[0]
    jobs.prepare()
    spec = cfg.models[0]
    profile = jobs.reference(spec)
    assert comparable(profile) == local(first, "first.csv")
    assert profile.rows == 3000 and set(profile.types) == {"x", "c"}
    cached = tmp_path / "data" / "mlflow-artifacts" / run1.run_id / "reference.csv"
    assert cached.read_bytes() == first
    tag = store.profile_tag(model, "*", "reference")

    run2 = train(mlflow_client, tmp_path, model, commit="c2", files={"reference.csv": second})
    register(mlflow_client, model, run2)
    mlflow_client.set_registered_model_alias(model, "champion", "2")
    assert comparable(jobs.reference(spec)) == local(first, "first.csv")  # asked for later
    now[0] += cfg.mlflow_refresh_s  # the alias is asked for again
    assert comparable(jobs.reference(spec)) == local(second, "second.csv")
    assert store.profile_tag(model, "*", "reference") not in (None, tag)


def test_mlflow_down_at_start_uses_the_stored_profile_and_says_so_once(
    mlflow_server: MlflowServer,
    mlflow_client: Any,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    model = f"down-{uuid.uuid4().hex[:8]}"
    run = train(
        mlflow_client, tmp_path, model, commit="c1", files={"ref.csv": reference_csv(0.0, 3)}
    )
    mlflow_client.create_registered_model(model)
    register(mlflow_client, model, run)
    ref = (f"models:/{model}/1", "ref.csv")
    up = make_config(tmp_path, model, mlflow_server.url, reference_mlflow=ref)
    store = EmbeddedStore(tmp_path / "data" / "store.db")
    stored = Jobs(up, store, CollectorRegistry()).reference(up.models[0]).to_json()

    down = replace(up, mlflow_tracking_uri=closed_port_url())
    caplog.set_level(logging.WARNING, logger="mlwatch.jobs")
    registry = CollectorRegistry()
    scheduler = Scheduler(down, store, registry)  # no ConfigError: MLflow may come later
    jobs = scheduler.jobs
    started = time.perf_counter()
    for _ in range(3):
        assert jobs.reference(down.models[0]).to_json() == stored
    assert time.perf_counter() - started < 5
    warnings = [r.getMessage() for r in caplog.records if "reference.mlflow" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert f"models[0].reference.mlflow: models:/{model}/1: " in warnings[0]
    assert "using the reference profile the store holds" in warnings[0]
    scheduler.shutdown()


def test_without_a_stored_profile_each_run_fails_naming_the_setting_and_uri(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    uri = "models:/nowhere@champion"
    cfg = make_config(tmp_path, "nowhere", closed_port_url(), reference_mlflow=(uri, "r.csv"))
    store = EmbeddedStore(tmp_path / "data" / "store.db")
    start, _ = window_bounds(cfg.models[0].monitoring, NOW)
    fill(store, "nowhere", start / 1e6, 100, 0.0)
    caplog.set_level(logging.WARNING)
    registry = CollectorRegistry()
    scheduler = Scheduler(cfg, store, registry)  # a warning, not a ConfigError
    assert f"nowhere: models[0].reference.mlflow: {uri}: " in caplog.text
    job = scheduler.scheduler.get_job("drift:nowhere").func
    for attempt in (1, 2):  # each run asks MLflow again, fails, and the scheduler goes on
        started = time.perf_counter()
        job()
        assert time.perf_counter() - started < 10
        outcome = scheduler.last_runs["drift:nowhere"]
        assert outcome["result"] == "failed"
        assert f"JobError: nowhere: models[0].reference.mlflow: {uri}: " in outcome["error"]
        failed = registry.get_sample_value(
            "mlwatch_job_runs_total",
            {"job": "drift:nowhere", "environment": "default", "result": "failed"},
        )
        assert failed == attempt
    scheduler.shutdown()


def test_a_missing_artifact_or_run_is_named(
    mlflow_server: MlflowServer, mlflow_client: Any, tmp_path: Path
) -> None:
    model = f"missing-{uuid.uuid4().hex[:8]}"
    run = train(mlflow_client, tmp_path, model, commit="c1", files={"other.csv": b"x\n1\n"})
    mlflow_client.create_registered_model(model)
    register(mlflow_client, model, run)
    gone = uuid.uuid4().hex
    for uri, artifact, why in (
        (f"models:/{model}/1", "ref.csv", f"run {run.run_id} has no artifact 'ref.csv'"),
        (f"runs:/{gone}/model", "ref.csv", f"no run '{gone}'"),
        (f"models:/{model}/9", "ref.csv", f"registered model '{model}' has no version 9"),
    ):
        cfg = make_config(tmp_path, model, mlflow_server.url, reference_mlflow=(uri, artifact))
        store = EmbeddedStore(tmp_path / f"{uuid.uuid4().hex}.db")
        jobs = Jobs(cfg, store, CollectorRegistry(), clock=lambda: NOW)
        with pytest.raises(JobError) as info:
            jobs.drift(model)
        assert str(info.value).startswith(f"{model}: models[0].reference.mlflow: {uri}: ")
        assert why in str(info.value)


def test_an_artifact_without_a_listed_feature_is_a_configuration_error(
    mlflow_server: MlflowServer, mlflow_client: Any, tmp_path: Path
) -> None:
    model = f"nocol-{uuid.uuid4().hex[:8]}"
    files = {"ref.csv": b"x,other\n1.0,a\n2.0,b\n"}
    train(mlflow_client, tmp_path, model, commit="c1", files=files)
    run = train(mlflow_client, tmp_path, model, commit="c1", files=files)
    ref = (f"runs:/{run.run_id}/model", "ref.csv")
    cfg = make_config(tmp_path, model, mlflow_server.url, reference_mlflow=ref)
    store = EmbeddedStore(tmp_path / "data" / "store.db")
    with pytest.raises(ConfigError, match=r"models\[0\]\.reference\.mlflow: .*has no column c"):
        Scheduler(cfg, store, CollectorRegistry())


def history(client: Any, run_id: str, key: str) -> list[tuple[int, int, float]]:
    return sorted((m.step, m.timestamp, m.value) for m in client.get_metric_history(run_id, key))


def test_drift_and_kpis_are_read_back_through_mlflow(
    mlflow_server: MlflowServer, mlflow_client: Any, tmp_path: Path
) -> None:
    model = f"pub-{uuid.uuid4().hex[:8]}"
    training = train(mlflow_client, tmp_path, f"train-{model}", commit="c1")
    (tmp_path / "ref.csv").write_bytes(reference_csv(0.0, 4))
    cfg = make_config(tmp_path, model, mlflow_server.url, reference=str(tmp_path / "ref.csv"))
    cfg = replace(cfg, mlflow_experiment=f"monitoring-{model}")
    store = EmbeddedStore(tmp_path / "data" / "store.db")
    store.register_model(
        validate_registration({"model": model, "version": "1", "run_id": training.run_id})
    )
    mon = cfg.models[0].monitoring
    assert mon is not None
    start, end = window_bounds(mon, NOW)
    fill(store, model, start / 1e6 - HOUR, 200, 0.0)  # the window before: no drift
    fill(store, model, start / 1e6, 200, 1.5)  # this window: x drifts
    registry = CollectorRegistry()
    jobs = Jobs(cfg, store, registry, clock=lambda: NOW)
    before = jobs.drift(model, (start - int(HOUR * 1e6), start))["1"]
    drift = jobs.drift(model)["1"]
    kpis = jobs.kpis(model)["1"]
    jobs.close()
    assert jobs.mlflow is not None and jobs.mlflow.publisher.last_error is None

    (run,) = mlflow_client.search_runs(
        [training.experiment_id], filter_string=f"tags.`mlwatch.model` = '{model}'"
    )
    tags = run.data.tags
    assert (tags["mlwatch.version"], tags["mlwatch.source_run"]) == ("1", training.run_id)
    assert tags["mlflow.parentRunId"] == training.run_id
    run_id = run.info.run_id

    def at(end_us: int, value: float) -> tuple[int, int, float]:
        return end_us // 10**6, end_us // 1000, value

    assert history(mlflow_client, run_id, "drift.share") == [
        at(start, before["drift_share"]),
        at(end, drift["drift_share"]),
    ]
    assert history(mlflow_client, run_id, "drift.x.drifted") == [at(start, 0.0), at(end, 1.0)]
    assert history(mlflow_client, run_id, "drift.rows") == [at(start, 200.0), at(end, 200.0)]
    assert history(mlflow_client, run_id, "kpi.accuracy") == [
        at(start, 0.75),
        at(end, kpis["kpis"]["accuracy"]["value"]),
    ]
    published = registry.get_sample_value("mlwatch_mlflow_results_published_total")
    assert published == jobs.mlflow.publisher.published > 0
    assert registry.get_sample_value("mlwatch_mlflow_results_dropped_total") == 0
    assert registry.get_sample_value("mlwatch_mlflow_results_failures_total") == 0


def test_an_unreachable_mlflow_never_holds_up_the_jobs(tmp_path: Path) -> None:
    (tmp_path / "ref.csv").write_bytes(reference_csv(0.0, 5))
    cfg = make_config(tmp_path, "dead", closed_port_url(), reference=str(tmp_path / "ref.csv"))
    store = EmbeddedStore(tmp_path / "data" / "store.db")
    mon = cfg.models[0].monitoring
    assert mon is not None
    start, _ = window_bounds(mon, NOW)
    fill(store, "dead", start / 1e6, 200, 1.5)
    registry = CollectorRegistry()
    jobs = Jobs(cfg, store, registry, clock=lambda: NOW)
    started = time.perf_counter()
    for _ in range(3):
        assert jobs.drift("dead")["1"]["dataset_drift"]
        assert jobs.kpis("dead")["1"]["n_labelled"] == 200
    assert time.perf_counter() - started < 5

    def sample(name: str) -> float:
        return registry.get_sample_value(f"mlwatch_mlflow_results_{name}_total") or 0.0

    wait_until(lambda: sample("failures") > 0, timeout=30, what="a failed call to MLflow")
    started = time.perf_counter()
    jobs.close()  # waits at most mlflow_timeout_s for MLflow, then drops what is queued
    assert time.perf_counter() - started < 5
    assert sample("published") == 0
    wait_until(lambda: sample("dropped") > 0, timeout=10, what="the queued values dropped")
    jobs.close()  # idempotent
