"""Fixtures of the proxy tests: the model server (tests/proxy/model_server.py) and
sidecars in proxy mode in front of it, each a real HTTP server in a thread."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx2 as httpx
import pytest
from prometheus_client import CollectorRegistry

from tests.helpers import free_port, wait_until
from tests.proxy.model_server import ModelServer


@dataclass
class Proxied:
    """A sidecar in proxy mode: the proxy's URL, the sidecar's API URL, the sidecar."""

    url: str
    api: str
    sidecar: Any
    listener: Any

    def metric(self, sample: str) -> float:
        """One sample of the sidecar's /metrics, written as exposed
        (``name{label="value",...}``); 0 when absent."""
        text = httpx.get(self.api + "/metrics", timeout=10).text
        for line in text.splitlines():
            if line.startswith(sample + " "):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def events(self, model: str = "iris") -> list[dict[str, Any]]:
        answer = httpx.get(f"{self.api}/v1/models/{model}/events?limit=1000", timeout=10)
        return answer.json()["events"] if answer.status_code == 200 else []


@pytest.fixture(scope="module")
def model_url() -> Iterator[str]:
    with ModelServer() as url:
        yield url


@pytest.fixture
def proxied(sidecar_config: Callable[..., Any], model_url: str) -> Iterator[Callable[..., Proxied]]:
    """``make(**settings)`` starts a sidecar whose proxy forwards to the model server
    (or to ``proxy_to``); all are stopped after the test."""
    import uvicorn

    from mlwatch.proxy.listener import ProxyListener
    from mlwatch.sidecar.app import create_app

    servers: list[tuple[Any, threading.Thread]] = []

    def make(**settings: Any) -> Proxied:
        settings.setdefault("proxy_to", model_url)
        settings.setdefault("proxy_listen", "127.0.0.1:0")
        config = sidecar_config(**settings)
        listener = ProxyListener(config)
        app = create_app(config, registry=CollectorRegistry(), companions=[listener])
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
        )
        thread = threading.Thread(target=server.run, name="proxy-sidecar", daemon=True)
        thread.start()
        servers.append((server, thread))
        wait_until(lambda: server.started, timeout=30, what="the sidecar to start")
        return Proxied(
            f"http://127.0.0.1:{listener.port}",
            f"http://127.0.0.1:{port}",
            app.state.sidecar,
            listener,
        )

    yield make
    for server, thread in servers:
        server.should_exit = True
        thread.join(30)
