"""The compare job: two live versions of a model, the verdict and the differences on the
registry's ``/metrics`` text, stale pairs retired, and the ``compare`` settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from mlwatch.errors import ConfigError
from mlwatch.scheduler import Jobs
from mlwatch.settings import ModelSpec, Monitoring, load_config
from mlwatch.settings.compare import CompareSpec, parse_compare
from mlwatch.settings.monitoring import parse_monitoring
from mlwatch.store import EmbeddedStore
from mlwatch.wire import format_ts, validate_event, validate_feedback

NOW = 1_790_000_000.0


def config(tmp_path: Path, compare: CompareSpec) -> Any:
    mon = Monitoring(reference=str(tmp_path / "ref.csv"), compare=compare)
    spec = ModelSpec(name="churn", task="classification", monitoring=mon)
    return load_config(env={}, data_dir=str(tmp_path)).__class__(
        data_dir=str(tmp_path), models=(spec,)
    )


def seed(store: EmbeddedStore, versions: dict[str, float], n: int = 1200) -> None:
    rng = np.random.default_rng(3)
    events, labels = [], []
    for k, (version, p_right) in enumerate(versions.items()):
        for i in range(n):
            y = int(rng.integers(0, 2))
            rid = f"{version}-{i}"
            ts = format_ts(int((NOW - 3000 + i + k) * 1e9))
            pred = y if rng.random() < p_right else 1 - y
            events.append({"model": "churn", "version": version, "request_id": rid, "ts": ts,
                           "latency_ms": 5.0 + k, "prediction": pred})  # fmt: skip
            labels.append({"model": "churn", "request_id": rid, "label": y})
    store.insert_events([validate_event(e) for e in events])
    store.insert_feedback([validate_feedback(f) for f in labels])


def test_the_job_exports_the_verdict_and_differences(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "store.db", retention_days=0)
    seed(store, {"v1": 0.9, "v2": 0.7})
    registry = CollectorRegistry()
    jobs = Jobs(
        config(tmp_path, CompareSpec(gate=("accuracy",))), store, registry, clock=lambda: NOW
    )
    try:
        result = jobs.compare("churn")
        text = generate_latest(registry).decode()
    finally:
        jobs.close()
        store.close()
    assert (result["baseline"], result["candidate"]) == ("v1", "v2")  # v2 was served last
    assert result["verdict"] == "worse"
    pair = {"model": "churn", "environment": "default", "baseline": "v1", "candidate": "v2"}
    value = registry.get_sample_value
    assert value("mlwatch_compare_verdict", {**pair, "kpi": "overall"}) == -1
    assert value("mlwatch_compare_verdict", {**pair, "kpi": "accuracy"}) == -1
    acc = {k["kpi"]: k for k in result["kpis"]}["accuracy"]
    for bound, key in (("estimate", "difference"), ("lower", "lower"), ("upper", "upper")):
        got = value("mlwatch_compare_difference", {**pair, "kpi": "accuracy", "bound": bound})
        assert got == pytest.approx(acc[key])
    assert (
        value("mlwatch_compare_difference", {**pair, "kpi": "latency_p50", "bound": "estimate"})
        == 1
    )
    assert "# TYPE mlwatch_compare_verdict gauge" in text


def test_one_version_is_nothing_to_compare_and_retires_old_series(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "store.db", retention_days=0)
    seed(store, {"v1": 0.9, "v2": 0.9}, n=200)
    registry = CollectorRegistry()
    jobs = Jobs(config(tmp_path, CompareSpec()), store, registry, clock=lambda: NOW)
    try:
        assert jobs.compare("churn")["verdict"] == "not enough data"
        assert 'candidate="v2"' in generate_latest(registry).decode()
        jobs.config = config(tmp_path, CompareSpec(since=format_ts(int((NOW + 1) * 1e9))))
        assert jobs.compare("churn") == {}
        assert "fewer than two versions" in (jobs.empty[("compare", "churn")] or "")
        assert 'candidate="v2"' not in generate_latest(registry).decode()
    finally:
        jobs.close()
        store.close()


def test_compare_settings() -> None:
    item = {"reference": "r.csv", "compare": {"margins": {"accuracy": 0.01}, "gate": ["accuracy"]}}
    mon = parse_monitoring(item, "models[0]", "t")
    assert mon.compare == CompareSpec(margins=(("accuracy", 0.01),), gate=("accuracy",))
    assert (
        parse_monitoring({"reference": "r.csv", "compare": True}, "m", "t").compare == CompareSpec()
    )
    assert parse_monitoring({"reference": "r.csv"}, "m", "t").compare is None
    with pytest.raises(ConfigError, match=r"models\[0\].compare.margin: unknown key"):
        parse_compare({"margin": {}}, "models[0].compare", "t")
    with pytest.raises(ConfigError, match=r"compare.alpha"):
        parse_compare({"alpha": 2}, "models[0].compare", "t")
    with pytest.raises(ConfigError, match=r"compare.since"):
        parse_monitoring({"reference": "r.csv", "compare": {"since": "yesterday"}}, "m", "t")


def test_a_named_candidate_is_not_compared_with_itself(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "store.db", retention_days=0)
    seed(store, {"v1": 0.9, "v2": 0.9, "v3": 0.9}, n=200)  # v3 served last
    jobs = Jobs(
        config(tmp_path, CompareSpec(candidate="v3", baseline=None)), store, CollectorRegistry(),
        clock=lambda: NOW,
    )  # fmt: skip
    try:
        result = jobs.compare("churn")
        assert (result["baseline"], result["candidate"]) == ("v2", "v3")
        jobs.config = config(tmp_path, CompareSpec(baseline="v2"))
        result = jobs.compare("churn")
        assert (result["baseline"], result["candidate"]) == ("v2", "v3")
        jobs.config = config(tmp_path, CompareSpec(candidate="v2"))
        result = jobs.compare("churn")
        assert (result["baseline"], result["candidate"]) == ("v3", "v2")
    finally:
        jobs.close()
        store.close()


def test_unknown_kpis_in_the_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"compare.margins.acuracy: .*no such KPI"):
        parse_compare({"margins": {"acuracy": 0.01}}, "models[0].compare", "t")
    with pytest.raises(ConfigError, match=r"compare.gate: .*no such KPI: latency"):
        parse_compare({"gate": ["accuracy", "latency"]}, "models[0].compare", "t")
    with pytest.raises(ConfigError, match=r"compare.gate: .*at least one"):
        parse_compare({"gate": []}, "models[0].compare", "t")
    with pytest.raises(ConfigError, match=r"compare.margins.mae"):
        parse_compare({"margins": {"mae": float("nan")}}, "models[0].compare", "t")
