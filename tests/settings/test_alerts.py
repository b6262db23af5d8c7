"""A model spec's ``alerts`` section: defaults, every key, and errors that name the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from mlwatch.errors import ConfigError
from mlwatch.settings import load_config
from mlwatch.settings.alerts import (
    ERROR_KPIS,
    KPI_NAMES,
    LATENCY_BOUNDS,
    AlertSpec,
    SLOSpec,
    parse_alerts,
)


def load_alerts(tmp_path: Path, alerts: Any) -> AlertSpec | None:
    """The alerts section of a one-model config file, through the real loader."""
    path = tmp_path / "mlwatch.yaml"
    path.write_text(yaml.safe_dump({"models": [{"name": "m", "alerts": alerts}]}))
    [spec] = load_config(path, env={}).models
    return spec.alerts


def test_an_empty_section_gives_the_defaults(tmp_path: Path) -> None:
    spec = load_alerts(tmp_path, {})
    assert spec == AlertSpec()
    assert (spec.for_s, spec.drift, spec.drift_for_s, spec.no_traffic_s) == (600, True, 1800, 900)
    assert spec.error_ratio == 0.05 and spec.latency_threshold_s is None and spec.slos == ()
    assert spec.retrain_on == ("drift", "quality") and spec.quality_tolerance is None


def test_a_model_without_the_section_has_none(tmp_path: Path) -> None:
    path = tmp_path / "mlwatch.yaml"
    path.write_text("models: [{name: m}]\n")
    assert load_config(path, env={}).models[0].alerts is None


def test_every_key_is_read(tmp_path: Path) -> None:
    spec = load_alerts(
        tmp_path,
        {
            "for": "5m",
            "drift": {"for": "1h", "share": 0.25},
            "kpis": {"log_loss": 0.5, "accuracy": 0.9},
            "min_samples": 300,
            "no_traffic": False,
            "error_ratio": 0.01,
            "latency": {"quantile": 0.95, "threshold": "750ms"},
            "slo": {
                "quality": {"objective": 0.97, "tolerance": 2.5},
                "availability": {"objective": 0.999},
                "latency": {"objective": 0.99, "threshold": "250ms"},
            },
            "retrain_on": ["quality"],
            "job_stale_periods": 4,
        },
    )
    assert spec == AlertSpec(
        for_s=300.0,
        drift_for_s=3600.0,
        drift_share=0.25,
        kpis=(("accuracy", 0.9), ("log_loss", 0.5)),  # sorted: the output order is stable
        min_samples=300,
        no_traffic_s=None,
        error_ratio=0.01,
        latency_quantile=0.95,
        latency_threshold_s=0.75,
        slos=(
            SLOSpec("availability", 0.999),
            SLOSpec("latency", 0.99, 0.25),
            SLOSpec("quality", 0.97),
        ),
        quality_tolerance=2.5,
        retrain_on=("quality",),
        job_stale_periods=4.0,
    )
    assert spec.slo("latency") == SLOSpec("latency", 0.99, 0.25) and spec.slo("nope") is None


def test_switches(tmp_path: Path) -> None:
    spec = load_alerts(tmp_path, {"drift": False, "error_ratio": False, "retrain_on": []})
    assert spec is not None
    assert (spec.drift, spec.error_ratio, spec.retrain_on) == (False, None, ())
    assert load_alerts(tmp_path, {"for": 0}) == AlertSpec(for_s=0.0)


def test_a_latency_slo_threshold_is_a_bucket_bound(tmp_path: Path) -> None:
    for given, bound in (("2.5ms", 0.0025), (1, 1.0), ("10s", 10.0), (0.001, 0.001)):
        spec = load_alerts(tmp_path, {"slo": {"latency": {"objective": 0.99, "threshold": given}}})
        assert spec is not None and spec.slos[0].threshold_s == bound
    with pytest.raises(ConfigError) as err:
        load_alerts(tmp_path, {"slo": {"latency": {"objective": 0.99, "threshold": "300ms"}}})
    assert err.value.key == "models[0].alerts.slo.latency.threshold"
    assert "bucket bounds" in str(err.value) and "0.25, 0.5" in str(err.value)
    assert "'300ms'" in str(err.value) and str(tmp_path) in str(err.value)


@pytest.mark.parametrize(
    ("alerts", "key", "words"),
    [
        ([], "models[0].alerts", "expected a mapping"),
        ({"for_": "5m"}, "models[0].alerts.for_", "did you mean 'for'"),
        ({"kpis": {"acuracy": 0.9}}, "models[0].alerts.kpis.acuracy", "did you mean 'accuracy'"),
        ({"kpis": {"accuracy": "high"}}, "models[0].alerts.kpis.accuracy", "expected a number"),
        ({"kpis": {"mae": -1}}, "models[0].alerts.kpis.mae", "at least 0"),
        ({"kpis": [0.9]}, "models[0].alerts.kpis", "expected a mapping"),
        ({"for": "soon"}, "models[0].alerts.for", "expected a duration"),
        ({"drift": {"share": 1.5}}, "models[0].alerts.drift.share", "(0, 1]"),
        ({"drift": {"fore": "5m"}}, "models[0].alerts.drift.fore", "did you mean 'for'"),
        ({"min_samples": 0}, "models[0].alerts.min_samples", "positive integer"),
        ({"no_traffic": 0}, "models[0].alerts.no_traffic", "expected a duration"),
        ({"error_ratio": 1.5}, "models[0].alerts.error_ratio", "between 0 and 1"),
        (
            {"latency": {"quantile": 0.99}},
            "models[0].alerts.latency.threshold",
            "needs a threshold",
        ),
        ({"slo": {"availability": {}}}, "models[0].alerts.slo.availability.objective", "objective"),
        (
            {"slo": {"availability": {"objective": 1}}},
            "models[0].alerts.slo.availability.objective",
            "between 0 and 1",
        ),
        ({"slo": {"uptime": {}}}, "models[0].alerts.slo.uptime", "unknown key"),
        (
            {"slo": {"latency": {"objective": 0.9}}},
            "models[0].alerts.slo.latency.threshold",
            "needs a threshold",
        ),
        (
            {"slo": {"availability": {"objective": 0.9, "tolerance": 1}}},
            "models[0].alerts.slo.availability.tolerance",
            "unknown key",
        ),
        (
            {"slo": {"quality": {"objective": 0.9, "tolerance": -1}}},
            "models[0].alerts.slo.quality.tolerance",
            "at least 0",
        ),
        ({"retrain_on": ["kpi"]}, "models[0].alerts.retrain_on", "drift and quality"),
        ({"job_stale_periods": 0.5}, "models[0].alerts.job_stale_periods", "at least 1"),
    ],
)
def test_a_bad_value_names_its_key(tmp_path: Path, alerts: Any, key: str, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_alerts(tmp_path, alerts)
    assert err.value.key == key, str(err.value)
    assert words in str(err.value)
    assert err.value.source == str(tmp_path / "mlwatch.yaml")


def test_the_kpi_names_are_the_schedulers() -> None:
    """The settings cannot import mlwatch.stats (a lower layer), so the names are written
    twice; this keeps them equal."""
    from mlwatch.stats.kpi.results import CLASSIFICATION_KPIS, REGRESSION_KPIS

    assert frozenset(CLASSIFICATION_KPIS) | frozenset(REGRESSION_KPIS) == KPI_NAMES
    assert {"log_loss", "brier", "ece", "mae", "rmse", "mape"} == ERROR_KPIS


def test_the_latency_bounds_are_the_sidecars_buckets() -> None:
    from mlwatch.sidecar.metrics import LATENCY_BUCKETS

    assert LATENCY_BOUNDS == LATENCY_BUCKETS


def test_parse_alerts_directly() -> None:
    assert parse_alerts({"kpis": {"r2": -0.5}}, "x", "f").kpis == (("r2", -0.5),)
