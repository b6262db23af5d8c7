"""Shared fixtures: an in-process sidecar, and helpers to run real servers as subprocesses."""

from __future__ import annotations

import gzip
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from mlwatch.settings import load_config

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05,
               what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns a truthy value, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # the server may not be up yet
            last_exc = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last error: {last_exc!r}")


def require_binary(name: str) -> str:
    """Path of a server binary; missing means skip locally but fail in CI."""
    import shutil

    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (apt-get install {name})"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


def event(i: int = 0, **overrides: Any) -> dict[str, Any]:
    """A valid wire-format event."""
    ev: dict[str, Any] = {"model": "iris", "version": "1", "request_id": f"r{i}",
                          "latency_ms": 1.5, "status": "ok", "prediction": i % 3,
                          "features": {"x": float(i), "color": "red"}}
    ev.update(overrides)
    return ev


def gz(records: list[Any]) -> bytes:
    return gzip.compress(json.dumps(records).encode())


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
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                               log_level="warning", lifespan="on"))
        thread = threading.Thread(target=server.run, name="live-sidecar", daemon=True)
        thread.start()
        servers.append((server, thread))
        wait_until(lambda: server.started, timeout=30, what="the sidecar to start")
        return f"http://127.0.0.1:{port}", app.state.sidecar

    yield make
    for server, thread in servers:
        server.should_exit = True
        thread.join(30)


def forward_port(sc: Any) -> int:
    """The bound port of a sidecar's forward input."""
    [fwd] = sc.inputs
    return int(fwd.port)

