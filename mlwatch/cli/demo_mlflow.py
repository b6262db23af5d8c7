"""The demo's MLflow: a local tracking store in the data directory (no server), where the
training run logs its parameters, accuracy, commit, reference data and model, registered
and given the alias the demo then serves.

MLflow's file store is used because ``mlwatch[mlflow]`` installs ``mlflow-skinny``, which
has no SQL backend; MLflow 3 wants that choice said out loud (``MLFLOW_ALLOW_FILE_STORE``).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TRAINING_EXPERIMENT = "breast-cancer-training"
ALIAS = "champion"
REFERENCE_ARTIFACT = "reference.csv"


@dataclass(frozen=True)
class Logged:
    """Where the demo's model is in MLflow."""

    tracking_uri: str
    uri: str  # models:/<name>@champion
    run_id: str
    version: str


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """MLflow prints progress and warnings meant for notebooks; the demo prints its own."""
    logger = logging.getLogger("mlflow")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(io.StringIO()),
            contextlib.redirect_stderr(io.StringIO()),
        ):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def tracking_uri(root: Path) -> str:
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return (root / "mlruns").resolve().as_uri()


def log_training(root: Path, model: Any, name: str, params: dict[str, Any]) -> Logged:
    """The training run (params, held-out accuracy, commit, reference file, model),
    registered as a new version of ``name`` with the alias ``champion``."""
    import mlflow
    import mlflow.sklearn

    from mlwatch.client.identity import git_commit

    uri = tracking_uri(root)
    with quiet():
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        mlflow.set_experiment(TRAINING_EXPERIMENT)
        with mlflow.start_run(run_name="demo-training") as run:
            mlflow.log_params(params)
            mlflow.log_metric("accuracy", model.accuracy)
            mlflow.set_tag("mlflow.source.name", "mlwatch.cli.demo_traffic")
            commit = git_commit(str(Path(__file__).parent))
            if commit:
                mlflow.set_tag("mlflow.source.git.commit", commit)
            mlflow.log_artifact(str(root / REFERENCE_ARTIFACT))
            info = mlflow.sklearn.log_model(
                model.clf,
                name="model",
                registered_model_name=name,
                serialization_format="cloudpickle",
            )
        version = str(info.registered_model_version)
        mlflow.MlflowClient().set_registered_model_alias(name, ALIAS, version)
    return Logged(uri, f"models:/{name}@{ALIAS}", run.info.run_id, version)


def load_served(logged: Logged) -> Any:
    """The classifier the alias names, loaded back from MLflow: what the demo serves."""
    import mlflow.sklearn

    with quiet():
        return mlflow.sklearn.load_model(logged.uri)


def monitoring_runs(logged: Logged) -> list[tuple[str, str, dict[str, float]]]:
    """(experiment, run name, latest metrics) of the runs mlwatch wrote results to."""
    import mlflow

    with quiet():
        client = mlflow.MlflowClient(tracking_uri=logged.tracking_uri)
        runs = client.search_runs(
            [e.experiment_id for e in client.search_experiments()],
            filter_string=f"tags.`mlwatch.source_run` = '{logged.run_id}'",
        )
        out = []
        for run in runs:
            experiment = client.get_experiment(run.info.experiment_id).name
            out.append((experiment, run.info.run_name, dict(run.data.metrics)))
    return out
