"""Who a model URI names: the registered version, its run, the run's experiment,
parameters, latest training metrics and code version — read from MLflow.

MLflow's REST client retries a request for minutes (``MLFLOW_HTTP_REQUEST_MAX_RETRIES``,
``MLFLOW_HTTP_REQUEST_TIMEOUT``) and has no per-call override, so each lookup runs on
its own daemon thread and the caller stops waiting after ``timeout_s``; a lookup given up
on finishes in the background, at most ``MAX_PENDING`` at a time. Lookups do not touch
the environment (in a model server, the user's MLflow settings stand); where the
scheduler also writes to MLflow, :func:`mlwatch.tracking.runs.bound_http_time` has set
those variables, unless the user did, for the whole process.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from mlwatch.errors import TrackingError
from mlwatch.tracking.uris import ModelURI, mask, parse_model_uri

T = TypeVar("T")
MAX_PENDING = 8
_pending = threading.BoundedSemaphore(MAX_PENDING)


def _after_fork() -> None:
    """A forked child has none of the parent's pending calls."""
    global _pending
    _pending = threading.BoundedSemaphore(MAX_PENDING)


os.register_at_fork(after_in_child=_after_fork)


@dataclass(frozen=True)
class Identity:
    """What MLflow says a model URI is, at the time it was resolved."""

    uri: str
    version: str  # the registered version number; for runs:/ the run id
    run_id: str | None
    experiment_id: str | None
    experiment: str | None
    params: dict[str, str] = field(hash=False)
    metrics: dict[str, float] = field(hash=False)
    code_version: str | None
    source: str | None
    registered_model: str | None
    alias: str | None = None

    def registration_params(self) -> dict[str, Any]:
        """The ``params`` of mlwatch's registration record: the run's parameters, and
        under ``mlflow`` where they come from (the version, run and commit have fields
        of their own in the record).

        >>> Identity("runs:/r/m", "r", "r", "1", "exp", {"lr": "0.1"}, {}, None, None,
        ...          None).registration_params()
        {'lr': '0.1', 'mlflow': {'uri': 'runs:/r/m', 'experiment_id': '1', 'experiment': 'exp', 'metrics': {}}}
        """
        about = {
            "uri": self.uri,
            "experiment_id": self.experiment_id,
            "experiment": self.experiment,
            "metrics": dict(self.metrics),
            "source": self.source,
            "registered_model": self.registered_model,
            "alias": self.alias,
        }
        return {**self.params, "mlflow": {k: v for k, v in about.items() if v is not None}}


def resolve(uri: ModelURI | str, tracking_uri: str | None, *, timeout_s: float = 10.0) -> Identity:
    """The identity ``uri`` names now, within about ``timeout_s``; :class:`TrackingError`
    naming the URI when it is malformed, names nothing, or MLflow does not answer."""
    parsed = uri if isinstance(uri, ModelURI) else parse_model_uri(uri)
    return bounded(parsed.text, tracking_uri, timeout_s, lambda: _lookup(parsed, tracking_uri))


def client(tracking_uri: str | None) -> Any:
    """An ``MlflowClient`` for ``tracking_uri`` (the registry is the same place).

    MLflow refuses its file store since 3.7 unless ``MLFLOW_ALLOW_FILE_STORE`` is set; a
    ``file:`` tracking URI given to mlwatch is that explicit choice, so the variable is
    set for it when the user has not set it."""
    if tracking_uri and tracking_uri.startswith("file:"):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise TrackingError(
            "MLflow model URIs need the MLflow client: pip install 'mlwatch[mlflow]'"
        ) from None
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def server_name(tracking_uri: str | None) -> str:
    """The tracking URI for messages: credentials masked, MLflow's default when None."""
    if tracking_uri is None:
        from mlflow.tracking import get_tracking_uri

        tracking_uri = str(get_tracking_uri())
    return mask(tracking_uri)


def bounded(uri: str, tracking_uri: str | None, timeout_s: float, call: Callable[[], T]) -> T:
    """``call()``'s result, or TrackingError once ``timeout_s`` has passed. The call
    runs on a daemon thread (not a pool's: those are joined at exit, which would wait
    out MLflow's retries)."""
    if not _pending.acquire(blocking=False):
        raise TrackingError(
            f"{uri}: {MAX_PENDING} earlier requests to the tracking server at "
            f"{server_name(tracking_uri)} are still unanswered"
        )
    box: dict[str, Any] = {}
    done = threading.Event()

    def run() -> None:
        try:
            box["value"] = call()
        except BaseException as exc:  # handed to the caller below
            box["error"] = exc
        finally:
            _pending.release()
            done.set()

    threading.Thread(target=run, name="mlwatch-mlflow-call", daemon=True).start()
    if not done.wait(timeout_s):
        raise TrackingError(
            f"{uri}: the tracking server at {server_name(tracking_uri)} did not answer "
            f"within {timeout_s:g} s"
        )
    if "error" in box:
        exc = box["error"]
        if isinstance(exc, TrackingError):
            raise exc
        raise failure(uri, tracking_uri, exc) from exc
    return box["value"]  # type: ignore[no-any-return]


def failure(uri: str, tracking_uri: str | None, exc: BaseException) -> TrackingError:
    """A third-party error as a TrackingError naming the URI and the server."""
    from mlflow.exceptions import RestException

    text = mask(" ".join(str(exc).split()))[:300]
    server = server_name(tracking_uri)
    if isinstance(exc, RestException) or "failed with error code" in text:  # an HTTP error
        return TrackingError(f"{uri}: the tracking server at {server} answered: {text}")
    if server.startswith(("http:", "https:")):
        return TrackingError(f"{uri}: the tracking server at {server} did not answer: {text}")
    return TrackingError(f"{uri}: MLflow at {server} failed: {text}")


def missing(exc: BaseException) -> bool:
    """Whether MLflow said the thing asked for does not exist."""
    code = getattr(exc, "error_code", None)
    return code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND")


def _lookup(uri: ModelURI, tracking_uri: str | None) -> Identity:
    mlflow = client(tracking_uri)
    version, run_id = _version(mlflow, uri)
    run = _run(mlflow, uri, run_id) if run_id else None
    experiment = mlflow.get_experiment(run.info.experiment_id) if run is not None else None
    tags: dict[str, str] = dict(run.data.tags) if run is not None else {}
    return Identity(
        uri=uri.text,
        version=version,
        run_id=run_id,
        experiment_id=str(experiment.experiment_id) if experiment is not None else None,
        experiment=str(experiment.name) if experiment is not None else None,
        params={str(k): str(v) for k, v in run.data.params.items()} if run is not None else {},
        metrics=_finite(run.data.metrics) if run is not None else {},
        code_version=tags.get("mlflow.source.git.commit"),
        source=tags.get("mlflow.source.name"),
        registered_model=uri.name,
        alias=uri.alias,
    )


def _finite(metrics: dict[str, Any]) -> dict[str, float]:
    """The run's latest metrics without NaN or infinities, which JSON (and so a
    registration record) cannot hold.

    >>> _finite({"auc": 0.9, "loss": float("nan")})
    {'auc': 0.9}
    """
    return {str(k): float(v) for k, v in metrics.items() if math.isfinite(float(v))}


def _version(mlflow: Any, uri: ModelURI) -> tuple[str, str | None]:
    """(version, run id) of a registered version, an alias, or a run."""
    if uri.kind == "run":
        return str(uri.run_id), uri.run_id
    try:
        if uri.kind == "alias":
            mv = mlflow.get_model_version_by_alias(uri.name, uri.alias)
        else:
            mv = mlflow.get_model_version(uri.name, uri.version)
    except Exception as exc:
        if not _not_found(exc):
            raise
        try:
            mlflow.get_registered_model(uri.name)
        except Exception as inner:
            if _not_found(inner):
                raise TrackingError(f"{uri.text}: no registered model {uri.name!r}") from exc
            raise
        has = f"no alias {uri.alias!r}" if uri.kind == "alias" else f"no version {uri.version}"
        raise TrackingError(f"{uri.text}: registered model {uri.name!r} has {has}") from exc
    return str(mv.version), (str(mv.run_id) if mv.run_id else None)


def _run(mlflow: Any, uri: ModelURI, run_id: str) -> Any:
    try:
        return mlflow.get_run(run_id)
    except Exception as exc:
        if missing(exc):
            raise TrackingError(f"{uri.text}: no run {run_id!r}") from exc
        raise


def _not_found(exc: BaseException) -> bool:
    # a missing alias is INVALID_PARAMETER_VALUE on some stores
    return missing(exc) or getattr(exc, "error_code", None) == "INVALID_PARAMETER_VALUE"
