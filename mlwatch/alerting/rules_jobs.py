"""A model's drift and KPI jobs: failing, or not having succeeded for several periods.

The scheduler names its jobs ``drift:<model>`` and ``kpi:<model>`` in a label called
``job``. Prometheus keeps its own ``job`` label (the scrape job) and renames the scraped
one ``exported_job`` (``honor_labels: false``, the default and the scrape config in
exporters/prometheus), so the rules select on ``exported_job``.

A job is stale when it has not succeeded for ``job_stale_periods`` periods of its
schedule; a crontab schedule's period is its longest gap between two runs, found over a
fixed span of dates so that the rules do not depend on the day they are built.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone

from mlwatch.alerting.rules import Options, Rule, alert, duration
from mlwatch.settings import Monitoring

_CRON_START = datetime(2026, 1, 5, tzinfo=timezone.utc)  # a Monday
_CRON_SPAN = timedelta(days=62)  # two months: every gap of a monthly schedule
_CRON_MAX_RUNS = 5000  # a frequent schedule shows its gaps long before


def period_s(monitoring: Monitoring) -> float:
    """The longest time between two runs of the model's jobs."""
    if monitoring.cron is None:
        return monitoring.every_s or 300.0
    from apscheduler.triggers.cron import CronTrigger

    trigger = CronTrigger.from_crontab(monitoring.cron, timezone="UTC")
    runs: list[datetime] = []
    previous = None
    now = _CRON_START
    while len(runs) < _CRON_MAX_RUNS and now < _CRON_START + _CRON_SPAN:
        fire = trigger.get_next_fire_time(previous, now)
        if fire is None:
            break
        runs.append(fire)
        previous, now = fire, fire + timedelta(seconds=1)
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(runs)]
    return max(gaps, default=_CRON_SPAN.total_seconds())


def job_alerts(model: str, monitoring: Monitoring, periods: float, options: Options) -> list[Rule]:
    """A failed run in the last two periods (warning), and no success for ``periods``
    periods (ticket; also when the job never succeeded since the scheduler started): the
    drift and KPI gauges then show an old window, or none. By job and environment: each
    environment's scheduler runs jobs of the same names."""
    period = period_s(monitoring)
    window = duration(max(2 * period, 600.0))
    stale = periods * period
    escaped = model.replace(".", r"\\.")  # a regular expression inside a PromQL string
    jobs = f'exported_job=~"(drift|kpi):{escaped}"'
    return [
        alert(
            "MlwatchJobFailing",
            f"sum by (exported_job, environment) (increase(mlwatch_job_runs_total{{{jobs},"
            f'result="failed"}}[{window}])) > 0',
            options=options,
            severity="warning",
            labels={"model": model},
            summary="mlwatch job {{ $labels.exported_job }} is failing",
            description="The mlwatch job {{ $labels.exported_job }} failed "
            f'{{{{ $value | printf "%.0f" }}}} time(s) in the last {window}; the log of '
            "the sidecar or scheduler has the error, and mlwatch status shows the last run.",
        ),
        alert(
            "MlwatchJobStale",
            "time() - max by (exported_job, environment) "
            f"(mlwatch_job_last_success_timestamp_seconds{{{jobs}}}) > {stale:g}",
            options=options,
            severity="ticket",
            labels={"model": model},
            summary="mlwatch job {{ $labels.exported_job }} has not succeeded for "
            "{{ $value | humanizeDuration }}",
            description="The mlwatch job {{ $labels.exported_job }} last succeeded "
            "{{ $value | humanizeDuration }} ago, more than "
            f"{periods:g} periods of its schedule ({duration(stale)}); the drift and KPI "
            "metrics of the model are that old.",
        ),
        alert(  # the same alert for a job that has run but never succeeded
            "MlwatchJobStale",
            f"sum by (exported_job, environment) (mlwatch_job_runs_total{{{jobs}}}) unless on "
            f"(exported_job, environment) "
            f"mlwatch_job_last_success_timestamp_seconds{{{jobs}}}",
            options=options,
            severity="ticket",
            for_s=stale,
            labels={"model": model},
            summary="mlwatch job {{ $labels.exported_job }} has never succeeded",
            description="The mlwatch job {{ $labels.exported_job }} has run "
            '{{ $value | printf "%.0f" }} time(s) and never succeeded, for more than '
            f"{periods:g} periods of its schedule ({duration(stale)}); the drift and KPI "
            "metrics of the model are missing.",
        ),
    ]
