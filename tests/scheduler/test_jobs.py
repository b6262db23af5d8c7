"""The drift and KPI jobs and their scheduler, on a real store with a known answer."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from prometheus_client import CollectorRegistry

from mlwatch.errors import JobError
from mlwatch.scheduler import Jobs, Scheduler, window_bounds
from mlwatch.settings import Config, FeatureSpec, ModelSpec, Monitoring, load_config
from mlwatch.store import EmbeddedStore
from mlwatch.wire import format_ts, validate_event, validate_feedback
from tests.helpers import wait_until

HOUR = 3600.0
NOW = 1_790_000_000.0 - 1_790_000_000.0 % HOUR + 600  # ten minutes into an hour


def config(tmp_path: Path, **monitoring: Any) -> Any:
    rng = np.random.default_rng(1)
    ref = pd.DataFrame(
        {
            "x": rng.normal(0, 1, 5000),
            "c": rng.choice(["a", "b", "c"], 5000),
            "label": rng.integers(0, 2, 5000),
        }
    )  # not a feature: not profiled
    ref.to_csv(tmp_path / "ref.csv", index=False)
    mon = Monitoring(
        **{
            "reference": str(tmp_path / "ref.csv"),
            "every_s": 1.0,
            "kpi_min_samples": 50,
            "kpi_lookback": 3,
            **monitoring,
        }
    )
    spec = ModelSpec(
        name="m",
        task="classification",
        monitoring=mon,
        features=(FeatureSpec("x", "numeric"), FeatureSpec("c", "categorical")),
    )
    return load_config(env={}, data_dir=str(tmp_path / "data")).__class__(
        data_dir=str(tmp_path / "data"), models=(spec,)
    )


def fill(
    store: EmbeddedStore, start_s: float, n: int, shift: float, seed: int, prefix: str
) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    events = [
        validate_event(
            {
                "model": "m",
                "version": "1",
                "latency_ms": 1.0,
                "request_id": f"{prefix}{i}",
                "ts": format_ts(int((start_s + i * (HOUR / n)) * 1e9)),
                "features": {
                    "x": float(rng.normal(shift, 1)),
                    "c": str(rng.choice(["a", "b", "c"])),
                },
                "prediction": int(i % 2),
            }
        )
        for i in range(n)
    ]
    store.insert_events(events)
    return events


def gauge(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_drift_job_detects_the_shift_and_exports_it(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    store = EmbeddedStore(tmp_path / "store.db")
    start, end = window_bounds(cfg.models[0].monitoring, NOW)
    fill(store, start / 1e6, 2000, shift=0.5, seed=2, prefix="cur")
    fill(store, start / 1e6 - HOUR, 2000, shift=0.0, seed=3, prefix="old")  # outside the window
    registry = CollectorRegistry()
    jobs = Jobs(cfg, store, registry, clock=lambda: NOW)
    report = jobs.drift("m")["1"]
    by_name = {f["name"]: f for f in report["features"]}
    assert set(by_name) == {"x", "c"}
    assert by_name["x"]["drifted"] and not by_name["c"]["drifted"]
    assert report["rows"] == 2000 and report["drift_share"] == 0.5
    assert (
        gauge(
            registry,
            "mlwatch_feature_drift_detected",
            environment="default",
            model="m",
            version="1",
            feature="x",
        )
        == 1
    )
    assert (
        gauge(
            registry, "mlwatch_dataset_drift_share", environment="default", model="m", version="1"
        )
        == 0.5
    )
    score = gauge(
        registry,
        "mlwatch_feature_drift_score",
        environment="default",
        model="m",
        version="1",
        feature="x",
        method=by_name["x"]["method"],
    )
    assert score == pytest.approx(by_name["x"]["score"])
    latest = store.latest_results("m")["drift"]["1"]
    assert latest["window"] == [format_ts(start * 1000), format_ts(end * 1000)]
    # the reference was profiled once and kept
    assert len(store.profiles("m", "*", "reference")) == 1
    jobs2 = Jobs(cfg, store, CollectorRegistry(), clock=lambda: NOW)
    (tmp_path / "ref.csv").rename(tmp_path / "away.csv")  # the stored profile serves
    assert jobs2.drift("m")["1"]["drift_share"] == 0.5
    # a changed reference file makes a new reference: now it matches the current data
    rng = np.random.default_rng(8)
    pd.DataFrame({"x": rng.normal(0.5, 1, 5000), "c": rng.choice(["a", "b", "c"], 5000)}).to_csv(
        tmp_path / "ref.csv", index=False
    )
    assert jobs2.drift("m")["1"]["drift_share"] == 0.0
    assert len(store.profiles("m", "*", "reference")) == 1


def test_gauges_of_a_version_no_longer_served_are_removed(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    store = EmbeddedStore(tmp_path / "store.db")
    start, _ = window_bounds(cfg.models[0].monitoring, NOW)
    fill(store, start / 1e6, 500, shift=0.5, seed=2, prefix="v1-")
    registry = CollectorRegistry()
    jobs = Jobs(cfg, store, registry, clock=lambda: NOW)
    jobs.drift("m")
    assert (
        gauge(
            registry, "mlwatch_dataset_drift_share", environment="default", model="m", version="1"
        )
        is not None
    )
    later = NOW + HOUR  # the next window: version 1 no longer served
    jobs.clock = lambda: later
    assert jobs.drift("m") == {}
    assert (
        gauge(
            registry, "mlwatch_dataset_drift_share", environment="default", model="m", version="1"
        )
        is None
    )
    assert (
        gauge(
            registry,
            "mlwatch_feature_drift_detected",
            environment="default",
            model="m",
            version="1",
            feature="x",
        )
        is None
    )


def test_kpi_job_updates_a_window_when_late_labels_arrive(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    store = EmbeddedStore(tmp_path / "store.db")
    start, _ = window_bounds(cfg.models[0].monitoring, NOW)
    events = fill(store, start / 1e6, 200, shift=0.0, seed=4, prefix="k")
    labels = [
        validate_feedback(
            {
                "model": "m",
                "request_id": e["request_id"],
                "label": e["prediction"] if i % 4 else 1 - e["prediction"],
            }
        )
        for i, e in enumerate(events)
    ]
    store.insert_feedback(labels[:60])  # 60 labels: 45 right
    registry = CollectorRegistry()
    jobs = Jobs(cfg, store, registry, clock=lambda: NOW)
    first = jobs.kpis("m")["1"]
    assert first["kpis"]["accuracy"]["value"] == pytest.approx(45 / 60)
    store.insert_feedback(labels[60:])  # the late labels of the same window
    second = jobs.kpis("m")["1"]
    assert second["kpis"]["accuracy"]["value"] == pytest.approx(150 / 200)
    assert gauge(
        registry, "mlwatch_model_kpi", environment="default", model="m", version="1", kpi="accuracy"
    ) == pytest.approx(0.75)
    assert (
        gauge(registry, "mlwatch_model_kpi_samples", environment="default", model="m", version="1")
        == 200
    )
    assert store.latest_results("m")["kpi"]["1"]["kpis"]["accuracy"]["value"] == pytest.approx(0.75)


def test_the_drift_job_exports_each_features_data_quality(tmp_path: Path) -> None:
    """A window with known missing, infinite, invalid and unseen values: the gauges are
    those shares of the feature's values."""
    cfg = config(tmp_path)
    store = EmbeddedStore(tmp_path / "store.db")
    start, _ = window_bounds(cfg.models[0].monitoring, NOW)
    xs: list[Any] = [float(i % 7) for i in range(200)]
    xs[:20] = [None] * 20  # 10% missing
    xs[20:30] = ["inf"] * 10  # 5% non-finite (the wire's spelling of +inf)
    xs[30:34] = ["text"] * 4  # 2% invalid
    cs = ["a", "b", "c", "z"] * 50  # 25% a category the reference never had
    store.insert_events(
        [
            validate_event(
                {
                    "model": "m",
                    "version": "1",
                    "latency_ms": 1.0,
                    "ts": format_ts(int((start / 1e6 + i) * 1e9)),
                    "features": {"x": x, "c": c},
                    "prediction": 1,
                }
            )
            for i, (x, c) in enumerate(zip(xs, cs, strict=True))
        ]
    )
    registry = CollectorRegistry()
    Jobs(cfg, store, registry, clock=lambda: NOW).drift("m")

    def share(feature: str, kind: str) -> float | None:
        labels = {
            "model": "m",
            "environment": "default",
            "version": "1",
            "feature": feature,
            "kind": kind,
        }
        return registry.get_sample_value("mlwatch_feature_quality_ratio", labels)

    assert share("x", "missing") == pytest.approx(0.10)
    assert share("x", "nonfinite") == pytest.approx(0.05)
    assert share("x", "invalid") == pytest.approx(0.02)
    assert share("x", "unseen") is None  # numeric: no categories
    assert share("c", "unseen") == pytest.approx(0.25)
    assert share("c", "missing") == 0


def test_the_label_delay_of_the_kpis_is_exported_by_quantile(tmp_path: Path) -> None:
    """Labels stamped a known time after their predictions: the gauges are NumPy's
    quantiles of those delays; a label stamped before its prediction counts 0."""
    cfg = config(tmp_path)
    store = EmbeddedStore(tmp_path / "store.db")
    start, _ = window_bounds(cfg.models[0].monitoring, NOW)
    events = fill(store, start / 1e6, 100, shift=0.0, seed=6, prefix="d")
    rng = np.random.default_rng(7)
    delays = rng.exponential(300.0, len(events))  # seconds
    delays[:60] = -5.0  # stamped before their predictions: the median is 0, not -5
    store.insert_feedback(
        [
            validate_feedback(
                {
                    "model": "m",
                    "request_id": e["request_id"],
                    "label": e["prediction"],
                    "ts": format_ts(e["ts_us"] * 1000 + int(d * 1e9)),
                }
            )
            for e, d in zip(events, delays, strict=True)
        ]
    )
    registry = CollectorRegistry()
    Jobs(cfg, store, registry, clock=lambda: NOW).kpis("m")
    expected = np.quantile(np.maximum(delays, 0.0), [0.5, 0.9, 0.99])
    for q, want in zip(("0.5", "0.9", "0.99"), expected, strict=True):
        got = gauge(
            registry,
            "mlwatch_label_delay_seconds",
            environment="default",
            model="m",
            version="1",
            quantile=q,
        )
        assert got == pytest.approx(want, abs=2e-6)
    assert expected[0] == 0.0 and expected[1] > 0


def test_a_model_without_reference_is_a_clear_error(tmp_path: Path) -> None:
    cfg = config(tmp_path, reference=str(tmp_path / "missing.csv"))
    store = EmbeddedStore(tmp_path / "store.db")
    start, _ = window_bounds(cfg.models[0].monitoring, NOW)
    fill(store, start / 1e6, 10, 0.0, 5, "e")
    with pytest.raises(JobError, match=r"m: reference .*missing\.csv: no such file"):
        Jobs(cfg, store, CollectorRegistry(), clock=lambda: NOW).drift("m")


def test_job_metrics_name_the_schedulers_environment(tmp_path: Path) -> None:
    """A dev and a prod scheduler run jobs of the same names: their runs and last
    successes are told apart by environment, so that an alert on a stale dev job is not
    silenced by prod's fresh one (alerts/tests/environments.yml)."""
    import dataclasses

    cfg = dataclasses.replace(config(tmp_path), environment="qa")
    store = EmbeddedStore(tmp_path / "store.db")
    registry = CollectorRegistry()
    sched = Scheduler(cfg, store, registry, jobs=Jobs(cfg, store, registry, clock=lambda: NOW))
    try:
        job = next(j for j in sched.scheduler.get_jobs() if j.id == "drift:m")
        job.func()  # one run, here
        labels = {"job": "drift:m", "environment": "qa"}
        assert gauge(registry, "mlwatch_job_runs_total", **labels, result="ok") == 1
        assert gauge(registry, "mlwatch_job_runs_total", **labels, result="failed") == 0
        assert (gauge(registry, "mlwatch_job_last_success_timestamp_seconds", **labels) or 0) > 0
        assert gauge(registry, "mlwatch_job_duration_seconds_count", **labels) == 1
    finally:
        sched.shutdown()
        store.close()


def test_a_slow_job_is_never_run_twice_at_once(tmp_path: Path) -> None:
    """A run still going when the next is due: the next is skipped and counted. The slow
    run is held by an event, so the test waits for the counts, never for a margin."""
    cfg = config(tmp_path, every_s=0.2)
    store = EmbeddedStore(tmp_path / "store.db")
    registry = CollectorRegistry()
    running: list[int] = []
    peak: list[int] = []
    lock = threading.Lock()
    release = threading.Event()

    class SlowJobs(Jobs):
        def drift(self, model: str, window: tuple[int, int] | None = None) -> dict[str, Any]:
            with lock:
                running.append(1)
                peak.append(len(running))
            release.wait(30)
            with lock:
                running.pop()
            return {}

        def kpis(self, model: str, window: tuple[int, int] | None = None) -> dict[str, Any]:
            raise RuntimeError("no labels today")

    def runs(result: str, job: str = "drift:m") -> float:
        return (
            gauge(registry, "mlwatch_job_runs_total", job=job, environment="default", result=result)
            or 0
        )

    sched = Scheduler(cfg, store, registry, jobs=SlowJobs(cfg, store, registry))
    assert sorted(sched.job_ids) == ["drift:m", "kpi:m"]
    sched.start()
    try:
        wait_until(lambda: runs("skipped") >= 2, timeout=30, what="two skipped drift runs")
        wait_until(lambda: runs("failed", "kpi:m") >= 2, timeout=30, what="two failed KPI runs")
        assert runs("ok") == 0  # the first run is still held
        release.set()
        wait_until(lambda: runs("ok") >= 1, timeout=30, what="the held run to finish")
    finally:
        release.set()
        sched.shutdown()
    assert max(peak) == 1
    assert (
        gauge(registry, "mlwatch_job_duration_seconds_count", job="drift:m", environment="default")
        or 0
    ) >= 1


def test_sidecar_runs_the_jobs_and_shows_results(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from mlwatch.sidecar.app import create_app

    cfg = config(tmp_path, every_s=3600.0, window_s=HOUR, sliding=True)
    now = time.time()
    registry = CollectorRegistry()
    with TestClient(create_app(cfg, registry=registry)) as client:
        events = [
            {
                "model": "m",
                "version": "1",
                "latency_ms": 1.0,
                "request_id": f"s{i}",
                "ts": format_ts(int((now - 60 + i * 0.01) * 1e9)),
                "prediction": i % 2,
                "features": {"x": 2.0 + (i % 7) * 0.1, "c": "a"},
            }
            for i in range(300)
        ]
        assert client.post("/v1/events", json=events).status_code == 202
        sidecar = client.app.state.sidecar  # type: ignore[attr-defined]
        from tests.helpers import wait_until

        wait_until(lambda: sidecar.store.count_events("m") == 300, what="events stored")
        sidecar.scheduler.run_now()
        wait_until(
            lambda: "drift" in client.get("/v1/models/m/status").json(),
            timeout=30,
            what="a drift result in the status",
        )
        status = client.get("/v1/models/m/status").json()
        assert status["drift"]["1"]["dataset_drift"] is True
        metrics = client.get("/metrics").text
        assert (
            'mlwatch_feature_drift_detected{environment="default",feature="x",model="m",version="1"} 1.0'
            in metrics
        )
        assert 'mlwatch_job_runs_total{environment="default",job="drift:m",result="ok"}' in metrics
        wait_until(lambda: "kpi:m" in client.get("/v1/models/m/status").json()["jobs"])
        jobs = client.get("/v1/models/m/status").json()["jobs"]
        assert jobs["drift:m"]["result"] == "ok" and jobs["drift:m"]["error"] is None
        assert "kpi m: 300 events in [" in jobs["kpi:m"]["empty"]
        assert "0 with ground truth" in jobs["kpi:m"]["empty"]


def test_a_failing_job_shows_in_the_status(tmp_path: Path) -> None:
    from mlwatch.sidecar.service import Sidecar

    cfg = config(tmp_path, every_s=3600.0)
    sc = Sidecar(cfg, registry=CollectorRegistry())
    try:

        def broken(model: str) -> None:
            raise JobError(f"{model}: the window source is down")

        sc.scheduler._wrap("drift:m", broken, "m")()
        job = sc.status("m")["jobs"]["drift:m"]
        assert job["result"] == "failed"
        assert job["error"] == "JobError: m: the window source is down"
    finally:
        sc.stop()


def test_the_sidecar_keeps_slice_profiles_and_the_job_merges_them(tmp_path: Path) -> None:
    """Profiles per slice as batches arrive; the drift job's result from merged slices
    equals the one from the raw events, and a late event updates its own slice."""
    from fastapi.testclient import TestClient

    from mlwatch.sidecar.app import create_app
    from tests.helpers import wait_until

    cfg = config(tmp_path, window_s=HOUR)
    start, end = window_bounds(cfg.models[0].monitoring, NOW)
    store_path = tmp_path / "data" / "store.db"
    registry = CollectorRegistry()
    with TestClient(create_app(cfg, registry=registry)) as client:
        sidecar = client.app.state.sidecar  # type: ignore[attr-defined]
        jobs = Jobs(cfg, sidecar.store, CollectorRegistry(), clock=lambda: NOW)
        jobs.reference(cfg.models[0])  # what the first drift run does
        rng = np.random.default_rng(9)
        events = [
            {
                "model": "m",
                "version": "1",
                "latency_ms": 1.0,
                "request_id": f"p{i}",
                "ts": format_ts(int((start / 1e6 + i * 1.7) * 1e9)),
                "features": {"x": float(rng.normal(0.3, 1)), "c": str(rng.choice(["a", "b"]))},
            }
            for i in range(2000)
        ]
        for k in range(0, 2000, 250):
            assert client.post("/v1/events", json=events[k : k + 250]).status_code == 202
        slices = lambda: sidecar.store.profiles("m", "1", "slice")  # noqa: E731
        wait_until(
            lambda: sum(orjson_rows(b) for _, _, b in slices()) == 2000,
            timeout=30,
            what="2000 rows in slice profiles",
        )
        assert len(slices()) == int(np.ceil(2000 * 1.7 / 60))
        merged = jobs.windows.merged_slices(jobs.reference(cfg.models[0]), "m", "1", start, end)
        assert merged is not None and merged.rows == 2000
        from_slices = jobs.drift("m")["1"]
        raw = Jobs(cfg, sidecar.store, CollectorRegistry(), clock=lambda: NOW)
        raw.windows.merged_slices = lambda *a: None  # type: ignore[attr-defined]
        from_raw = raw.drift("m")["1"]
        for a, b in zip(from_slices["features"], from_raw["features"], strict=True):
            assert a["method"] == b["method"] and a["drifted"] == b["drifted"]
            assert a["score"] == pytest.approx(b["score"], rel=1e-9)
        # a late event lands in its own, older slice
        late = dict(events[0], request_id="late", event_id=None)
        late.pop("event_id")
        assert client.post("/v1/events", json=[late]).status_code == 202
        wait_until(lambda: orjson_rows(slices()[0][2]) > 36, timeout=30, what="late event")
    assert store_path.exists()


def orjson_rows(body: str) -> int:
    import json

    return int(json.loads(body)["rows"])


def test_reference_from_a_window_of_served_traffic(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    spec = cfg.models[0]
    assert spec.monitoring is not None
    store = EmbeddedStore(tmp_path / "store.db")
    start, _ = window_bounds(spec.monitoring, NOW)
    fill(store, start / 1e6 - 2 * HOUR, 2000, shift=0.0, seed=6, prefix="ref")  # last week
    fill(store, start / 1e6, 2000, shift=0.0, seed=7, prefix="now")
    window = (
        format_ts(int((start / 1e6 - 2 * HOUR) * 1e9)),
        format_ts(int((start / 1e6 - HOUR) * 1e9)),
    )
    mon = type(spec.monitoring)(
        **{**spec.monitoring.__dict__, "reference": None, "reference_window": window}
    )
    cfg2 = type(cfg)(
        **{**cfg.__dict__, "models": (type(spec)(**{**spec.__dict__, "monitoring": mon}),)}
    )
    report = Jobs(cfg2, store, CollectorRegistry(), clock=lambda: NOW).drift("m")["1"]
    assert report["drift_share"] == 0.0  # same population as the reference window
    [(ref_start, ref_end, _)] = store.profiles("m", "*", "reference")
    assert format_ts(ref_start * 1000) == window[0] and format_ts(ref_end * 1000) == window[1]


def _with_window(cfg: Any, window: tuple[str, str]) -> Any:
    spec = cfg.models[0]
    mon = type(spec.monitoring)(
        **{**spec.monitoring.__dict__, "reference": None, "reference_window": window}
    )
    return type(cfg)(
        **{**cfg.__dict__, "models": (type(spec)(**{**spec.__dict__, "monitoring": mon}),)}
    )


def test_a_reference_window_outlives_its_events_and_its_spelling(
    tmp_path: Path, caplog: Any
) -> None:
    """The stored reference serves on: the same instants written another way are the same
    reference; a changed window whose events retention has purged falls back to it."""
    cfg = config(tmp_path)
    store = EmbeddedStore(tmp_path / "store.db")
    start, _ = window_bounds(cfg.models[0].monitoring, NOW)
    fill(store, start / 1e6 - 2 * HOUR, 500, shift=0.0, seed=6, prefix="ref")
    fill(store, start / 1e6, 500, shift=0.0, seed=7, prefix="now")
    since, until = int(start - 2 * HOUR * 1e6), int(start - HOUR * 1e6)
    first = _with_window(cfg, (format_ts(since * 1000), format_ts(until * 1000)))
    assert Jobs(first, store, CollectorRegistry(), clock=lambda: NOW).drift("m")["1"]
    tag = store.profile_tag("m", "*", "reference")
    # the same window, written with a UTC offset instead of Z: the same reference
    respelled = (
        format_ts(since * 1000).replace(".000000Z", "+00:00"),
        format_ts(until * 1000).replace(".000000Z", "+00:00"),
    )
    assert Jobs(_with_window(cfg, respelled), store, CollectorRegistry(), clock=lambda: NOW).drift(
        "m"
    )["1"]
    assert store.profile_tag("m", "*", "reference") == tag
    # the reference window's events are purged, and the config moves the window a second
    store.purge(now_us=since + int(31 * 86_400 * 1e6) + until - since)
    moved = _with_window(cfg, (format_ts((since + 1_000_000) * 1000), format_ts(until * 1000)))
    fill(store, start / 1e6, 500, shift=0.0, seed=8, prefix="again")
    with caplog.at_level("WARNING", logger="mlwatch.jobs"):
        report = Jobs(moved, store, CollectorRegistry(), clock=lambda: NOW).drift("m")["1"]
    assert report["drift_share"] == 0.0
    assert "using the stored reference profile" in caplog.text
    assert store.profile_tag("m", "*", "reference") == tag


def test_a_hashed_integer_feature_of_a_file_reference_matches_served_events(tmp_path: Path) -> None:
    """The file's integer ids are hashed as the sidecar hashes served ones ("101", not
    "101.0"): the reference's categories are the served categories."""
    from mlwatch.redact import Redactor

    rng = np.random.default_rng(5)
    ids = rng.integers(100, 110, 3000)
    pd.DataFrame({"cust": ids}).to_csv(tmp_path / "ref.csv", index=False)
    mon = Monitoring(reference=str(tmp_path / "ref.csv"), every_s=1.0)
    spec = ModelSpec(
        name="m", monitoring=mon, features=(FeatureSpec("cust", "categorical", "hash"),)
    )
    cfg = Config(data_dir=str(tmp_path / "data"), models=(spec,), hash_key="k3y")
    redactor = Redactor([spec], key=b"k3y")
    store = EmbeddedStore(tmp_path / "store.db")
    start, _ = window_bounds(mon, NOW)
    store.insert_events(
        [
            redactor.apply(
                validate_event(
                    {
                        "model": "m",
                        "version": "1",
                        "latency_ms": 1.0,
                        "ts": format_ts(int((start / 1e6 + i) * 1e9)),
                        "features": {"cust": int(rng.integers(100, 110))},
                    }
                )
            )
            for i in range(2000)
        ]
    )
    [feature] = Jobs(cfg, store, CollectorRegistry(), clock=lambda: NOW).drift("m")["1"]["features"]
    assert feature["name"] == "cust" and not feature["drifted"]
    assert feature["unseen_categories"] == []


def test_mlwatch_scheduler_once(tmp_path: Path) -> None:
    """The standalone scheduler against a data directory, run once, prints the results."""
    import json
    import subprocess
    import sys

    rng = np.random.default_rng(1)
    pd.DataFrame({"x": rng.normal(0, 1, 3000)}).to_csv(tmp_path / "ref.csv", index=False)
    data = tmp_path / "data"
    store = EmbeddedStore(data / "store.db")
    now = time.time()
    store.insert_events(
        [
            validate_event(
                {
                    "model": "m",
                    "version": "1",
                    "latency_ms": 1.0,
                    "request_id": f"r{i}",
                    "ts": format_ts(int((now - 100 + i * 0.05) * 1e9)),
                    "prediction": 1,
                    "features": {"x": float(rng.normal(1.0, 1))},
                }
            )
            for i in range(1000)
        ]
    )
    store.close()
    (tmp_path / "mlwatch.yaml").write_text(
        f"data_dir: {data}\nmodels:\n  - name: m\n    features: [x]\n"
        f"    reference: {tmp_path / 'ref.csv'}\n    window: 10m\n    sliding: true\n"
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlwatch",
            "scheduler",
            "--config",
            str(tmp_path / "mlwatch.yaml"),
            "--once",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    drift = results["m"]["drift"]["1"]
    assert drift["rows"] == 1000 and drift["features"][0]["drifted"] is True
    assert results["m"]["kpi"] == {}  # no labels yet: nothing to report


def test_sliding_kpis_are_one_window_ending_now(tmp_path: Path) -> None:
    cfg = config(tmp_path, sliding=True)
    store = EmbeddedStore(tmp_path / "store.db")
    events = fill(store, NOW - HOUR, 100, shift=0.0, seed=4, prefix="s")
    store.insert_feedback(
        [
            validate_feedback(
                {"model": "m", "request_id": e["request_id"], "label": e["prediction"]}
            )
            for e in events
        ]
    )
    fill(store, NOW - 3 * HOUR, 100, shift=0.0, seed=5, prefix="old")  # outside: not counted
    report = Jobs(cfg, store, CollectorRegistry(), clock=lambda: NOW).kpis("m")["1"]
    assert report["n_rows"] == 100 and report["kpis"]["accuracy"]["value"] == 1.0
    latest = store.latest_results("m")["kpi"]["1"]
    assert latest["window"] == [format_ts(int((NOW - HOUR) * 1e9)), format_ts(int(NOW * 1e9))]


def test_prediction_and_label_fields_reach_the_kpi_job_once(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """decorator -> sidecar -> store -> KPI job with ``prediction_field``/``label_field``:
    the client applies the dotted paths, the job scores what was stored."""
    import json
    import subprocess
    import sys

    import mlwatch
    from tests.integration.servers import SidecarProcess

    rng = np.random.default_rng(3)
    pd.DataFrame({"x": rng.normal(0, 1, 500)}).to_csv(tmp_path / "ref.csv", index=False)
    data = tmp_path / "data"
    cfg = tmp_path / "mlwatch.yaml"
    cfg.write_text(
        json.dumps(
            {
                "data_dir": str(data),
                "scheduler": False,
                "models": [
                    {
                        "name": "churn",
                        "features": ["x"],
                        "prediction_field": "out.label",
                        "label_field": "truth.churned",
                        "reference": str(tmp_path / "ref.csv"),
                        "window": "1h",
                        "sliding": True,
                        "kpi": {"min_samples": 50},
                    }
                ],
            }
        )
    )
    sidecar = SidecarProcess(data, MLWATCH_CONFIG=str(cfg)).start()
    try:
        monkeypatch.setenv("MLWATCH_CONFIG", str(cfg))
        mlwatch.configure(sidecar_url=sidecar.url, model="churn", version="1", flush_interval_ms=20)

        @mlwatch.monitor(request_id="rid")
        def predict(x: dict[str, float], rid: str) -> dict[str, Any]:
            return {"out": {"label": int(x["x"] > 0), "score": 0.5}}

        for i in range(200):
            predict({"x": float(i % 4 - 1.5)}, rid=f"r{i}")  # predicted 1 for i % 4 in (2, 3)
            truth = int(i % 4 >= 2) if i < 150 else 1 - int(i % 4 >= 2)  # 150 right, 50 wrong
            mlwatch.log_feedback(f"r{i}", {"truth": {"churned": truth}, "source": "crm"})
        assert mlwatch.flush(10)
        status = f"{sidecar.url}/v1/models/churn/status"
        from tests.integration.servers import get_json

        wait_until(lambda: get_json(status)["feedback_stored"] == 200, what="labels stored")
    finally:
        mlwatch.shutdown()
        sidecar.stop()
    proc = subprocess.run(
        [sys.executable, "-m", "mlwatch", "scheduler", "--config", str(cfg), "--once"],
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in __import__("os").environ.items() if not k.startswith("MLWATCH_")},
    )
    assert proc.returncode == 0, proc.stderr
    kpi = json.loads(proc.stdout)["churn"]["kpi"]["1"]
    assert kpi["unusable"] == {} and kpi["n_used"] == 200
    assert kpi["kpis"]["accuracy"]["value"] == pytest.approx(150 / 200)


def test_slice_profiles_and_window_counts_agree_with_two_environments(tmp_path: Path) -> None:
    """A prod sidecar that also stores dev's events: its slices profile prod's only, so
    they agree with prod's window counts (the fast path is taken, no fallback to the raw
    events), and the drift job's result is prod's alone."""
    import dataclasses

    from fastapi.testclient import TestClient

    from mlwatch.sidecar.app import create_app

    cfg = dataclasses.replace(config(tmp_path, window_s=HOUR), environment="prod")
    start, _ = window_bounds(cfg.models[0].monitoring, NOW)
    end = start + HOUR * 1_000_000
    rng = np.random.default_rng(4)

    def batch(prefix: str, n: int, shift: float, **extra: Any) -> list[dict[str, Any]]:
        return [
            {
                "model": "m",
                "version": "1",
                "latency_ms": 1.0,
                "request_id": f"{prefix}{i}",
                "ts": format_ts(int((start / 1e6 + i * 2.3) * 1e9)),
                "features": {
                    "x": float(rng.normal(shift, 1)),
                    "c": str(rng.choice(["a", "b", "c"])),
                },
                **extra,
            }
            for i in range(n)
        ]

    with TestClient(create_app(cfg, registry=CollectorRegistry())) as client:
        sidecar = client.app.state.sidecar  # type: ignore[attr-defined]
        jobs = Jobs(cfg, sidecar.store, CollectorRegistry(), clock=lambda: NOW)
        ref = jobs.reference(cfg.models[0])
        for events in (batch("p", 1000, 0.0), batch("d", 600, 5.0, environment="dev")):
            assert client.post("/v1/events", json=events).status_code == 202
        wait_until(lambda: sidecar.store.count_events("m") == 1600, timeout=30, what="1600 events")
        slices = lambda: sidecar.store.profiles("m", "1", "slice")  # noqa: E731
        wait_until(
            lambda: sum(orjson_rows(b) for _, _, b in slices()) == 1000,
            timeout=30,
            what="prod's 1000 rows in slice profiles",
        )
        merged = jobs.windows.merged_slices(ref, "m", "1", start, end)
        assert merged is not None and merged.rows == 1000  # the fast path
        report = jobs.drift("m")["1"]
        assert report["rows"] == 1000
        drifted = {f["name"] for f in report["features"] if f["drifted"]}
        assert "x" not in drifted  # dev's shift of x is not prod's
