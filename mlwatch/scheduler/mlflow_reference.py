"""Reference data named by an MLflow model URI (``reference: {mlflow: <uri>, artifact:
<path>}``): the artifact of the run the URI names now, downloaded once per run into the
data directory (:func:`mlwatch.tracking.reference.fetch_artifact`).

The URI is resolved again at most every ``mlflow_refresh_s``, so a moved alias gives the
new run's file (and :mod:`.reference` a new profile). When MLflow does not answer, or
does not have the run or the file, :meth:`MlflowArtifacts.get` returns None and the
caller uses the profile it has: the failure is logged once when it starts and once when
it ends. Without a profile to fall back on, the caller raises
:meth:`~MlflowArtifacts.error`, a JobError that names the setting
(``models[i].reference.mlflow``) and the URI, and the next run asks MLflow again.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from pathlib import Path

from mlwatch.errors import JobError, TrackingError
from mlwatch.settings import Config, ModelSpec
from mlwatch.tracking.reference import fetch_artifact
from mlwatch.tracking.runs import bound_http_time

log = logging.getLogger("mlwatch.jobs")

MIN_DOWNLOAD_S = 60.0  # a download may take longer than one lookup


class MlflowArtifacts:
    """The reference artifacts of the models of one configuration, by model name."""

    def __init__(
        self, config: Config, cache_dir: Path, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.config = config
        self.cache_dir = cache_dir
        self.clock = clock
        self._fetched: dict[str, tuple[Path, str]] = {}  # the last answer, by model
        self._next: dict[str, float] = {}  # when MLflow is asked again, by model
        self._failed: dict[str, TrackingError] = {}  # why, while MLflow fails a model

    def get(self, spec: ModelSpec, *, patient: bool = False) -> tuple[Path, str] | None:
        """(local file, fingerprint) of ``spec``'s reference artifact, or None while
        MLflow cannot give it. ``patient``: the caller has a profile to use meanwhile, so
        a failure is tried again after ``mlflow_refresh_s`` rather than at the next call."""
        mon = spec.monitoring
        assert mon is not None and mon.reference_mlflow is not None
        uri, artifact = mon.reference_mlflow
        now = self.clock()
        if now < self._next.get(spec.name, -math.inf):
            return self._fetched.get(spec.name)
        timeout = self.config.mlflow_timeout_s
        # as the publisher does: no lookup given up on keeps retrying for minutes in the
        # background (holding one of the few slots identity lookups share)
        bound_http_time(timeout)
        try:
            fetched = fetch_artifact(
                uri,
                artifact,
                self.config.mlflow_tracking_uri,
                self.cache_dir,
                timeout_s=max(MIN_DOWNLOAD_S, timeout),
                lookup_timeout_s=timeout,
            )
        except TrackingError as exc:
            first = spec.name not in self._failed
            self._failed[spec.name] = exc
            self._fetched.pop(spec.name, None)
            self._next[spec.name] = self.clock() + self.config.mlflow_refresh_s if patient else 0
            if first and patient:
                log.warning("%s; using the reference profile the store holds", self.error(spec))
            return None
        if self._failed.pop(spec.name, None) is not None:
            log.warning("%s: MLflow gives the reference %s again", spec.name, uri)
        self._fetched[spec.name] = fetched
        self._next[spec.name] = self.clock() + self.config.mlflow_refresh_s
        return fetched

    def error(self, spec: ModelSpec) -> JobError:
        """Why MLflow did not give ``spec``'s reference, naming the setting and the URI."""
        mon = spec.monitoring
        uri = mon.reference_mlflow[0] if mon and mon.reference_mlflow else "?"
        cause = self._failed.get(spec.name)
        why = str(cause) if cause is not None else f"{uri}: not fetched yet"
        if uri not in why:
            why = f"{uri}: {why}"
        at = next(
            (f"models[{i}]" for i, m in enumerate(self.config.models) if m.name == spec.name),
            "models[?]",
        )
        error = JobError(f"{spec.name}: {at}.reference.mlflow: {why}")
        error.__cause__ = cause
        return error

    def unreachable(self, exc: BaseException) -> bool:
        """Whether ``exc`` (from a reference's computation) is MLflow not giving it."""
        return isinstance(exc, JobError) and isinstance(exc.__cause__, TrackingError)
