"""A sidecar whose model spec names an MLflow model URI, against a real MLflow server:
it registers what MLflow says (store, ``mlwatch_model_info``), follows a moved alias,
stamps events that carry the provisional version, and keeps serving while MLflow is down."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from mlwatch.settings import load_config
from tests import helpers
from tests.helpers import wait_until
from tests.integration.mlflow_server import MlflowServer
from tests.tracking.test_identity import register, train

pytestmark = pytest.mark.usefixtures("mlflow_calls_end")


def mlflow_client(url: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=url, registry_uri=url)


@contextmanager
def sidecar(tmp_path: Path, url: str, name: str, *also: str) -> Iterator[tuple[Any, Any]]:
    """(test client, sidecar) with the model ``name`` named by its MLflow alias (and the
    models ``also``, named by the same URI)."""
    from fastapi.testclient import TestClient

    from mlwatch.sidecar.app import create_app

    path = tmp_path / "mlwatch.yaml"
    path.write_text(
        "models:\n"
        + "".join(
            f"  - name: {model}\n    version: models:/{name}@champion\n    task: regression\n"
            for model in (name, *also)
        )
    )
    config = load_config(
        path,
        env={},
        data_dir=str(tmp_path / "data"),
        mlflow_tracking_uri=url,
        mlflow_refresh_s=1.0,
        mlflow_timeout_s=2.0,
    )
    app = create_app(config, registry=CollectorRegistry())
    with TestClient(app) as client:
        yield client, app.state.sidecar


def info_lines(client: Any, name: str) -> list[str]:
    text = client.get("/metrics").text
    return [ln for ln in text.splitlines() if ln.startswith("mlwatch_model_info{") and name in ln]


def stored_versions(sc: Any, name: str) -> dict[str, dict[str, Any]]:
    return {r["version"]: r for r in sc.store.registrations(name)}


def event(name: str, version: str) -> dict[str, Any]:
    return helpers.event(model=name, version=version, prediction=1.5)


@pytest.mark.integration
def test_registers_what_mlflow_says_and_follows_the_alias(
    mlflow_server: MlflowServer, tmp_path: Path
) -> None:
    client = mlflow_client(mlflow_server.url)
    name = f"churn-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(name)
    first = train(client, tmp_path, f"exp-{name}", commit="aaa1111")
    second = train(client, tmp_path, f"exp-{name}", commit="bbb2222")
    register(client, name, first)
    register(client, name, second)
    client.set_registered_model_alias(name, "champion", "1")
    with sidecar(tmp_path, mlflow_server.url, name, f"{name}-shadow") as (http, sc):
        assert wait_until(lambda: "1" in stored_versions(sc, name), 30)
        assert wait_until(lambda: "1" in stored_versions(sc, f"{name}-shadow"), 10)
        reg = stored_versions(sc, name)["1"]
        assert (reg["run_id"], reg["code_version"], reg["task"]) == (
            first.run_id,
            "aaa1111",
            "regression",
        )
        assert reg["params"]["lr"] == "0.1" and reg["params"]["mlflow"]["experiment"] == (
            f"exp-{name}"
        )
        lines = info_lines(http, name)
        assert any('version="1"' in ln and first.run_id in ln for ln in lines), lines

        drops = [{"model": name, "version": "@champion", "reason": "queue_full", "count": 3}]
        answer = http.post(
            "/v1/events",
            json=[event(name, "@champion"), event(name, "9")],
            headers={"X-Mlwatch-Dropped": json.dumps(drops)},
        )
        assert answer.status_code == 202
        assert wait_until(lambda: sc.store.count_events(name) == 2, 10)
        assert sorted(e["version"] for e in sc.store.events(name)) == ["1", "9"]
        dropped = f'mlwatch_events_dropped_total{{environment="default",model="{name}",reason="queue_full",version="1"}} 3.0'
        assert dropped in http.get("/metrics").text
        # a client's registration of the provisional version is superseded, not stored
        provisional = {"model": name, "version": "@champion", "params": {}}
        later = {"model": name, "version": "8", "params": {}}
        assert http.post("/v1/models", json=[provisional, later]).status_code == 202
        assert wait_until(lambda: "8" in stored_versions(sc, name), 10)  # stored after it
        assert "@champion" not in stored_versions(sc, name)
        assert not any('version="@champion"' in ln for ln in info_lines(http, name))

        client.set_registered_model_alias(name, "champion", "2")
        assert wait_until(lambda: "2" in stored_versions(sc, name), 30)
        assert stored_versions(sc, name)["2"]["run_id"] == second.run_id
        assert any('version="2"' in ln for ln in info_lines(http, name))


@pytest.mark.integration
def test_serves_while_mlflow_is_down_and_registers_once_it_answers(tmp_path: Path) -> None:
    server = MlflowServer(tmp_path / "mlflow").start()
    try:
        client = mlflow_client(server.url)
        name = f"churn-{uuid.uuid4().hex[:8]}"
        client.create_registered_model(name)
        trained = train(client, tmp_path, f"exp-{name}", commit="ccc3333")
        register(client, name, trained)
        client.set_registered_model_alias(name, "champion", "1")
        server.stop()
        with sidecar(tmp_path, server.url, name) as (http, sc):
            began = time.monotonic()
            assert http.post("/v1/events", json=[event(name, "@champion")]).status_code == 202
            assert time.monotonic() - began < 1.0
            assert http.get("/readyz").status_code == 200
            assert wait_until(lambda: sc.mlflow.resolver.failures >= 1, 10)
            failures = http.get("/metrics").text
            assert "mlwatch_mlflow_lookup_failures_total " in failures
            assert "mlwatch_mlflow_lookup_failures_total 0.0" not in failures
            assert stored_versions(sc, name) == {}
            server.start()
            assert wait_until(lambda: "1" in stored_versions(sc, name), 60)
            assert stored_versions(sc, name)["1"]["run_id"] == trained.run_id
            assert sc.store.count_events(name) == 1
    finally:
        server.stop()
