"""The rule builder: burn-rate windows and factors, the direction of each KPI, the
min_samples gate, retrain labels, what every alert carries, and configuration errors
that name the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from mlwatch.alerting import slo
from mlwatch.alerting.build import build_groups
from mlwatch.alerting.rules import Options, Rule, duration, number
from mlwatch.alerting.rules_jobs import period_s
from mlwatch.errors import ConfigError
from mlwatch.settings import Config, Monitoring, load_config
from mlwatch.settings.alerts import ERROR_KPIS, SLOSpec

MONITORED = {"reference": "ref.csv", "schedule": "5m", "features": ["x"]}


def config(tmp_path: Path, *models: dict[str, Any], **settings: Any) -> Config:
    path = tmp_path / "mlwatch.yaml"
    path.write_text(yaml.safe_dump({**settings, "models": list(models)}))
    return load_config(path, env={})


def rules_of(cfg: Config, model: str | None = None, **options: Any) -> list[Rule]:
    groups = build_groups(cfg, Options(**options))
    name = f"mlwatch-model-{model}" if model else "mlwatch"
    return [r for g in groups if g.name == name for r in g.rules]


def alerts_named(rules: list[Rule], name: str) -> list[Rule]:
    return [r for r in rules if r.alert == name]


def test_burn_rate_windows_and_factors() -> None:
    assert [(b.factor, b.long, b.short) for b in slo.PAGE] == [
        (14.4, "1h", "5m"),
        (6.0, "6h", "30m"),
    ]
    assert [(b.factor, b.long, b.short) for b in slo.TICKET] == [
        (3.0, "1d", "2h"),
        (1.0, "3d", "6h"),
    ]
    # each factor spends a fixed share of the 30-day budget in its long window
    for burn, share in zip((*slo.PAGE, *slo.TICKET), (0.02, 0.05, 0.10, 0.10), strict=True):
        hours = {"1h": 1, "6h": 6, "1d": 24, "3d": 72}[burn.long]
        assert burn.factor * hours / (30 * 24) == pytest.approx(share)


def test_burn_alerts_read_the_recorded_ratios(tmp_path: Path) -> None:
    cfg = config(tmp_path, {"name": "m", "alerts": {"slo": {"availability": {"objective": 0.999}}}})
    rules = rules_of(cfg, "m")
    records = [r for r in rules if r.record]
    assert [r.record for r in records] == [f"{slo.RECORD}{w}" for w in slo.WINDOWS]
    assert all(r.labels == {"slo": "availability"} for r in records)
    assert rules.index(records[-1]) < min(rules.index(r) for r in rules if r.alert)
    page, ticket = alerts_named(rules, "MlwatchAvailabilityBudgetBurn")
    assert (page.labels["severity"], ticket.labels["severity"]) == ("page", "ticket")
    sel = '{model="m",slo="availability"}'
    for rule, pairs in ((page, slo.PAGE), (ticket, slo.TICKET)):
        legs = rule.expr.split("\nor\n")
        assert len(legs) == 2
        for leg, pair in zip(legs, pairs, strict=True):
            bound = f"> ({number(pair.factor)} * 0.001)"
            assert f"{slo.RECORD}{pair.long}{sel} {bound}" in leg
            assert f"{slo.RECORD}{pair.short}{sel} {bound}" in leg
            assert "\nand\n" in leg
    assert "for" not in page.to_dict()  # the short window makes them stop, not a for:


def test_the_error_ratio_of_each_objective() -> None:
    avail = slo.error_ratio(SLOSpec("availability", 0.99), "m", "1h")
    assert 'mlwatch_predictions_total{model="m",status="error"}[1h]' in avail
    assert (
        "or\n  0 * sum by (model, version, environment)" in avail
    )  # no error at all is a ratio of 0
    quality = slo.error_ratio(SLOSpec("quality", 0.95), "m", "5m")
    assert 'mlwatch_labelled_predictions_total{model="m",outcome="wrong"}[5m]' in quality
    latency = slo.error_ratio(SLOSpec("latency", 0.99, 1.0), "m", "30m")
    # the bound as the sidecar writes it in le (repr of a float), read at that bucket
    assert 'mlwatch_prediction_latency_seconds_bucket{model="m",le="1.0"}[30m]' in latency
    assert latency.startswith("1 - (") and '_count{model="m"}[30m]' in latency


def test_the_le_label_is_the_sidecars_spelling() -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from mlwatch.sidecar.metrics import LATENCY_BUCKETS, SidecarMetrics

    registry = CollectorRegistry()
    metrics = SidecarMetrics(registry, lambda model: "classification")
    metrics.models.observe_events([{"model": "m", "version": "1", "status": "ok", "latency_ms": 1}])
    text = generate_latest(registry).decode()
    for bound in LATENCY_BUCKETS:
        assert f'le="{float(bound)!r}"' in text


@pytest.mark.parametrize("kpi", sorted(ERROR_KPIS))
def test_error_kpis_fire_above_their_threshold(tmp_path: Path, kpi: str) -> None:
    task = "regression" if kpi in ("mae", "rmse", "mape") else "classification"
    cfg = config(tmp_path, {"name": "m", "task": task, **MONITORED, "alerts": {"kpis": {kpi: 0.3}}})
    [rule] = alerts_named(rules_of(cfg, "m"), "MlwatchKPIAboveThreshold")
    assert f'kpi="{kpi}"}}) > 0.3\n' in rule.expr
    assert not alerts_named(rules_of(cfg, "m"), "MlwatchKPIBelowThreshold")


@pytest.mark.parametrize(
    ("kpi", "task"),
    [("accuracy", "classification"), ("roc_auc", "classification"), ("r2", "regression")],
)
def test_score_kpis_fire_below_their_threshold(tmp_path: Path, kpi: str, task: str) -> None:
    cfg = config(tmp_path, {"name": "m", "task": task, **MONITORED, "alerts": {"kpis": {kpi: 0.7}}})
    [rule] = alerts_named(rules_of(cfg, "m"), "MlwatchKPIBelowThreshold")
    assert f'kpi="{kpi}"}}) < 0.7\n' in rule.expr
    assert rule.labels == {"severity": "ticket", "kpi": kpi, "retrain": "true"}


def test_kpi_alerts_need_min_samples(tmp_path: Path) -> None:
    gate = (
        "and on (model, version, environment)\n"
        'max by (model, version, environment) (mlwatch_model_kpi_samples{model="m"}) >= '
    )
    spec = {
        "name": "m",
        **MONITORED,
        "kpi": {"min_samples": 150},
        "alerts": {"kpis": {"accuracy": 0.8}},
    }
    [rule] = alerts_named(rules_of(config(tmp_path, spec), "m"), "MlwatchKPIBelowThreshold")
    assert rule.expr.endswith(gate + "150")  # the monitoring section's kpi.min_samples
    spec["alerts"]["min_samples"] = 400
    [rule] = alerts_named(rules_of(config(tmp_path, spec), "m"), "MlwatchKPIBelowThreshold")
    assert (
        rule.expr.endswith(gate + "400")
        and "at least 400 labelled" in rule.annotations["description"]
    )


def test_drift_alerts_and_their_thresholds(tmp_path: Path) -> None:
    spec = {
        "name": "m",
        **MONITORED,
        "drift": {"drift_share": 0.4},
        "alerts": {"drift": {"for": "45m"}},
    }
    rules = rules_of(config(tmp_path, spec), "m")
    [feature] = alerts_named(rules, "MlwatchFeatureDrift")
    [dataset] = alerts_named(rules, "MlwatchDatasetDrift")
    assert feature.for_s == dataset.for_s == 2700 and dataset.expr.endswith(">= 0.4")
    spec["alerts"] = {"drift": {"share": 0.2}}
    [dataset] = alerts_named(rules_of(config(tmp_path, spec), "m"), "MlwatchDatasetDrift")
    assert dataset.expr.endswith(">= 0.2")
    spec["alerts"] = {"drift": False}
    assert not alerts_named(rules_of(config(tmp_path, spec), "m"), "MlwatchFeatureDrift")


def test_retrain_labels(tmp_path: Path) -> None:
    alerts: dict[str, Any] = {
        "kpis": {"accuracy": 0.8},
        "latency": {"threshold": "1s"},
        "slo": {s: {"objective": 0.99} for s in ("availability", "quality")},
    }
    spec = {"name": "m", **MONITORED, "alerts": alerts}
    retrain = {r.alert for r in rules_of(config(tmp_path, spec), "m") if r.labels.get("retrain")}
    assert retrain == {
        "MlwatchFeatureDrift",
        "MlwatchDatasetDrift",
        "MlwatchKPIBelowThreshold",
        "MlwatchQualityBudgetBurn",
    }
    alerts["retrain_on"] = ["drift"]
    retrain = {r.alert for r in rules_of(config(tmp_path, spec), "m") if r.labels.get("retrain")}
    assert retrain == {"MlwatchFeatureDrift", "MlwatchDatasetDrift"}
    alerts["retrain_on"] = []
    assert not any(r.labels.get("retrain") for r in rules_of(config(tmp_path, spec), "m"))


def test_every_alert_carries_severity_annotations_and_model(tmp_path: Path) -> None:
    cfg = load_config(Path(__file__).parents[2] / "alerts/example.mlwatch.yaml", env={})
    groups = build_groups(cfg, Options(runbook_url="https://runbooks.example/mlwatch.md"))
    assert [g.name for g in groups] == ["mlwatch-model-churn", "mlwatch-model-eta", "mlwatch"]
    for group in groups:
        for rule in group.rules:
            if rule.record:
                assert "by (model, version, environment)" in rule.expr
                continue
            assert rule.labels["severity"] in ("page", "ticket", "warning")
            assert set(rule.annotations) == {"summary", "description", "runbook_url"}
            assert "$value" in rule.annotations["description"]
            assert rule.annotations["runbook_url"] == (
                f"https://runbooks.example/mlwatch.md#{rule.alert.lower()}"  # type: ignore[union-attr]
            )
            if group.name != "mlwatch":
                # a static label, or kept from the series (the recorded ratios keep both)
                assert "model" in rule.labels or "by (model" in rule.expr or slo.RECORD in rule.expr


def test_the_mlwatch_group_uses_the_job_and_the_spool_bound(tmp_path: Path) -> None:
    cfg = config(tmp_path, spool_max_bytes=1 << 30, spool_segment_bytes=1 << 20)
    rules = rules_of(cfg, job="ml-sidecar")
    assert [r.alert for r in rules] == [
        "MlwatchSidecarDown",
        "MlwatchEventsDropped",
        "MlwatchSpoolNearFull",
        "MlwatchSinkLagging",
        "MlwatchSinkErrors",
    ]
    assert rules[0].expr == 'up{job="ml-sidecar"} == 0 or absent(up{job="ml-sidecar"})'
    assert all('job="ml-sidecar"' in r.expr for r in rules)
    assert rules[2].expr.endswith("> 0.8 * 1073741824")
    assert rules[3].expr.endswith("> 0.25 * 1073741824")


def test_job_alerts_follow_the_schedule(tmp_path: Path) -> None:
    spec = {"name": "a.b", **MONITORED, "schedule": "10m", "alerts": {"job_stale_periods": 3}}
    rules = rules_of(config(tmp_path, spec), "a.b")
    [failing] = alerts_named(rules, "MlwatchJobFailing")
    [stale, never] = alerts_named(rules, "MlwatchJobStale")
    assert 'exported_job=~"(drift|kpi):a\\\\.b",result="failed"}[20m]' in failing.expr
    assert stale.expr.endswith("> 1800") and stale.labels["model"] == "a.b"
    assert "unless on (exported_job, environment)" in never.expr and never.for_s == 1800
    assert period_s(Monitoring(cron="0 * * * *", every_s=None)) == 3600
    assert period_s(Monitoring(cron="0 9 * * 1-5", every_s=None)) == 3 * 86400  # Friday to Monday
    assert period_s(Monitoring(every_s=90.0)) == 90


def test_a_model_without_monitoring_has_no_scheduler_alerts(tmp_path: Path) -> None:
    rules = rules_of(config(tmp_path, {"name": "m", "alerts": {}}), "m")
    assert [r.alert for r in rules] == ["MlwatchNoTraffic", "MlwatchHighErrorRatio"]
    assert not build_groups(config(tmp_path, {"name": "m"}), Options())[:-1]  # no section


@pytest.mark.parametrize(
    ("spec", "key", "words"),
    [
        (
            {"task": "regression", **MONITORED, "alerts": {"kpis": {"accuracy": 0.9}}},
            "models[0].alerts.kpis.accuracy",
            "not a KPI of a regression model",
        ),
        (
            {**MONITORED, "alerts": {"kpis": {"mae": 2}}},
            "models[0].alerts.kpis.mae",
            "not a KPI of a classification model",
        ),
        (
            {"alerts": {"kpis": {"accuracy": 0.9}}},
            "models[0].alerts.kpis.accuracy",
            "monitoring section",
        ),
        (
            {"task": "regression", "alerts": {"slo": {"quality": {"objective": 0.9}}}},
            "models[0].alerts.slo.quality.tolerance",
            "needs a tolerance",
        ),
        (
            {"alerts": {"slo": {"quality": {"objective": 0.9, "tolerance": 1}}}},
            "models[0].alerts.slo.quality.tolerance",
            "regression models only",
        ),
    ],
)
def test_a_bad_alerts_section_names_the_key(
    tmp_path: Path, spec: dict[str, Any], key: str, words: str
) -> None:
    cfg = config(tmp_path, {"name": "other"}, {"name": "m", **spec})
    with pytest.raises(ConfigError) as err:
        build_groups(cfg, Options())
    assert err.value.key == key.replace("models[0]", "models[1]")
    assert words in str(err.value) and err.value.source == str(tmp_path / "mlwatch.yaml")


def test_two_models_with_one_file_name_are_refused(tmp_path: Path) -> None:
    cfg = config(tmp_path, {"name": "a:b", "alerts": {}}, {"name": "a_b", "alerts": {}})
    with pytest.raises(ConfigError, match="same rule file") as err:
        build_groups(cfg, Options())
    assert err.value.key == "models[1].name"


def test_durations_and_numbers() -> None:
    assert [duration(s) for s in (0, 0.25, 30, 300, 5400, 86400, 90000)] == [
        "0s",
        "250ms",
        "30s",
        "5m",
        "90m",
        "1d",
        "25h",
    ]
    assert [number(v) for v in (0.05, 1 - 0.95, 14.4, 200.0)] == ["0.05", "0.05", "14.4", "200"]
