"""One model's rule group: drift, KPIs, serving health, its jobs and its SLOs.

The alerts that need the scheduler (drift, KPIs, jobs) exist only for a model with a
monitoring section; asking for KPI alerts without one, a KPI of the other task, or a
quality SLO without the tolerance a regression model needs is a configuration error
naming the key, found when the rules are built because only then are the task and the
monitoring section known together with the alerts.
"""

from __future__ import annotations

from mlwatch.alerting import slo as slos
from mlwatch.alerting.rules import Group, Options, Rule, alert, duration, number, percent
from mlwatch.alerting.rules_jobs import job_alerts
from mlwatch.alerting.rules_service import service_alerts
from mlwatch.errors import ConfigError
from mlwatch.settings import ModelSpec
from mlwatch.settings.alerts import ERROR_KPIS, AlertSpec

REGRESSION_KPIS = frozenset({"mae", "rmse", "mape", "r2"})


def model_group(spec: ModelSpec, at: str, options: Options, source: str | None) -> Group:
    """The group of ``spec`` (at ``models[i]`` in the config): recording rules first, so
    the burn-rate alerts read ratios of the same evaluation."""
    alerts = spec.alerts
    assert alerts is not None
    _check(spec, alerts, at, source)
    rules: list[Rule] = []
    for objective in alerts.slos:
        rules += slos.recording_rules(objective, spec.name)
    if spec.monitoring is not None:
        rules += drift_alerts(spec.name, alerts, spec.monitoring.drift_share, options)
        min_samples = alerts.min_samples or spec.monitoring.kpi_min_samples
        rules += kpi_alerts(spec.name, alerts, min_samples, options)
    rules += service_alerts(spec.name, alerts, options)
    for objective in alerts.slos:
        retrain = objective.name == "quality" and "quality" in alerts.retrain_on
        rules += slos.burn_alerts(objective, spec.name, options, retrain)
    if spec.monitoring is not None:
        rules += job_alerts(spec.name, spec.monitoring, alerts.job_stale_periods, options)
    return Group(
        name=f"mlwatch-model-{spec.name}",
        file=f"model-{spec.name.replace(':', '_')}.rules.yml",
        rules=tuple(rules),
    )


def _check(spec: ModelSpec, alerts: AlertSpec, at: str, source: str | None) -> None:
    """What the alerts section cannot check alone: KPIs against the task and the
    monitoring section, the quality SLO's tolerance against the task."""
    regression = spec.task == "regression"
    for name, _ in alerts.kpis:
        if spec.monitoring is None:
            raise ConfigError(
                f"{at}.alerts.kpis.{name}",
                "KPIs come from the scheduler: the model needs a monitoring section "
                "(reference, schedule, window)",
                source=source,
            )
        if (name in REGRESSION_KPIS) != regression:
            raise ConfigError(
                f"{at}.alerts.kpis.{name}",
                f"{name} is not a KPI of a {spec.task} model",
                source=source,
            )
    if alerts.slo("quality") is not None and regression != (alerts.quality_tolerance is not None):
        message = (
            "a regression model's quality SLO needs a tolerance (a prediction within it of "
            "the label is correct)"
            if regression
            else "a tolerance applies to regression models only (a classifier's prediction "
            "is correct when it equals the label)"
        )
        raise ConfigError(f"{at}.alerts.slo.quality.tolerance", message, source=source)


def drift_alerts(model: str, alerts: AlertSpec, drift_share: float, options: Options) -> list[Rule]:
    """A feature flagged by the drift job, and the share of drifted features, each held
    for ``drift.for`` (several scheduler runs, so that one noisy window does not retrain)."""
    if not alerts.drift:
        return []
    share = alerts.drift_share if alerts.drift_share is not None else drift_share
    held = duration(alerts.drift_for_s)
    retrain = {"retrain": "true"} if "drift" in alerts.retrain_on else {}
    sel = f'model="{model}"'
    return [
        alert(
            "MlwatchFeatureDrift",
            f"max by (model, version, environment, feature) (mlwatch_feature_drift_detected{{{sel}}}) == 1",
            options=options,
            severity="warning",
            for_s=alerts.drift_for_s,
            labels=retrain,
            summary="Feature {{ $labels.feature }} of {{ $labels.model }} "
            "{{ $labels.version }} drifted",
            description="The drift job has flagged feature {{ $labels.feature }} of model "
            "{{ $labels.model }} version {{ $labels.version }} as drifted "
            f"(mlwatch_feature_drift_detected = {{{{ $value }}}}) for {held}.",
        ),
        alert(
            "MlwatchDatasetDrift",
            f"max by (model, version, environment) (mlwatch_dataset_drift_share{{{sel}}}) >= {number(share)}",
            options=options,
            severity="ticket",
            for_s=alerts.drift_for_s,
            labels=retrain,
            summary="Dataset drift on {{ $labels.model }} {{ $labels.version }}",
            description="{{ $value | humanizePercentage }} of the features of model "
            "{{ $labels.model }} version {{ $labels.version }} drifted, at or above "
            f"{percent(share)}, for {held}.",
        ),
    ]


def kpi_alerts(model: str, alerts: AlertSpec, min_samples: int, options: Options) -> list[Rule]:
    """Each KPI past its threshold (below, or above for an error KPI), only when the
    window behind it had ``min_samples`` labelled predictions: a KPI of ten labels says
    little, and must not page anyone or retrain a model."""
    retrain = {"retrain": "true"} if "quality" in alerts.retrain_on else {}
    sel = f'model="{model}"'
    out = []
    for kpi, threshold in alerts.kpis:
        above = kpi in ERROR_KPIS
        word, op = ("above", ">") if above else ("below", "<")
        out.append(
            alert(
                "MlwatchKPIAboveThreshold" if above else "MlwatchKPIBelowThreshold",
                f'max by (model, version, environment, kpi) (mlwatch_model_kpi{{{sel},kpi="{kpi}"}}) '
                f"{op} {number(threshold)}\nand on (model, version, environment)\n"
                f"max by (model, version, environment) (mlwatch_model_kpi_samples{{{sel}}}) "
                f">= {min_samples}",
                options=options,
                severity="ticket",
                for_s=alerts.for_s,
                labels={"kpi": kpi, **retrain},  # one rule per KPI, told apart
                summary="{{ $labels.kpi }} of {{ $labels.model }} {{ $labels.version }} "
                f"{word} {number(threshold)}",
                description="Model {{ $labels.model }} version {{ $labels.version }} has "
                '{{ $labels.kpi }} {{ $value | printf "%.4g" }}, '
                f"{word} its threshold {number(threshold)}, on a window of at least "
                f"{min_samples} labelled predictions, for {duration(alerts.for_s)}.",
            )
        )
    return out
