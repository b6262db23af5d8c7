"""A model's performance from delayed ground truth: each KPI with its confidence interval
and threshold, and the labelled predictions behind them.

The KPIs come from the scheduler's KPI job (``mlwatch_model_kpi``, its interval
``mlwatch_model_kpi_interval{bound}``, its sample size ``mlwatch_model_kpi_samples``); the
labels from the sidecar (``mlwatch_feedback_total``, and
``mlwatch_labelled_predictions_total{outcome}`` once a quality SLO is set) and how late
they come (``mlwatch_label_delay_seconds{quantile}``, from the KPI job).
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.models import dashboard as models

from mlwatch.alerting.rules import number
from mlwatch.grafana.common import Options, annotate, dashboard, model_variables, selector, uid
from mlwatch.grafana.panels import PanelBuilder, Query, graph, runbook, thresholds
from mlwatch.settings import ModelSpec
from mlwatch.settings.alerts import ERROR_KPIS

#: The KPIs drawn when the alerts section names none: the headline KPI of each task.
DEFAULT_KPIS = {"classification": ("accuracy",), "regression": ("mae",)}


def performance(spec: ModelSpec, options: Options) -> models.Dashboard:
    """The performance dashboard of ``spec`` (a model with a monitoring section)."""
    board = dashboard(
        f"mlwatch / {spec.name} / performance",
        uid("performance", spec.name),
        f"KPIs of model {spec.name} from delayed ground truth, with confidence intervals, "
        f"generated from {options.source} by mlwatch dashboards build.",
        options,
    )
    annotate(model_variables(board, spec.name), 'model="$model"')
    board.with_row(db.Row("KPIs"))
    for kpi, line in kpis(spec):
        board.with_panel(kpi_panel(kpi, line, options))
    board.with_row(db.Row("Ground truth"))
    for panel in labels(spec, options):
        board.with_panel(panel)
    return board.build()


def kpis(spec: ModelSpec) -> list[tuple[str, float | None]]:
    """The KPIs with a threshold in the alerts section, or the task's headline KPI."""
    if spec.alerts is not None and spec.alerts.kpis:
        return [(name, value) for name, value in spec.alerts.kpis]
    return [(name, None) for name in DEFAULT_KPIS.get(spec.task, ())]


def kpi_panel(kpi: str, line: float | None, options: Options) -> PanelBuilder:
    """A KPI per version between its interval bounds, red past the threshold."""
    above = kpi in ERROR_KPIS
    sel, bound = selector(kpi=kpi), "mlwatch_model_kpi_interval"
    steps, crossing = None, ""
    if line is not None:
        steps = (
            thresholds((None, "green"), (line, "red"))
            if above
            else thresholds((None, "red"), (line, "green"))
        )
        crossing = f"The alert fires {'above' if above else 'below'} {number(line)} (dashed). "
    return graph(
        kpi,
        f"{kpi} of each window with enough labels, per version, between the bounds of its "
        "confidence interval. "
        + crossing
        + "A narrow interval past the line is a real drop: look at the drift dashboard "
        "for the cause; a wide one means too few labels to tell.",
        [
            Query(f"max by (version) (mlwatch_model_kpi{{{sel}}})", "{{version}}"),
            Query(
                f"max by (version) ({bound}{{{selector(kpi=kpi, bound='lower')}}})",
                "{{version}} lower",
            ),
            Query(
                f"max by (version) ({bound}{{{selector(kpi=kpi, bound='upper')}}})",
                "{{version}} upper",
            ),
        ],
        unit="none",
        steps=steps,
        links=[
            runbook(options, "MlwatchKPIAboveThreshold" if above else "MlwatchKPIBelowThreshold")
        ],
        width=8,
    )


def labels(spec: ModelSpec, options: Options) -> list[PanelBuilder]:
    """The labelled predictions behind the KPIs, and the feedback that brings them."""
    assert spec.monitoring is not None
    minimum = spec.monitoring.kpi_min_samples
    if spec.alerts is not None and spec.alerts.min_samples is not None:
        minimum = spec.alerts.min_samples
    sel = selector()
    return [
        graph(
            "Labelled samples behind the KPIs",
            "Labelled predictions in the window the KPIs were computed on, per version. "
            f"Below {minimum} (dashed) the KPI alerts stay quiet: a KPI of a few labels says "
            "little. Few labels for long: check that feedback is sent (the panel beside).",
            [Query(f"max by (version) (mlwatch_model_kpi_samples{{{sel}}})", "{{version}}")],
            unit="none",
            steps=thresholds((None, "orange"), (minimum, "green")),
        ),
        graph(
            "Ground truth received",
            "Feedback records per second for the model (mlwatch_feedback_total), and "
            "labelled predictions by outcome where a quality SLO makes the sidecar score "
            "them. Zero feedback for long means the labelling pipeline stopped.",
            [
                Query(
                    'sum(rate(mlwatch_feedback_total{model="$model",environment=~"$environment"}[5m]))',
                    "feedback",
                ),
                Query(
                    f"sum by (version, outcome) (rate(mlwatch_labelled_predictions_total{{{sel}}}[5m]))",
                    "{{version}} {{outcome}}",
                ),
            ],
            unit="reqps",
            links=[runbook(options, "MlwatchQualityBudgetBurn")],
        ),
        graph(
            "Label delay",
            "How long the labels behind the KPIs took to arrive, from the prediction to its "
            "feedback, per version (median, 90th and 99th percentile). The KPIs describe "
            "the past by this much; a delay that keeps growing means the labelling "
            "pipeline is falling behind, and the KPI alerts will speak late.",
            [
                Query(
                    f"max by (version, quantile) (mlwatch_label_delay_seconds{{{sel}}})",
                    "{{version}} p{{quantile}}",
                )
            ],
            unit="s",
        ),
    ]
