"""The drift and KPI jobs and their schedule.

- :mod:`.windows` — which window a run evaluates, and where its profile comes from;
- :mod:`.reference` — a model's reference profile, computed once and kept;
- :mod:`.mlflow_reference` — reference data from an MLflow run's artifacts;
- :mod:`.jobs` — one run of a drift or KPI job: compute, store, export;
- :mod:`.results` — the result gauges and the retirement of stale series;
- :mod:`.mlflow_results` — results written back to MLflow, and their counters;
- :mod:`.runner` — the APScheduler wrapper that runs the jobs on their schedules.
"""

from mlwatch.scheduler.jobs import Jobs
from mlwatch.scheduler.runner import Scheduler
from mlwatch.scheduler.windows import window_bounds

__all__ = ["Jobs", "Scheduler", "window_bounds"]
