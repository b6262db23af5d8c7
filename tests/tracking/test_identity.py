"""Identities read from a real MLflow tracking server: every field, every missing thing
named, and a server that does not answer given up on in time."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mlwatch.errors import TrackingError
from mlwatch.tracking.identity import Identity, resolve
from tests.helpers import free_port
from tests.integration.mlflow_server import MlflowServer

pytestmark = pytest.mark.usefixtures("mlflow_calls_end")


@dataclass
class Trained:
    """A run logged the way a training script logs one, and its experiment."""

    run_id: str
    experiment_id: str
    experiment: str


def train(
    client: Any, tmp: Path, experiment: str, *, commit: str, files: dict[str, bytes] | None = None
) -> Trained:
    """A run with params, metrics, source tags, a model file and ``files`` at its root."""
    found = client.get_experiment_by_name(experiment)
    exp_id = found.experiment_id if found else client.create_experiment(experiment)
    run = client.create_run(exp_id, tags={"mlflow.source.name": "train.py"})
    run_id = run.info.run_id
    client.log_param(run_id, "lr", "0.1")
    client.log_param(run_id, "depth", 6)
    client.log_metric(run_id, "auc", 0.5, step=0)
    client.log_metric(run_id, "auc", 0.91, step=1)
    client.set_tag(run_id, "mlflow.source.git.commit", commit)
    local = tmp / run_id
    (local / "model").mkdir(parents=True)
    (local / "model" / "MLmodel").write_text("flavors: {}\n")
    client.log_artifact(run_id, str(local / "model" / "MLmodel"), "model")
    for name, data in (files or {}).items():
        (local / name).write_bytes(data)
        client.log_artifact(run_id, str(local / name))
    client.set_terminated(run_id)
    return Trained(run_id, exp_id, experiment)


def register(client: Any, name: str, trained: Trained) -> str:
    """A new version of ``name`` from the run's model; its number."""
    mv = client.create_model_version(name, f"runs:/{trained.run_id}/model", run_id=trained.run_id)
    return str(mv.version)


@pytest.fixture
def mlflow_client(mlflow_server: MlflowServer) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)


@pytest.mark.integration
def test_every_field(mlflow_server: MlflowServer, mlflow_client: Any, tmp_path: Path) -> None:
    name = f"churn-{uuid.uuid4().hex[:8]}"
    trained = train(mlflow_client, tmp_path, f"exp-{name}", commit="abc123")
    mlflow_client.create_registered_model(name)
    assert register(mlflow_client, name, trained) == "1"
    mlflow_client.set_registered_model_alias(name, "champion", "1")
    common = {
        "run_id": trained.run_id,
        "experiment_id": trained.experiment_id,
        "experiment": trained.experiment,
        "params": {"lr": "0.1", "depth": "6"},
        "metrics": {"auc": 0.91},
        "code_version": "abc123",
        "source": "train.py",
    }
    by_version = resolve(f"models:/{name}/1", mlflow_server.url)
    assert by_version == Identity(
        uri=f"models:/{name}/1", version="1", registered_model=name, alias=None, **common
    )
    by_alias = resolve(f"models:/{name}@champion", mlflow_server.url)
    assert by_alias == Identity(
        uri=f"models:/{name}@champion",
        version="1",
        registered_model=name,
        alias="champion",
        **common,
    )
    by_run = resolve(f"runs:/{trained.run_id}/model", mlflow_server.url)
    assert by_run == Identity(
        uri=f"runs:/{trained.run_id}/model",
        version=trained.run_id,
        registered_model=None,
        alias=None,
        **common,
    )
    assert by_alias.registration_params() == {
        "lr": "0.1",
        "depth": "6",
        "mlflow": {
            "uri": f"models:/{name}@champion",
            "experiment_id": trained.experiment_id,
            "experiment": trained.experiment,
            "metrics": {"auc": 0.91},
            "source": "train.py",
            "registered_model": name,
            "alias": "champion",
        },
    }


@pytest.fixture(scope="module")
def one_version(mlflow_server: MlflowServer, tmp_path_factory: pytest.TempPathFactory) -> str:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)
    name = f"one-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(name)
    register(client, name, train(client, tmp_path_factory.mktemp("one"), "one", commit="c1"))
    return name


@pytest.mark.integration
@pytest.mark.parametrize(
    ("uri", "what"),
    [
        ("models:/nosuchmodel/1", "no registered model 'nosuchmodel'"),
        ("models:/nosuchmodel@champion", "no registered model 'nosuchmodel'"),
        ("models:/{name}/9", "registered model '{name}' has no version 9"),
        ("models:/{name}@nope", "registered model '{name}' has no alias 'nope'"),
        (
            "runs:/0123456789abcdef0123456789abcdef/model",
            "no run '0123456789abcdef0123456789abcdef'",
        ),
        ("models:/", "the registered model name is empty"),
        ("models:/x/abc", "the version 'abc' is not an integer"),
        ("foo:/x", "not a models:/ or runs:/ URI"),
        ("runs:/", "the run id is empty"),
    ],
)
def test_missing_named(mlflow_server: MlflowServer, one_version: str, uri: str, what: str) -> None:
    uri, what = uri.format(name=one_version), what.format(name=one_version)
    with pytest.raises(TrackingError) as info:
        resolve(uri, mlflow_server.url, timeout_s=10)
    assert str(info.value) == f"{uri}: {what}" or str(info.value).startswith(f"{uri}: {what};")


def test_nothing_listening_gives_up_in_time() -> None:
    url = f"http://bob:s3cret@127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(TrackingError) as info:
        resolve("models:/churn@champion", url, timeout_s=2.0)
    took = time.monotonic() - started
    assert took < 2.0 + 3.0, took
    message = str(info.value)
    assert message.startswith(
        "models:/churn@champion: the tracking server at http://***@127.0.0.1:"
    )
    assert "did not answer" in message and "s3cret" not in message


@pytest.mark.integration
def test_answer_refused_is_named(mlflow_server: MlflowServer) -> None:
    """A server that answers with an error (here: a path that is no MLflow API) is not
    'did not answer'."""
    with pytest.raises(TrackingError) as info:
        resolve("models:/churn/1", mlflow_server.url + "/nothing-here", timeout_s=10)
    message = str(info.value)
    assert message.startswith(
        f"models:/churn/1: the tracking server at {mlflow_server.url}/nothing-here answered: "
    )
    assert "404" in message


def test_registration_params_drop_nones() -> None:
    """The run's params at the top, where they came from under ``mlflow``; nothing None."""
    bare = Identity("runs:/r1/model", "r1", "r1", None, None, {}, {}, None, None, None)
    assert bare.registration_params() == {"mlflow": {"uri": "runs:/r1/model", "metrics": {}}}
    full = Identity(
        uri="models:/churn@champion",
        version="3",
        run_id="r3",
        experiment_id="7",
        experiment="churn-training",
        params={"lr": "0.1", "depth": "6"},
        metrics={"auc": 0.91},
        code_version="abc123",
        source="train.py",
        registered_model="churn",
        alias="champion",
    )
    params = full.registration_params()
    assert params == {
        "lr": "0.1",
        "depth": "6",
        "mlflow": {
            "uri": "models:/churn@champion",
            "experiment_id": "7",
            "experiment": "churn-training",
            "metrics": {"auc": 0.91},
            "source": "train.py",
            "registered_model": "churn",
            "alias": "champion",
        },
    }
    params["mlflow"]["metrics"]["auc"] = 0.0
    assert full.metrics == {"auc": 0.91}  # a copy: the identity stays as MLflow said
