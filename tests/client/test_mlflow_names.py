"""``@monitor(version="models:/churn@champion")`` against a real MLflow tracking server:
events and registrations carry what MLflow says, a moved alias is followed, and a server
that stops mid-run costs no event and no time on the serving thread."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import mlwatch
from mlwatch.client import runtime
from mlwatch.client.memory import MemoryExporter
from mlwatch.errors import ConfigError
from mlwatch.settings import load_config
from tests.helpers import wait_until
from tests.integration.mlflow_server import MlflowServer
from tests.tracking.test_identity import register, train

pytestmark = pytest.mark.usefixtures("mlflow_calls_end")


def mlflow_client(url: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=url, registry_uri=url)


@pytest.fixture
def memory() -> Iterator[MemoryExporter]:
    yield MemoryExporter()
    mlwatch.configure(sidecar_url="off")


def start(exporter: MemoryExporter, url: str, **settings: Any) -> runtime.Runtime:
    config = load_config(
        env={}, mlflow_tracking_uri=url, mlflow_refresh_s=1.0, flush_interval_ms=20, **settings
    )
    return runtime.start(config, exporter)


def versions(exporter: MemoryExporter) -> list[str]:
    return [e["version"] for e in exporter.records["events"]]


@pytest.mark.integration
def test_events_and_registrations_carry_what_mlflow_says(
    mlflow_server: MlflowServer, memory: MemoryExporter, tmp_path: Path
) -> None:
    client = mlflow_client(mlflow_server.url)
    name = f"churn-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(name)
    first = train(client, tmp_path, f"exp-{name}", commit="c0ffee1")
    second = train(client, tmp_path, f"exp-{name}", commit="beef002")
    register(client, name, first)
    register(client, name, second)
    client.set_registered_model_alias(name, "champion", "1")
    start(memory, mlflow_server.url, mlflow_wait_s=30.0)

    @mlwatch.monitor(model=name, version=f"models:/{name}@champion", params={"replicas": 3})
    def predict(x: float) -> int:
        return int(x > 0)

    predict(1.0)
    assert memory.wait_for("events", 1, timeout=30)
    event = memory.records["events"][0]
    assert (event["version"], event["run_id"], event["code_version"]) == (
        "1",
        first.run_id,
        "c0ffee1",
    )
    reg = memory.records["models"][0]
    assert reg["version"] == "1" and reg["run_id"] == first.run_id
    assert reg["params"]["lr"] == "0.1" and reg["params"]["replicas"] == 3
    assert reg["params"]["mlflow"]["uri"] == f"models:/{name}@champion"
    assert reg["params"]["mlflow"]["metrics"] == {"auc": 0.91}

    client.set_registered_model_alias(name, "champion", "2")  # a new champion is served
    deadline = time.monotonic() + 30
    while "2" not in versions(memory) and time.monotonic() < deadline:
        predict(1.0)
        time.sleep(0.1)
    assert versions(memory)[-1] == "2"
    assert wait_until(lambda: any(r["version"] == "2" for r in memory.records["models"]), 10)
    moved = next(r for r in memory.records["models"] if r["version"] == "2")
    assert moved["run_id"] == second.run_id and moved["code_version"] == "beef002"


@pytest.mark.integration
def test_a_server_that_stops_costs_no_event_and_no_time(
    memory: MemoryExporter, tmp_path: Path
) -> None:
    server = MlflowServer(tmp_path / "mlflow").start()
    try:
        client = mlflow_client(server.url)
        name = f"churn-{uuid.uuid4().hex[:8]}"
        client.create_registered_model(name)
        register(client, name, train(client, tmp_path, f"exp-{name}", commit="abc1234"))
        client.set_registered_model_alias(name, "champion", "1")
        server.stop()
        start(memory, server.url, mlflow_wait_s=0.2, mlflow_timeout_s=1.0)

        @mlwatch.monitor(model=name, version=f"models:/{name}@champion")
        def predict(x: float) -> int:
            return int(x > 0)

        slowest = 0.0
        for _ in range(50):
            began = time.perf_counter()
            predict(1.0)
            slowest = max(slowest, time.perf_counter() - began)
        assert memory.wait_for("events", 50, timeout=10)
        assert slowest < 0.05, f"a call waited {slowest:.3f} s for MLflow"
        assert set(versions(memory)) == {"@champion"}  # provisional while MLflow is down
        rt = runtime.current()
        assert wait_until(lambda: rt.mlflow.failures >= 1, 10)

        server.start()  # back, same port and data
        deadline = time.monotonic() + 60
        while "1" not in versions(memory) and time.monotonic() < deadline:
            predict(1.0)
            time.sleep(0.2)
        calls = len(versions(memory))
        assert versions(memory)[-1] == "1"
        assert mlwatch.flush(5)
        assert len(memory.records["events"]) == calls and not memory.dropped
    finally:
        server.stop()


def test_a_bad_model_uri_is_refused_at_decoration_naming_it() -> None:
    with pytest.raises(ConfigError) as err:

        @mlwatch.monitor(model="churn", version="models:/churn/latest")
        def predict(x: float) -> int:
            return 1

    assert err.value.key == "version" and "models:/churn/latest" in str(err.value)


def test_without_mlflow_reachable_events_flow_with_the_provisional_version(
    memory: MemoryExporter,
) -> None:
    start(memory, "http://127.0.0.1:9", mlflow_wait_s=0.0, mlflow_timeout_s=0.5)

    @mlwatch.monitor(model="churn", version="models:/churn/7")
    def predict(x: float) -> int:
        return 1

    for _ in range(5):
        predict(1.0)
    assert memory.wait_for("events", 5, timeout=10)
    assert set(versions(memory)) == {"7"}
    assert memory.records["models"][0]["params"] == {"mlflow": {"uri": "models:/churn/7"}}


def test_register_model_refuses_a_model_uri(memory: MemoryExporter) -> None:
    from mlwatch.errors import ValidationError

    start(memory, "http://127.0.0.1:9")
    with pytest.raises(ValidationError) as err:
        mlwatch.register_model("churn", "models:/churn@champion")
    assert err.value.field == "version" and "MLflow model URI" in str(err.value)


def test_a_hanging_mlflow_costs_no_event_and_no_shutdown_time(memory: MemoryExporter) -> None:
    """MLflow accepts connections and never answers: the worker stops waiting for it once
    the queue is half full, and shutdown does not wait for it either."""
    import socket

    with socket.socket() as hang:
        hang.bind(("127.0.0.1", 0))
        hang.listen(64)
        url = f"http://127.0.0.1:{hang.getsockname()[1]}"
        start(memory, url, mlflow_wait_s=60.0, mlflow_timeout_s=60.0, queue_size=200)

        @mlwatch.monitor(model="churn", version="models:/churn@champion")
        def predict(x: float) -> int:
            return 1

        for _ in range(400):
            predict(1.0)
            time.sleep(0.001)
        began = time.monotonic()
        assert mlwatch.shutdown(10.0)
        assert time.monotonic() - began < 5.0
        assert len(memory.records["events"]) == 400 and not memory.dropped
        assert set(versions(memory)) == {"@champion"}
