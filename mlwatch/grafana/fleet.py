"""Every model at once: which are served, which fail or slow down, which drift or lose
quality, with links to each model's own dashboards."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.models import dashboard as models

from mlwatch.grafana.common import Options, annotate, dashboard, fleet_variables, uid
from mlwatch.grafana.panels import PanelBuilder, Query, graph, rows
from mlwatch.settings import Config

SEL = 'model=~"$model",version=~"$version",environment=~"$environment"'


def fleet(config: Config, options: Options) -> models.Dashboard:
    """The fleet dashboard over the models of ``config`` (and any other model Prometheus
    has: the variables list what it knows)."""
    board = dashboard(
        "mlwatch / fleet",
        uid("fleet"),
        "Every monitored model side by side, generated from "
        f"{options.source} by mlwatch dashboards build.",
        options,
    )
    annotate(fleet_variables(board), 'model=~"$model"')
    for spec in config.models:
        board.link(
            db.DashboardLink(f"{spec.name} overview")
            .type(models.DashboardLinkType.LINK)
            .url(f"/d/{uid('overview', spec.name)}")
            .keep_time(True)
        )
    for panel in panels():
        board.with_panel(panel)
    return board.build()


def panels() -> list[PanelBuilder]:
    """Traffic, error ratio, p99 latency, drift share and versions, per model."""
    rate = f"rate(mlwatch_predictions_total{{{SEL}}}[5m])"
    errors = f'rate(mlwatch_predictions_total{{{SEL},status="error"}}[5m])'
    latency = f"rate(mlwatch_prediction_latency_seconds_bucket{{{SEL}}}[5m])"
    return [
        graph(
            "Traffic",
            "Predictions per second per model. A model at zero is not served or its events "
            "do not arrive: open its overview.",
            [Query(f"sum by (model) ({rate})", "{{model}}")],
            unit="reqps",
        ),
        graph(
            "Error ratio",
            "Share of calls that raised per model over 5m. Open the overview of a model "
            "that stands out.",
            [Query(f"sum by (model) ({errors}) / sum by (model) ({rate})", "{{model}}")],
            unit="percentunit",
        ),
        graph(
            "Latency p99",
            "99th percentile of each model's call duration over 5m.",
            [Query(f"histogram_quantile(0.99, sum by (model, le) ({latency}))", "{{model}}")],
            unit="s",
        ),
        graph(
            "Dataset drift share",
            "Share of each model's features flagged by its newest drift run. A model near "
            "its drift_share: open its drift dashboard.",
            [
                Query(
                    f"max by (model) (mlwatch_dataset_drift_share{{{SEL}}})",
                    "{{model}}",
                )
            ],
            unit="percentunit",
        ),
        rows(
            "Versions served",
            "Each model version that served a prediction in the last 5 minutes, with its "
            "code version and run.",
            Query(
                "max by (model, version, code_version, run_id) "
                f"(mlwatch_model_info{{{SEL}}}) and on (model, version) "
                f"sum by (model, version) ({rate}) > 0"
            ),
            hide=("Time", "Value"),
            width=24,
        ),
    ]
