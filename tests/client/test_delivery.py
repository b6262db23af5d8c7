"""A misconfigured client says so: the first loss is logged at once, the process's
losses are summed up at exit, flush() and shutdown() answer False when something was
lost, and the usual mistakes (no sidecar on the port, no token, a URL that is not a
sidecar) are named with the setting to change."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

import mlwatch
from mlwatch.client import runtime
from mlwatch.logs import failures
from tests.helpers import free_port


@pytest.fixture(autouse=True)
def _stop_monitoring() -> Iterator[None]:
    failures.reset()  # each test sees its own first failures
    yield
    mlwatch.shutdown(2.0)
    runtime._current = None


def _calls(n: int) -> None:
    @mlwatch.monitor(model="m", version="1")
    def predict(x: int) -> int:
        return x

    for i in range(n):
        predict(i)


def _server(status: int, body: bytes) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def model_app() -> Iterator[str]:
    """Not a sidecar: a model server's own port (FastAPI's 404 for an unknown path)."""
    yield from _server(404, b'{"detail":"Not Found"}')


@pytest.fixture
def catch_all() -> Iterator[str]:
    """Not a sidecar either: a server that answers 200 to any POST."""
    yield from _server(200, b"OK")


def test_a_quick_exit_against_a_dead_port_says_what_was_lost() -> None:
    code = textwrap.dedent(
        f"""
        import mlwatch
        mlwatch.configure(sidecar_url="http://127.0.0.1:{free_port()}")

        @mlwatch.monitor(model="m", version="1")
        def predict(x):
            return x

        for i in range(50):
            predict(i)
        """
    )
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert "cannot reach the sidecar at http://127.0.0.1:" in run.stderr, run.stderr
    assert "not delivered to http://127.0.0.1:" in run.stderr, run.stderr
    assert "50 events" in run.stderr, run.stderr


def test_a_missing_token_is_named_and_flush_says_false(
    live_sidecar: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    url, _ = live_sidecar(token="the-sidecars-token-123")
    mlwatch.configure(sidecar_url=url, retry_timeout_s=1)
    with caplog.at_level(logging.WARNING, logger="mlwatch"):
        _calls(5)
        assert not mlwatch.flush(10)
    text = caplog.text
    assert "missing or wrong bearer token" in text
    assert "set MLWATCH_TOKEN or MLWATCH_TOKEN_FILE" in text
    assert "5 events (rejected 5)" in text  # the first-loss warning


def test_a_wrong_token_is_named(live_sidecar: Callable[..., Any], caplog: Any) -> None:
    url, _ = live_sidecar(token="the-sidecars-token-123")
    mlwatch.configure(sidecar_url=url, token="another-token-456789")
    with caplog.at_level(logging.WARNING, logger="mlwatch"):
        _calls(3)
        assert not mlwatch.flush(10)
    assert "the client's token differs from the sidecar's" in caplog.text


def test_a_model_server_port_is_not_a_sidecar(model_app: str, caplog: Any) -> None:
    mlwatch.configure(sidecar_url=model_app)
    with caplog.at_level(logging.WARNING, logger="mlwatch"):
        _calls(4)
        assert not mlwatch.flush(10)
    assert "this is not an mlwatch sidecar" in caplog.text
    assert "MLWATCH_SIDECAR_URL" in caplog.text


def test_a_server_that_answers_200_to_anything_is_not_a_sidecar(
    catch_all: str, caplog: Any
) -> None:
    mlwatch.configure(sidecar_url=catch_all)
    with caplog.at_level(logging.WARNING, logger="mlwatch"):
        _calls(4)
        assert not mlwatch.flush(10)
    assert f"{catch_all} is not an mlwatch sidecar" in caplog.text
    shipper = runtime._current.shipper  # type: ignore[union-attr]
    assert shipper is not None and shipper.drops.totals() == {"rejected": 4}


def test_flush_is_true_again_once_nothing_more_is_lost(
    live_sidecar: Callable[..., Any], caplog: Any
) -> None:
    url, _ = live_sidecar(token="the-sidecars-token-123")
    mlwatch.configure(sidecar_url=url, retry_timeout_s=1)
    with caplog.at_level(logging.WARNING, logger="mlwatch"):
        _calls(2)
        assert not mlwatch.flush(10)
        _calls(2)
        assert not mlwatch.flush(10)  # lost again
        assert mlwatch.flush(10)  # nothing recorded, nothing lost since the last answer
    assert caplog.text.count("records are not reaching") == 1  # said once


def test_everything_delivered_is_true_and_silent(
    live_sidecar: Callable[..., Any], caplog: Any
) -> None:
    url, _ = live_sidecar()
    mlwatch.configure(sidecar_url=url)
    with caplog.at_level(logging.WARNING, logger="mlwatch"):
        _calls(20)
        assert mlwatch.flush(10)
        assert mlwatch.shutdown(10)
    assert "not" not in caplog.text
