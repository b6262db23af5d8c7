"""Reference data from a run's artifacts on a real MLflow server: downloaded once per
run, fingerprinted by run and content, a missing artifact named."""

from __future__ import annotations

import hashlib
import io
import uuid
from pathlib import Path
from typing import Any

import pytest

from mlwatch.errors import TrackingError
from mlwatch.tracking.reference import fetch_artifact
from tests.integration.mlflow_server import MlflowServer
from tests.tracking.test_identity import register, train

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("mlflow_calls_end")]


def parquet(values: list[float]) -> bytes:
    import pandas as pd

    out = io.BytesIO()
    pd.DataFrame({"x": values, "c": ["a"] * len(values)}).to_parquet(out)
    return out.getvalue()


@pytest.fixture
def mlflow_client(mlflow_server: MlflowServer) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)


def test_downloaded_once_per_run(
    mlflow_server: MlflowServer,
    mlflow_client: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import mlflow.artifacts

    name = f"ref-{uuid.uuid4().hex[:8]}"
    data = parquet([1.0, 2.0, 3.0])
    first = train(mlflow_client, tmp_path, name, commit="c1", files={"reference.parquet": data})
    mlflow_client.create_registered_model(name)
    register(mlflow_client, name, first)
    mlflow_client.set_registered_model_alias(name, "champion", "1")
    uri, cache = f"models:/{name}@champion", tmp_path / "cache"

    path, fingerprint = fetch_artifact(uri, "reference.parquet", mlflow_server.url, cache)
    assert path == cache / first.run_id / "reference.parquet"
    assert path.read_bytes() == data
    sha = hashlib.sha256(data).hexdigest()[:16]
    assert fingerprint == f"{first.run_id}/reference.parquet/{sha}"
    assert sorted(p.name for p in (cache / first.run_id).iterdir()) == ["reference.parquet"]

    def no_download(**kwargs: Any) -> str:
        raise AssertionError(f"downloaded again: {kwargs}")

    monkeypatch.setattr(mlflow.artifacts, "download_artifacts", no_download)
    assert fetch_artifact(uri, "reference.parquet", mlflow_server.url, cache) == (path, fingerprint)
    monkeypatch.undo()

    other = parquet([10.0, 20.0])
    second = train(mlflow_client, tmp_path, name, commit="c2", files={"reference.parquet": other})
    register(mlflow_client, name, second)
    mlflow_client.set_registered_model_alias(name, "champion", "2")
    moved, moved_fingerprint = fetch_artifact(uri, "reference.parquet", mlflow_server.url, cache)
    assert moved == cache / second.run_id / "reference.parquet"
    assert moved.read_bytes() == other and path.read_bytes() == data
    assert moved_fingerprint == (
        f"{second.run_id}/reference.parquet/{hashlib.sha256(other).hexdigest()[:16]}"
    )


def test_missing_artifact_named(
    mlflow_server: MlflowServer, mlflow_client: Any, tmp_path: Path
) -> None:
    name = f"noref-{uuid.uuid4().hex[:8]}"
    run = train(mlflow_client, tmp_path, name, commit="c1", files={"other.csv": b"x\n1\n"})
    mlflow_client.create_registered_model(name)
    register(mlflow_client, name, run)
    uri = f"models:/{name}/1"
    with pytest.raises(TrackingError) as info:
        fetch_artifact(uri, "reference.parquet", mlflow_server.url, tmp_path / "cache")
    assert str(info.value) == (
        f"{uri}: run {run.run_id} has no artifact 'reference.parquet' (it has 'model', 'other.csv')"
    )
    assert not (tmp_path / "cache" / run.run_id / "reference.parquet").exists()
    with pytest.raises(TrackingError) as info:
        fetch_artifact(uri, "model/nothing.parquet", mlflow_server.url, tmp_path / "cache")
    assert f"{uri}: run {run.run_id} has no artifact 'model/nothing.parquet'" in str(info.value)


@pytest.mark.parametrize("artifact", ["", "/", "../secrets.csv", "a/../../b"])
def test_artifact_outside_the_run_refused(artifact: str, tmp_path: Path) -> None:
    with pytest.raises(TrackingError) as info:
        fetch_artifact("models:/churn/1", artifact, "http://127.0.0.1:1", tmp_path)
    assert str(info.value).startswith(f"models:/churn/1: {artifact!r} is not a file path")
