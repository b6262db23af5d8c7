"""mlwatch's own health: events lost before the sidecar, the spool, each sink's lag,
errors and deliveries, the scheduler's jobs, and the retraining triggers.

The spool's bound is not a metric: the spool panel's line comes from the config the
dashboards are built from (``spool_max_bytes``), as in the spool alert.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.models import dashboard as models

from mlwatch.grafana.common import Options, annotate, dashboard, environment_variable, uid
from mlwatch.grafana.panels import PanelBuilder, Query, graph, runbook, thresholds
from mlwatch.settings import Config

ENV = 'environment=~"$environment"'


def health(config: Config, options: Options) -> models.Dashboard:
    """The health dashboard of the sidecar and scheduler ``config`` describes."""
    board = dashboard(
        "mlwatch / health",
        uid("health"),
        "mlwatch's own pipeline: drops, spool, sinks, jobs and retraining triggers, "
        f"generated from {options.source} by mlwatch dashboards build.",
        options,
    )
    annotate(environment_variable(board), 'model=~".+"')
    board.with_row(db.Row("Capture and spool"))
    for panel in capture(config, options):
        board.with_panel(panel)
    board.with_row(db.Row("Sinks"))
    for panel in sinks(config, options):
        board.with_panel(panel)
    board.with_row(db.Row("Jobs and retraining"))
    for panel in jobs(options):
        board.with_panel(panel)
    board.with_panel(retraining())
    return board.build()


def capture(config: Config, options: Options) -> list[PanelBuilder]:
    """Is the sidecar up, are events lost, is the spool filling."""
    limit = float(config.spool_max_bytes)
    return [
        graph(
            "Sidecar up",
            f"1 while Prometheus scrapes the sidecar (job {options.job}). At 0 no metric "
            "below is current and clients buffer, then drop: restart or reschedule the pod.",
            [Query(f'up{{job="{options.job}",{ENV}}}', "{{instance}}")],
            unit="none",
            steps=thresholds((None, "red"), (1, "green")),
            links=[runbook(options, "MlwatchSidecarDown")],
            width=8,
        ),
        graph(
            "Events dropped",
            "Events clients lost before the sidecar, per second by model and reason (queue "
            "full, sidecar unreachable, refused). Any drop means gaps in metrics and events: "
            "the runbook maps each reason to its fix.",
            [
                Query(
                    f"sum by (model, reason) (rate(mlwatch_events_dropped_total{{{ENV}}}[5m]))",
                    "{{model}} {{reason}}",
                )
            ],
            unit="reqps",
            links=[runbook(options, "MlwatchEventsDropped")],
            width=8,
        ),
        graph(
            "Spool size",
            "Bytes of spool segments on disk: events not yet in every sink. The dashed "
            "line is 80 % of spool_max_bytes, where the spool alert fires; at 100 % the "
            "sidecar refuses events. Grows when a sink is slow or down: see the sink panels.",
            [Query(f"sum by (instance) (mlwatch_spool_bytes{{{ENV}}})", "{{instance}}")],
            unit="bytes",
            steps=thresholds((None, "green"), (0.8 * limit, "red")),
            links=[runbook(options, "MlwatchSpoolNearFull")],
            width=8,
        ),
    ]


def sinks(config: Config, options: Options) -> list[PanelBuilder]:
    """How far behind each sink is, how often it fails, and what it delivers."""
    lag_line = 0.25 * float(config.spool_max_bytes)
    return [
        graph(
            "Sink lag",
            "Spool bytes each sink has not consumed yet. Above the dashed line (25 % of "
            "spool_max_bytes) for 15 minutes the sink-lag alert fires: the sink is slower "
            "than the traffic or failing (the panel beside).",
            [Query(f"max by (sink) (mlwatch_sink_lag_bytes{{{ENV}}})", "{{sink}}")],
            unit="bytes",
            steps=thresholds((None, "green"), (lag_line, "red")),
            links=[runbook(options, "MlwatchSinkLagging")],
            width=8,
        ),
        graph(
            "Sink errors",
            "Failed deliveries per second by sink (each retried; nothing is lost while the "
            "spool holds the events). Lasting errors: check the sink's logs and credentials.",
            [Query(f"sum by (sink) (rate(mlwatch_sink_errors_total{{{ENV}}}[5m]))", "{{sink}}")],
            unit="reqps",
            links=[runbook(options, "MlwatchSinkErrors")],
            width=8,
        ),
        graph(
            "Sink documents",
            "Documents delivered per second by sink and result (created; duplicate after a "
            "replay), and dead letters: documents a sink refused for good, which need a "
            "look at the dead-letter stream.",
            [
                Query(
                    f"sum by (sink, result) (rate(mlwatch_sink_documents_total{{{ENV}}}[5m]))",
                    "{{sink}} {{result}}",
                ),
                Query(
                    f"sum by (sink) (rate(mlwatch_sink_dead_letters_total{{{ENV}}}[5m]))",
                    "{{sink}} dead letters",
                ),
            ],
            unit="reqps",
            width=8,
        ),
    ]


def jobs(options: Options) -> list[PanelBuilder]:
    """The scheduler's runs, how long they take, and how long since each succeeded.
    The job's name is ``exported_job`` in Prometheus (``job`` is the scrape job); each
    environment's scheduler has its own line (its jobs have the same names)."""
    return [
        graph(
            "Job runs",
            "Runs of each drift and KPI job per hour by result. Failed runs leave the drift "
            "and KPI figures stale: the scheduler's log names the error.",
            [
                Query(
                    "sum by (exported_job, environment, result) "
                    f"(increase(mlwatch_job_runs_total{{{ENV}}}[1h]))",
                    "{{exported_job}} {{environment}} {{result}}",
                )
            ],
            unit="none",
            links=[runbook(options, "MlwatchJobFailing")],
            width=8,
        ),
        graph(
            "Job duration (p95)",
            "95th percentile of each job's run time over 15 minutes. A duration near the "
            "job's period makes runs skipped: shorten the window or lengthen the schedule.",
            [
                Query(
                    "histogram_quantile(0.95, sum by (exported_job, environment, le) "
                    f"(rate(mlwatch_job_duration_seconds_bucket{{{ENV}}}[15m])))",
                    "{{exported_job}} {{environment}}",
                )
            ],
            unit="s",
            width=8,
        ),
        graph(
            "Since last success",
            "Time since each job last succeeded. Several periods of the job's schedule "
            "means stale figures: the job-stale alert fires.",
            [
                Query(
                    "time() - max by (exported_job, environment) "
                    f"(mlwatch_job_last_success_timestamp_seconds{{{ENV}}})",
                    "{{exported_job}} {{environment}}",
                )
            ],
            unit="s",
            links=[runbook(options, "MlwatchJobStale")],
            width=8,
        ),
    ]


def retraining() -> PanelBuilder:
    """How the retraining triggers ended, and those still waiting."""
    return graph(
        "Retraining triggers",
        "Retraining triggers per hour by target and result (delivered, rejected, "
        "failed, dry_run, suppressed), and those waiting for delivery. Failed or long "
        "pending: check the target's credentials (mlwatch retrain).",
        [
            Query(
                f"sum by (target, result) (increase(mlwatch_retrain_triggers_total{{{ENV}}}[1h]))",
                "{{target}} {{result}}",
            ),
            Query(f"sum(mlwatch_retrain_triggers_pending{{{ENV}}})", "pending"),
        ],
        unit="none",
        width=24,
    )
