"""Fixtures: sidecars in this process (an ASGI test client, a real HTTP server, the
forward input), and one real MLflow tracking server per session. Plain helpers are in
tests/helpers.py."""

from __future__ import annotations

import gc
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from mlwatch.settings import load_config
from tests.helpers import free_port, wait_until
from tests.integration.mlflow_server import MlflowServer

# MLflow's client retries a failed request 7 times over minutes, on the daemon thread
# mlwatch gave it (mlwatch retries on its own): in tests against stopped and hanging
# servers those threads would outlive their test and finalize its sockets in another one.
# (So no test here waits out MLflow's own retries; the bound on such threads,
# tracking.identity.MAX_PENDING, is not exercised by them.)
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")


@pytest.fixture
def sidecar_config(tmp_path: Path) -> Callable[..., Any]:
    def make(**overrides: Any) -> Any:
        overrides.setdefault("data_dir", str(tmp_path / "data"))
        return load_config(env={}, **overrides)

    return make


@pytest.fixture
def client(sidecar_config: Callable[..., Any]) -> Iterator[Any]:
    """A TestClient on a fresh sidecar (own registry, own data dir)."""
    from fastapi.testclient import TestClient

    from mlwatch.sidecar.app import create_app

    app = create_app(sidecar_config(), registry=CollectorRegistry())
    with TestClient(app) as c:
        yield c


@pytest.fixture
def forward_sidecar(sidecar_config: Callable[..., Any]) -> Iterator[Callable[..., Any]]:
    """In-process sidecars with the forward-protocol input on a free port (stopped after)."""
    from mlwatch.sidecar.service import Sidecar

    started: list[Sidecar] = []

    def make(**overrides: Any) -> Sidecar:
        overrides.setdefault("retention_days", 0)  # fixed past entry times: no purge racing
        sc = Sidecar(sidecar_config(forward_port=0, **overrides), registry=CollectorRegistry())
        sc.start()
        started.append(sc)
        return sc

    yield make
    for sc in started:
        sc.stop()


@pytest.fixture
def live_sidecar(sidecar_config: Callable[..., Any]) -> Iterator[Callable[..., Any]]:
    """Real HTTP sidecars (uvicorn in a thread, own registry) on free ports: ``make()``
    returns ``(url, sidecar)``; all stopped after the test."""
    import threading

    import uvicorn

    from mlwatch.sidecar.app import create_app

    servers: list[tuple[Any, threading.Thread]] = []

    def make(**overrides: Any) -> tuple[str, Any]:
        config = sidecar_config(**overrides)
        app = create_app(config, registry=CollectorRegistry())
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
        )
        thread = threading.Thread(target=server.run, name="live-sidecar", daemon=True)
        thread.start()
        servers.append((server, thread))
        wait_until(lambda: server.started, timeout=30, what="the sidecar to start")
        return f"http://127.0.0.1:{port}", app.state.sidecar

    yield make
    for server, thread in servers:
        server.should_exit = True
        thread.join(30)


@pytest.fixture
def mlflow_calls_end() -> Iterator[None]:
    """After the test, wait for the MLflow calls it left running to end, then collect:
    what they leaked is reported in this test, not in a later one."""
    yield
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(
        t.name == "mlwatch-mlflow-call" for t in threading.enumerate()
    ):
        time.sleep(0.1)
    gc.collect()


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """One real MLflow tracking server (tests/integration/mlflow_server.py) for the
    session; tests that stop a server start their own."""
    server = MlflowServer(Path(tmp_path_factory.mktemp("mlflow"))).start()
    try:
        yield server
    finally:
        server.stop()
