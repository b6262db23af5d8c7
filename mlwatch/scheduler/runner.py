"""Run the drift and KPI jobs on a schedule (APScheduler 3.x).

Inside the sidecar (``scheduler: true``, the default, when a model has a monitoring
section) or standalone (``mlwatch scheduler``, :mod:`mlwatch.cli.scheduler`) against the
same data directory.

Policy, stated once:

- Each model gets two jobs, ``drift:<model>`` and ``kpi:<model>`` (and ``compare:<model>``
  with a ``compare`` section), on its ``schedule``
  (an interval, or a crontab expression in UTC), and a first run shortly after start.
- **Never two runs of the same job at once** (``max_instances=1``): a run still going
  when the next one is due makes APScheduler skip the new one; the skip is counted
  (``mlwatch_job_runs_total{result="skipped"}``) and logged.
- **Misfires coalesce**: runs missed while the process was busy or asleep collapse into
  one (``coalesce=True``), which still runs if it is at most one period late
  (``misfire_grace_time``), else it is counted as ``missed``.
- Duration (``mlwatch_job_duration_seconds{job,environment}``), outcome
  (``mlwatch_job_runs_total{job,environment,result="ok"|"failed"|"skipped"|"missed"}``)
  and the time of the last success
  (``mlwatch_job_last_success_timestamp_seconds{job,environment}``) are metrics; a
  failure is logged with its reason and the next run tries again. ``environment`` is the
  scheduler's (the one its jobs compute over): the dev and prod schedulers' jobs have the
  same names, and one's stale job must not hide behind the other's fresh one.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from mlwatch.scheduler.grafana_job import GrafanaJob
from mlwatch.scheduler.jobs import Jobs
from mlwatch.settings import Config, Monitoring
from mlwatch.store import EmbeddedStore
from mlwatch.times import format_us

log = logging.getLogger("mlwatch.scheduler")

GRAFANA_JOB = "grafana:sync"
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


def trigger_of(mon: Monitoring) -> Any:
    """The APScheduler trigger of a monitoring section."""
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    if mon.cron:
        return CronTrigger.from_crontab(mon.cron, timezone="UTC")
    return IntervalTrigger(seconds=mon.every_s or 300.0, timezone="UTC")


def grace_of(mon: Monitoring) -> int:
    """How late a coalesced run may start: one period (cron: a minute)."""
    return max(1, int(mon.every_s)) if mon.every_s else 60


class Scheduler:
    """The jobs of every monitored model on one APScheduler ``BackgroundScheduler``."""

    def __init__(
        self,
        config: Config,
        store: EmbeddedStore,
        registry: CollectorRegistry,
        *,
        jobs: Jobs | None = None,
    ) -> None:
        from apscheduler.schedulers.background import BackgroundScheduler

        self.jobs = jobs if jobs is not None else Jobs(config, store, registry)
        self.jobs.prepare()  # a bad reference is a configuration error, now
        self._lock_fd: int | None = None
        #: The last run of each job: when, ok or failed (with the error), or why it was empty.
        self.last_runs: dict[str, dict[str, Any]] = {}
        self.environment = config.environment
        self.duration = Histogram(
            "mlwatch_job_duration_seconds",
            "Duration of a job run",
            ["job", "environment"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.runs = Counter(
            "mlwatch_job_runs",
            "Job runs by result (ok, failed, skipped: "
            "the previous run was still going, missed: too late to run)",
            ["job", "environment", "result"],
            registry=registry,
        )
        self.last_success = Gauge(
            "mlwatch_job_last_success_timestamp_seconds",
            "When a job last succeeded (Unix time)",
            ["job", "environment"],
            registry=registry,
        )
        self.scheduler = BackgroundScheduler(
            timezone="UTC", job_defaults={"coalesce": True, "max_instances": 1}
        )
        for spec in self.jobs.monitored():
            mon = spec.monitoring
            assert mon is not None
            kinds: list[tuple[str, Callable[[str], Any]]] = [
                ("drift", self.jobs.drift),
                ("kpi", self.jobs.kpis),
            ]
            if mon.compare is not None:
                kinds.append(("compare", self.jobs.compare))
            for kind, run in kinds:
                job_id = f"{kind}:{spec.name}"
                self.scheduler.add_job(
                    self._wrap(job_id, run, spec.name),
                    trigger_of(mon),
                    id=job_id,
                    name=job_id,
                    misfire_grace_time=grace_of(mon),
                )
                for result in ("ok", "failed", "skipped", "missed"):
                    self.runs.labels(job_id, self.environment, result)
        self.grafana: GrafanaJob | None = None
        if config.grafana_sync_s > 0 and config.grafana_url and config.grafana_token:
            from apscheduler.triggers.interval import IntervalTrigger

            self.grafana = GrafanaJob(config, store)
            self.scheduler.add_job(
                self._wrap(GRAFANA_JOB, self.grafana, "sync"),
                IntervalTrigger(seconds=config.grafana_sync_s, timezone="UTC"),
                id=GRAFANA_JOB,
                name=GRAFANA_JOB,
            )
        from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED

        self.scheduler.add_listener(self._on_event, EVENT_JOB_MAX_INSTANCES | EVENT_JOB_MISSED)

    @property
    def job_ids(self) -> list[str]:
        return [job.id for job in self.scheduler.get_jobs()]

    def _wrap(self, job_id: str, run: Callable[[str], Any], model: str) -> Callable[[], None]:
        def job() -> None:
            start = time.perf_counter()
            error = None
            try:
                run(model)
            except Exception as exc:  # the scheduler must go on; the next run retries
                error = f"{type(exc).__name__}: {exc}"
                self.runs.labels(job_id, self.environment, "failed").inc()
                log.warning("job %s failed: %s", job_id, error)
            else:
                self.runs.labels(job_id, self.environment, "ok").inc()
                self.last_success.labels(job_id, self.environment).set(time.time())
            finally:
                took = time.perf_counter() - start
                self.duration.labels(job_id, self.environment).observe(took)
                self.last_runs[job_id] = self._outcome(job_id, error, took)

        return job

    def _outcome(self, job_id: str, error: str | None, took: float) -> dict[str, Any]:
        """A job's last run as the status endpoint shows it."""
        kind, model = job_id.split(":", 1)
        return {
            "at": format_us(time.time_ns() // 1000),
            "result": "failed" if error else "ok",
            "error": error,
            "empty": None if error else self.jobs.empty.get((kind, model)),
            "seconds": round(took, 3),
        }

    def runs_of(self, model: str) -> dict[str, dict[str, Any]]:
        """The last run of each of ``model``'s jobs (none before the first run)."""
        jobs = (f"drift:{model}", f"kpi:{model}", f"compare:{model}")
        return {job: self.last_runs[job] for job in jobs if job in self.last_runs}

    def _on_event(self, event: Any) -> None:
        from apscheduler.events import EVENT_JOB_MAX_INSTANCES

        result = "skipped" if event.code == EVENT_JOB_MAX_INSTANCES else "missed"
        self.runs.labels(event.job_id, self.environment, result).inc()
        log.warning(
            "job %s %s: %s",
            event.job_id,
            result,
            "the previous run is still going"
            if result == "skipped"
            else "too late to run (coalesced misfire beyond the grace time)",
        )

    def run_now(self) -> None:
        """Run every job once, now (on the scheduler's threads), e.g. at startup."""
        for job in self.scheduler.get_jobs():
            job.modify(next_run_time=_utcnow())

    def start(self, *, first_run_after_s: float = 10.0, owner: str = "mlwatch sidecar") -> None:
        """Start; every job runs once ``first_run_after_s`` after the start (the reference
        profile exists from then on), then on its schedule. ``owner`` names this process
        to another scheduler that finds the store taken (:func:`claim_store`)."""
        if self.jobs.monitored() or self.grafana is not None:
            self._lock_fd = claim_store(self.jobs.store.path.parent, owner)
            self.scheduler.start()
            first = _utcnow() + timedelta(seconds=first_run_after_s)
            for job in self.scheduler.get_jobs():
                job.modify(next_run_time=min(first, job.next_run_time or first))
            log.info("scheduler: %s", ", ".join(self.job_ids))

    def shutdown(self, wait: bool = True) -> None:
        """Stop scheduling; with ``wait``, let a run in progress finish (it uses the store)."""
        if self.scheduler.running:
            self.scheduler.shutdown(wait=wait)
        self.jobs.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the lock
            self._lock_fd = None


def claim_store(data_dir: Path, owner: str) -> int | None:
    """Take the data directory's scheduler lock (``scheduler.lock``), or warn that another
    scheduler runs the same jobs on this store (both then compute and store every result):
    the lock's descriptor, held until it is closed, or None."""
    from mlwatch.store import lockfile

    path = data_dir / "scheduler.lock"
    fd = lockfile.take(path, f"{owner}, pid {os.getpid()}")
    if fd is None:
        log.warning(
            "another scheduler (%s) already runs the jobs on %s; both will compute the same "
            "results: set scheduler: false in the sidecar, or stop one of them",
            lockfile.holder(path),
            data_dir,
        )
    return fd


def _utcnow() -> Any:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc)
