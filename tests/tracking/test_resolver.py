"""The resolver: never raises or blocks its callers, follows a moving alias, backs off,
logs a failure once, and comes back when the tracking server does."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

import mlwatch.tracking.resolver as resolver_module
from mlwatch.errors import TrackingError
from mlwatch.tracking.identity import Identity
from mlwatch.tracking.resolver import Resolver
from tests.helpers import free_port, wait_until
from tests.integration.mlflow_server import MlflowServer
from tests.tracking.test_identity import register, train

pytestmark = pytest.mark.usefixtures("mlflow_calls_end")


def fake_identity(uri: str, version: str) -> Identity:
    return Identity(uri, version, f"run{version}", "1", "exp", {}, {}, None, None, "churn")


def ours(caplog: Any) -> list[str]:
    """What the resolver logged (MLflow's own retries log too, from other tests' calls)."""
    return [r.getMessage() for r in caplog.records if r.name == "mlwatch.tracking"]


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_backoff_then_refresh(monkeypatch: pytest.MonkeyPatch, caplog: Any) -> None:
    """Retries 1, 2, 4 s apart, at most refresh_s; logged once failing, once answering;
    an alias answered is asked again refresh_s later."""
    answer: list[Identity | None] = [None]

    def fake_resolve(uri: Any, tracking_uri: str | None, *, timeout_s: float) -> Identity:
        if answer[0] is None:
            raise TrackingError(f"{uri.text}: no registered model 'churn'")
        return answer[0]

    monkeypatch.setattr(resolver_module, "resolve", fake_resolve)
    clock = FakeClock()
    uri = "models:/churn@champion"
    resolver = Resolver("http://u:pw@mlflow", refresh_s=4.0, clock=clock)
    caplog.set_level(logging.WARNING, "mlwatch.tracking")
    try:
        assert resolver.current(uri) is None
        for failures, now, due in [(1, 0, 1), (2, 1, 3), (3, 3, 7), (4, 7, 11), (5, 11, 15)]:
            clock.now = now
            wait_until(lambda n=failures: resolver.failures == n, timeout=5)
            assert resolver._entries[uri].due == due
        assert resolver.last_error(uri) == f"{uri}: no registered model 'churn'"
        assert ours(caplog) == [
            f"{uri}: no registered model 'churn' (retrying; logged again when it answers)"
        ]
        answer[0] = fake_identity(uri, "1")
        clock.now = 15
        wait_until(lambda: resolver.current(uri) is not None, timeout=5)
        assert resolver._entries[uri].due == 15 + 4.0
        assert resolver.last_error(uri) is None and resolver.failures == 5
        assert ours(caplog)[1:] == [f"{uri} answers again: version 1"]
    finally:
        resolver.close()


def test_malformed_is_a_failure_not_an_exception(caplog: Any) -> None:
    resolver = Resolver(None)
    try:
        started = time.monotonic()
        assert resolver.current("models:/churn/abc") is None
        assert resolver.wait("models:/churn/abc", 10.0) is None
        assert time.monotonic() - started < 1.0
        assert resolver.failures == 1
        assert "the version 'abc' is not an integer" in str(
            resolver.last_error("models:/churn/abc")
        )
        assert resolver.last_error("models:/other/1") is None
    finally:
        resolver.close()


def test_secrets_never_logged(caplog: Any) -> None:
    url = f"http://bob:s3cret@127.0.0.1:{free_port()}"
    caplog.set_level(logging.DEBUG, "mlwatch.tracking")
    resolver = Resolver(url, timeout_s=0.5)
    try:
        resolver.current("models:/churn/1")
        wait_until(lambda: resolver.failures >= 1, timeout=10)
        assert "http://***@127.0.0.1" in str(resolver.last_error("models:/churn/1"))
    finally:
        resolver.close()
    assert caplog.records and not any("s3cret" in r.getMessage() for r in caplog.records)
    assert "s3cret" not in str(resolver.last_error("models:/churn/1"))


@pytest.mark.integration
def test_alias_moves(mlflow_server: MlflowServer, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)
    name = f"moving-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(name)
    first = train(client, tmp_path, f"exp-{name}", commit="c1")
    register(client, name, first)
    client.set_registered_model_alias(name, "champion", "1")
    seen: list[Identity] = []
    moved = threading.Event()

    def on_change(identity: Identity) -> None:
        seen.append(identity)
        if len(seen) == 1:
            raise RuntimeError("a broken callback does not stop the resolver")
        if identity.version == "2":
            moved.set()

    uri = f"models:/{name}@champion"
    resolver = Resolver(mlflow_server.url, refresh_s=0.3, on_change=on_change)
    try:
        found = resolver.wait(uri, 30)
        assert found is not None and (found.version, found.run_id) == ("1", first.run_id)
        assert resolver.wait(f"models:/{name}/1", 30) is not None
        second = train(client, tmp_path, f"exp-{name}", commit="c2")
        assert register(client, name, second) == "2"
        client.set_registered_model_alias(name, "champion", "2")
        assert moved.wait(15)
        now = resolver.current(uri)
        assert now is not None
        assert (now.version, now.run_id, now.code_version) == ("2", second.run_id, "c2")
        assert [(i.uri, i.version) for i in seen] == [
            (uri, "1"),
            (f"models:/{name}/1", "1"),
            (uri, "2"),
        ] or [(i.uri, i.version) for i in seen] == [
            (uri, "1"),
            (uri, "2"),
            (f"models:/{name}/1", "1"),
        ]
        assert resolver.failures == 0
    finally:
        resolver.close()


@pytest.mark.integration
def test_server_away_and_back(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    server = MlflowServer(tmp_path / "mlflow").start()
    try:
        client = MlflowClient(tracking_uri=server.url, registry_uri=server.url)
        client.create_registered_model("churn")
        register(client, "churn", train(client, tmp_path, "exp", commit="c1"))
        client.set_registered_model_alias("churn", "champion", "1")
        resolver = Resolver(server.url, refresh_s=1.0, timeout_s=1.0)
        assert resolver.wait("models:/churn@champion", 30) is not None
        server.stop()
        started = time.monotonic()
        assert resolver.current("models:/churn/1") is None
        assert time.monotonic() - started < 0.5  # the lookup runs on the resolver thread
        wait_until(lambda: resolver.failures >= 2, timeout=20)
        for _ in range(3):
            started = time.monotonic()
            assert resolver.current("models:/churn/1") is None
            assert resolver.current("models:/churn@champion") is not None  # the last answer
            assert time.monotonic() - started < 0.5
        assert "did not answer" in str(resolver.last_error("models:/churn/1"))
        server.proc = None
        server.start()
        wait_until(lambda: resolver.current("models:/churn/1") is not None, timeout=10)
        assert resolver.last_error("models:/churn/1") is None
    finally:
        resolver.close()
        server.stop()


def test_forked_child_resolves(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pre-fork server (gunicorn): the parent's thread is gone in the child; the
    child's first call starts its own."""
    import os

    def fake_resolve(uri: Any, tracking_uri: str | None, *, timeout_s: float) -> Identity:
        return fake_identity(uri.text, str(os.getpid()))

    monkeypatch.setattr(resolver_module, "resolve", fake_resolve)
    resolver = Resolver(None)
    try:
        assert resolver.wait("models:/churn/1", 5) is not None
        pid = os.fork()
        if pid == 0:  # the child: the parent's answer is cached, a new URI gets resolved
            found = resolver.wait("models:/churn/2", 5)
            os._exit(0 if found is not None and found.version == str(os.getpid()) else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        resolver.close()
