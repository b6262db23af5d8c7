"""A model's overview: is it served, how fast and how well, which version, and how much of
its error budget is left.

Each panel reads one metric of docs/contracts.md. The SLO panels read the same objectives
as the alert rules (the model's ``alerts.slo``) and compute the ratio over the 30 days of
the objective; the burn-rate panel reads the recording rules ``mlwatch alerts build``
writes, so it is empty until those rules are loaded.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.models import dashboard as models

from mlwatch.alerting import slo as slos
from mlwatch.alerting.rules import number, percent
from mlwatch.grafana.common import Options, annotate, dashboard, model_variables, selector, uid
from mlwatch.grafana.panels import PanelBuilder, Query, graph, rows, runbook, single, thresholds
from mlwatch.settings import ModelSpec
from mlwatch.settings.alerts import AlertSpec, SLOSpec

BY = "sum by (model, version)"
QUANTILES = (0.5, 0.95, 0.99)


def overview(spec: ModelSpec, options: Options) -> models.Dashboard:
    """The overview dashboard of ``spec``."""
    board = dashboard(
        f"mlwatch / {spec.name} / overview",
        uid("overview", spec.name),
        f"Traffic, errors, latency, predictions and SLOs of model {spec.name}, "
        f"generated from {options.source} by mlwatch dashboards build.",
        options,
    )
    annotate(model_variables(board, spec.name), 'model="$model"')
    board.with_row(db.Row("Serving"))
    for panel in serving(spec, options):
        board.with_panel(panel)
    board.with_panel(served_versions(options))
    if spec.alerts is not None and spec.alerts.slos:
        board.with_row(db.Row("Service-level objectives (30 days)"))
        for objective in spec.alerts.slos:
            for panel in slo_status(spec.name, objective, options):
                board.with_panel(panel)
        board.with_panel(burn_rates(spec.alerts, options))
    return board.build()


def serving(spec: ModelSpec, options: Options) -> list[PanelBuilder]:
    """Traffic, error ratio, latency quantiles and what the model predicts."""
    sel = selector()
    rate = f"rate(mlwatch_predictions_total{{{sel}}}[5m])"
    alerts = spec.alerts or AlertSpec()
    error_line = alerts.error_ratio if alerts.error_ratio is not None else 1.0
    latency = "mlwatch_prediction_latency_seconds_bucket"
    return [
        graph(
            "Traffic",
            "Predictions per second by version and outcome. A drop to zero means the "
            "model is not called or its events do not reach the sidecar: check the "
            "serving pods, then mlwatch_events_dropped_total on the health dashboard.",
            [Query(f"sum by (version, status) ({rate})", "{{version}} {{status}}")],
            unit="reqps",
            stack=True,
            links=[runbook(options, "MlwatchNoTraffic")],
        ),
        graph(
            "Error ratio",
            "Share of calls that raised, per version, over 5m. The dashed line is the "
            f"error-ratio alert's threshold ({percent(error_line)}). A rise after a "
            "deployment points at the new version: compare versions, read the errors in "
            "the events, roll back if it keeps rising.",
            [
                Query(
                    f"{BY} (rate(mlwatch_predictions_total{{{selector(status='error')}}}[5m]))"
                    f" / {BY} ({rate})",
                    "{{version}}",
                )
            ],
            unit="percentunit",
            steps=thresholds((None, "green"), (error_line, "red")),
            links=[runbook(options, "MlwatchHighErrorRatio")],
        ),
        graph(
            "Latency",
            "Quantiles of the monitored call's duration over 5m, per version. p99 above "
            "the latency alert's threshold for long means slow requests for users: look "
            "for saturation (CPU, batch sizes) or a slower new version.",
            [
                Query(
                    f"histogram_quantile({q}, sum by (version, le) (rate({latency}{{{sel}}}[5m])))",
                    f"{{{{version}}}} p{q * 100:g}",
                )
                for q in QUANTILES
            ],
            unit="s",
            steps=_latency_steps(alerts),
            links=[runbook(options, "MlwatchHighLatency")],
        ),
        prediction_mix(spec),
    ]


def _latency_steps(alerts: AlertSpec) -> db.ThresholdsConfig | None:
    if alerts.latency_threshold_s is None:
        return None
    return thresholds((None, "green"), (alerts.latency_threshold_s, "red"))


def prediction_mix(spec: ModelSpec) -> PanelBuilder:
    """A classifier's share of each class; a regression model's value quantiles. A sudden
    change of the mix is often the first sign of drift, before the drift job runs."""
    sel = selector()
    if spec.task == "regression":
        values = f"rate(mlwatch_prediction_value_bucket{{{sel}}}[5m])"
        return graph(
            "Predicted values",
            "Quantiles of the predicted value over 5m, per version (from the "
            "mlwatch_prediction_value buckets, so as precise as the buckets). A shift "
            "without a change of version means the inputs changed: see the drift dashboard.",
            [
                Query(
                    f"histogram_quantile({q}, sum by (version, le) ({values}))",
                    f"{{{{version}}}} p{q * 100:g}",
                )
                for q in (0.05, 0.5, 0.95)
            ],
            unit="none",
        )
    return graph(
        "Predicted classes",
        "Share of each predicted class over 5m, per version. A class growing or "
        "vanishing without a new version means the inputs changed: see the drift dashboard.",
        [
            Query(
                f"sum by (version, class) (rate(mlwatch_predicted_class_total{{{sel}}}[5m])) "
                f"/ on (version) group_left sum by (version) "
                f"(rate(mlwatch_predicted_class_total{{{sel}}}[5m]))",
                "{{version}} {{class}}",
            )
        ],
        unit="percentunit",
        stack=True,
    )


def served_versions(options: Options) -> PanelBuilder:
    """The versions served in the last 5 minutes with their code version and run."""
    sel = selector()
    return rows(
        "Versions served",
        "Each version that served a prediction in the last 5 minutes, with its code "
        "version and experiment run (mlwatch_model_info). Two rows during a rollout are "
        "expected; an unexpected run id means the wrong artifact is deployed.",
        Query(
            f"max by (model, version, code_version, run_id) (mlwatch_model_info{{{sel}}}) "
            f"and on (model, version) {BY} (rate(mlwatch_predictions_total{{{sel}}}[5m])) > 0"
        ),
        hide=("Time", "Value"),
        width=24,
    )


def slo_status(model: str, objective: SLOSpec, options: Options) -> list[PanelBuilder]:
    """The share of good events over the 30 days against the objective, and the error
    budget left (1 is untouched, 0 spent, below 0 overspent)."""
    budget = 1.0 - objective.objective
    ratio = slos.error_ratio(
        objective, model, f"{slos.PERIOD_DAYS}d", match='environment=~"$environment"'
    )
    link = [runbook(options, slos.ALERT_NAMES[objective.name])]
    name = objective.name.capitalize()
    return [
        single(
            f"{name} SLO ({percent(objective.objective)})",
            f"Share of good events over {slos.PERIOD_DAYS} days per version; red below "
            f"the objective of {percent(objective.objective)}.",
            Query(f"1 - ({ratio})", "{{version}}"),
            unit="percentunit",
            steps=thresholds((None, "red"), (objective.objective, "green")),
            links=link,
        ),
        single(
            f"{name} error budget left",
            f"Share of the {slos.PERIOD_DAYS}-day error budget ({percent(budget)} of "
            "events) not yet spent. Below 25 %, slow down risky changes; at 0 the SLO is "
            "missed: the burn-rate alert's runbook says what to look at.",
            Query(f"1 - ({ratio}) / {number(budget)}", "{{version}}"),
            unit="percentunit",
            steps=thresholds((None, "red"), (0.0, "orange"), (0.25, "green")),
            links=link,
        ),
    ]


def burn_rates(alerts: AlertSpec, options: Options) -> PanelBuilder:
    """How fast each SLO's budget burns over 1h, with the page threshold (14.4x)."""
    queries = [
        Query(
            f"{slos.RECORD}1h{{{selector(slo=o.name)}}} / {number(1.0 - o.objective)}",
            f"{o.name} {{{{version}}}}",
        )
        for o in alerts.slos
    ]
    return graph(
        "Error-budget burn rate (1h)",
        "The error ratio over the last hour divided by the budget: at 1 the budget lasts "
        f"the {slos.PERIOD_DAYS} days, above {number(slos.PAGE[0].factor)} (dashed) it is "
        "gone in about two days and the burn-rate alert pages. Needs the recording rules "
        "of mlwatch alerts build loaded in Prometheus.",
        queries,
        unit="x",
        steps=thresholds(
            (None, "green"), (slos.PAGE[1].factor, "orange"), (slos.PAGE[0].factor, "red")
        ),
        width=24,
        links=[runbook(options, name) for name in slos.ALERT_NAMES.values()],
    )
