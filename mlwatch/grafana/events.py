"""A model's prediction events in Elasticsearch (built when the config has
``elasticsearch_url``): the failed calls, newest first and by error type, and the slow ones,
as the documents themselves, so a line on the overview leads to the requests behind it.

"Slow" is the ``slow_ms`` variable, starting on the model's latency alert threshold (else
its latency SLO's, else 1 s): Grafana's raw-data queries sort by time only, and a filter
keeps them cheap where a sort by latency over every document of the range would not be.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.models import dashboard as models

from mlwatch.alerting.rules import number
from mlwatch.grafana import es
from mlwatch.grafana.common import Options, dashboard, uid
from mlwatch.grafana.event_panels import failures, kibana, latency, latest_errors, slowest
from mlwatch.settings import ModelSpec
from mlwatch.settings.alerts import AlertSpec


def events(spec: ModelSpec, options: Options) -> models.Dashboard:
    """The events dashboard of ``spec``."""
    board = dashboard(
        f"mlwatch / {spec.name} / events",
        uid("events", spec.name),
        f"Failed and slow predictions of model {spec.name}, from its events in "
        f"Elasticsearch, generated from {options.source} by mlwatch dashboards build.",
        options,
        source=es.source(),
    )
    es.variables(board, spec.name)
    slow = slow_ms(spec.alerts or AlertSpec())
    board.with_variable(
        db.TextBoxVariable("slow_ms")
        .label("Slow from (ms)")
        .default_value(number(slow))
        .current(models.VariableOption(text=number(slow), value=number(slow)))
    )
    board.link(kibana(options, time=False))
    board.with_row(db.Row("Errors"))
    board.with_panel(failures(options)).with_panel(latest_errors(options))
    board.with_row(db.Row("Latency"))
    board.with_panel(latency(slow, options)).with_panel(slowest(options))
    return board.build()


def slow_ms(alerts: AlertSpec) -> float:
    """Where "slow" starts: the latency alert's threshold, else the latency SLO's, else 1 s."""
    slo = alerts.slo("latency")
    seconds = alerts.latency_threshold_s or (slo.threshold_s if slo else None) or 1.0
    return seconds * 1000
