"""mlwatch's own health: the sidecar scraped, events kept, the spool and the sinks.

These watch the monitor rather than a model: when they fire, the model alerts may be
silent for a reason that has nothing to do with the model. Everything is selected on the
Prometheus job that scrapes the sidecar (``--job``, default ``mlwatch``). The spool has no
metric of its bound, so the bound is the ``spool_max_bytes`` of the config the rules are
built from: build them from the sidecar's own config.
"""

from __future__ import annotations

from mlwatch.alerting.rules import Group, Options, Rule, alert, duration
from mlwatch.settings import Config

SPOOL_FULL_SHARE = 0.8  # of spool_max_bytes: ingest answers 503 at the bound
SINK_LAG_SHARE = 0.25  # of spool_max_bytes: a sink this far behind holds the spool


def self_group(config: Config, options: Options) -> Group:
    """The group ``mlwatch``."""
    job = f'job="{options.job}"'
    bound = config.spool_max_bytes
    return Group(
        name="mlwatch",
        file="mlwatch.rules.yml",
        rules=(
            _sidecar_down(options),
            alert(
                "MlwatchEventsDropped",
                "sum by (model, version, environment, reason) "
                f"(rate(mlwatch_events_dropped_total{{{job}}}[5m])) > 0",
                options=options,
                severity="warning",
                for_s=300,
                summary="Events of {{ $labels.model }} {{ $labels.version }} are dropped "
                "({{ $labels.reason }})",
                description="Clients of model {{ $labels.model }} version "
                '{{ $labels.version }} drop {{ $value | printf "%.3g" }} events/s '
                "(reason {{ $labels.reason }}) before they reach the sidecar; "
                "drift and KPIs miss them.",
            ),
            alert(
                "MlwatchSpoolNearFull",
                f"max by (instance) (mlwatch_spool_bytes{{{job}}}) > {SPOOL_FULL_SHARE:g} * {bound}",
                options=options,
                severity="ticket",
                for_s=300,
                summary="The spool of {{ $labels.instance }} is near its bound",
                description="The spool of the sidecar {{ $labels.instance }} holds "
                "{{ $value | humanize1024 }}B, more than "
                f"{SPOOL_FULL_SHARE:.0%} of spool_max_bytes ({bound} bytes); at the bound "
                "the sidecar refuses events with 503.",
            ),
            alert(
                "MlwatchSinkLagging",
                f"max by (instance, sink) (mlwatch_sink_lag_bytes{{{job}}}) "
                f"> {SINK_LAG_SHARE:g} * {bound}",
                options=options,
                severity="warning",
                for_s=900,
                summary="Sink {{ $labels.sink }} of {{ $labels.instance }} lags",
                description="Sink {{ $labels.sink }} of the sidecar {{ $labels.instance }} "
                "has {{ $value | humanize1024 }}B of the spool to deliver, more than "
                f"{SINK_LAG_SHARE:.0%} of spool_max_bytes ({bound} bytes), for 15m.",
            ),
            alert(
                "MlwatchSinkErrors",
                f"sum by (instance, sink) (rate(mlwatch_sink_errors_total{{{job}}}[5m])) > 0",
                options=options,
                severity="warning",
                for_s=900,
                summary="Sink {{ $labels.sink }} of {{ $labels.instance }} fails",
                description="Deliveries to sink {{ $labels.sink }} of the sidecar "
                '{{ $labels.instance }} fail at {{ $value | printf "%.3g" }}/s for 15m; '
                "the spool keeps the events and the sidecar retries.",
            ),
        ),
    )


def _sidecar_down(options: Options) -> Rule:
    """No sidecar to scrape, or a failing scrape: every other alert is blind then."""
    job = f'job="{options.job}"'
    return alert(
        "MlwatchSidecarDown",
        f"up{{{job}}} == 0 or absent(up{{{job}}})",
        options=options,
        severity="ticket",
        for_s=300,
        summary="No mlwatch sidecar is scraped",
        description=f"Prometheus has had no successful scrape of job {options.job}"
        "{{ with $labels.instance }} at {{ . }}{{ end }} for "
        f"{duration(300)} (up = {{{{ $value }}}}); predictions are not monitored.",
    )
