"""The monitoring runs that results are written to: one per (model, version, source
run), found again by its tags or made, in the training run's experiment when MLflow has
that run, else in the monitoring experiment (made when missing).

Used by :mod:`.publish` on its one worker thread; nothing here is thread-safe. Every
MLflow call may raise: the caller counts, keeps the batch and retries.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Mapping
from typing import Any

from mlwatch.tracking.uris import mask

log = logging.getLogger("mlwatch.tracking")

RunKey = tuple[str, str, str | None]  # model, version, source (training) run


def bound_http_time(timeout_s: float) -> None:
    """Make each MLflow HTTP call end within about ``timeout_s``.

    MLflow 3's REST client reads ``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` (default 7, with
    backoff: minutes) and ``MLFLOW_HTTP_REQUEST_TIMEOUT`` (default 120 s) from the
    environment at every request and takes no per-client setting, so they are set here,
    only when the user has not set them: no retries (mlwatch retries itself, without holding
    a thread in urllib3's sleeps) and the timeout. A ``file:`` URI given to
    mlwatch is an explicit choice of MLflow's file store, which MLflow refuses unless
    ``MLFLOW_ALLOW_FILE_STORE`` is set.
    """
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(max(1, math.ceil(timeout_s))))


def error_code(exc: BaseException) -> str | None:
    """MLflow's error code of ``exc`` (``RESOURCE_DOES_NOT_EXIST``, …), None without one."""
    return getattr(exc, "error_code", None)


def quoted(value: str) -> str | None:
    """``value`` as a string literal of MLflow's search syntax, None when it cannot be.

    >>> quoted("churn"), quoted("it's"), quoted("a'b\\"c")
    ("'churn'", '"it\\'s"', None)
    """
    for quote in ("'", '"'):
        if quote not in value and "\\" not in value:
            return f"{quote}{value}{quote}"
    return None


class MonitoringRuns:
    """The monitoring run of each (model, version, source run), cached once found."""

    def __init__(
        self,
        tracking_uri: str | None,
        experiment: str,
        timeout_s: float,
        tell: Callable[..., None],
    ) -> None:
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.timeout_s = timeout_s
        self._tell = tell  # log a warning the first time something happens
        self._where = mask(tracking_uri or "MLflow's default tracking URI")
        self._client: Any = None
        self._runs: dict[RunKey, str] = {}
        self._experiment_id: str | None = None

    def client(self) -> Any:
        """The ``MlflowClient``, made on first use (MLflow is imported then)."""
        if self._client is None:
            bound_http_time(self.timeout_s)
            if self.tracking_uri and self.tracking_uri.startswith("file:"):
                os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(tracking_uri=self.tracking_uri)
        return self._client

    def forget(self, run: RunKey) -> None:
        """Look ``run`` up again next time (MLflow refused a batch: the run may be gone)."""
        self._runs.pop(run, None)

    def run_id(self, run: RunKey) -> str:
        """The monitoring run of ``run``: found by its tags, else made."""
        if run in self._runs:
            return self._runs[run]
        model, version, source = run
        tags = {"mlwatch.model": model, "mlwatch.version": version}
        if source:
            tags["mlwatch.source_run"] = source
        experiment_id, parent = self._experiment_of(source)
        run_id = self._find(experiment_id, tags)
        if run_id is None:
            if parent:
                tags["mlflow.parentRunId"] = parent
            made = self.client().create_run(
                experiment_id, tags=tags, run_name=f"mlwatch {model} {version}"
            )
            run_id = str(made.info.run_id)
        self._runs[run] = run_id
        return run_id

    def _experiment_of(self, source: str | None) -> tuple[str, str | None]:
        """The experiment of the monitoring run, and its parent run: the source run's
        experiment when MLflow has that run, else ``experiment`` (made when missing)."""
        client = self.client()
        if source:
            try:
                return str(client.get_run(source).info.experiment_id), source
            except Exception as exc:
                if error_code(exc) != "RESOURCE_DOES_NOT_EXIST":
                    raise
                self._tell(
                    f"no run {source}", "MLflow results: no run %s at %s", source, self._where
                )
        if self._experiment_id is None:
            found = client.get_experiment_by_name(self.experiment)
            if found is None:
                try:
                    self._experiment_id = str(client.create_experiment(self.experiment))
                except Exception as exc:  # made meanwhile by another process
                    if error_code(exc) != "RESOURCE_ALREADY_EXISTS":
                        raise
                    found = client.get_experiment_by_name(self.experiment)
            if found is not None:
                self._experiment_id = str(found.experiment_id)
        assert self._experiment_id is not None
        return self._experiment_id, None

    def _find(self, experiment_id: str, tags: Mapping[str, str]) -> str | None:
        """The oldest active run with ``tags`` (several processes that made one each at
        once agree on the oldest)."""
        terms = [(k, quoted(v)) for k, v in tags.items()]
        runs = self.client().search_runs(
            [experiment_id],
            filter_string=" and ".join(f"tags.`{k}` = {q}" for k, q in terms if q),
            max_results=50,
            order_by=["attributes.start_time ASC"],
        )
        for found in runs:
            if all(found.data.tags.get(k) == v for k, v in tags.items()):
                return str(found.info.run_id)
        return None
