"""The shipper against a real HTTP server in this process (and the embedded store).

The server records every request (path, headers, gunzipped JSON body) and answers
from a script of responses (default 202). Tests wait on a Condition with a
deadline, never on fixed sleeps.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import mlwatch
from mlwatch.client import runtime
from mlwatch.client.drops import DropCounts
from mlwatch.client.ratelimit import failures
from mlwatch.settings import load_config
from mlwatch.store import EmbeddedStore
from mlwatch.wire import validate_drop_report, validate_event, validate_registration

REPO = Path(__file__).resolve().parents[1]


class Recorder:
    """Requests seen by the server, and the responses it will give."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        # the next responses per path; 202 when none is left
        self.script: dict[str, list[tuple[int, dict[str, str]]]] = {}
        self.gate = threading.Event()  # cleared: requests wait (a hung sidecar)
        self.gate.set()
        self.cond = threading.Condition()

    def events(self) -> list[dict[str, Any]]:
        with self.cond:
            return [e for r in self.requests if r["path"] == "/v1/events" and r["status"] < 300
                    for e in r["body"]]

    def wait(self, predicate: Any, timeout: float = 10.0) -> bool:
        end = time.monotonic() + timeout
        with self.cond:
            while not predicate():
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(left)
            return True

    def wait_events(self, n: int, timeout: float = 10.0) -> bool:
        return self.wait(lambda: len(self.events()) >= n, timeout)


def _handler(rec: Recorder) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers["Content-Length"]))
            rec.gate.wait(30)
            data = gzip.decompress(raw) if self.headers.get("Content-Encoding") == "gzip" else raw
            with rec.cond:
                todo = rec.script.get(self.path)
                status, headers = todo.pop(0) if todo else (202, {})
                rec.requests.append({"path": self.path, "headers": dict(self.headers),
                                     "body": json.loads(data), "status": status,
                                     "port": self.client_address[1], "at": time.monotonic()})
                rec.cond.notify_all()
            payload = b'{"accepted": 1}' if status < 300 else b'{"detail": "line 1, field x"}'
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def server() -> Iterator[tuple[str, Recorder]]:
    rec = Recorder()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(rec))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    failures.reset()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", rec
    rec.gate.set()
    runtime.shutdown(5.0)
    httpd.shutdown()
    httpd.server_close()


def start(url: str, **settings: Any) -> None:
    settings.setdefault("model", "m")
    settings.setdefault("version", "1")
    settings.setdefault("code_version", "abc")
    runtime.start(load_config(env={}, sidecar_url=url, **settings))


@mlwatch.monitor()
def predict(x: dict[str, Any]) -> int:
    return 1


def drops() -> dict[tuple[Any, str], int]:
    assert runtime._current is not None and runtime._current.shipper is not None
    return runtime._current.shipper.drops.snapshot()


def test_batches_by_size_then_by_flush(server: tuple[str, Recorder]) -> None:
    url, rec = server
    start(url, batch_size=10, flush_interval_ms=60_000)
    for i in range(25):
        predict({"i": i})
    assert rec.wait_events(20)  # two full batches went out without a flush
    assert mlwatch.flush(5.0)
    posts = [r for r in rec.requests if r["path"] == "/v1/events"]
    assert all(len(r["body"]) <= 10 for r in posts)
    assert sorted(e["features"]["i"] for e in rec.events()) == list(range(25))
    assert len({r["port"] for r in rec.requests}) == 1  # one keep-alive connection
    for i, ev in enumerate(rec.events(), 1):
        validate_event(ev, line=i)


def test_batches_by_time(server: tuple[str, Recorder]) -> None:
    url, rec = server
    start(url, batch_size=1000, flush_interval_ms=50)
    predict({"i": 1})
    assert rec.wait_events(1, timeout=5.0)


def test_gzip_json_token_and_registration(server: tuple[str, Recorder],
                                          caplog: pytest.LogCaptureFixture) -> None:
    url, rec = server
    start(url, token="s3cret-token", flush_interval_ms=60_000)
    rec.script["/v1/models"] = [(500, {})]  # a failure is logged: the token must not be

    @mlwatch.monitor("reg", "7", params={"lr": 0.1})
    def other(x: int) -> int:
        return x

    with caplog.at_level(logging.DEBUG, logger="mlwatch"):
        for i in range(3):  # the first registration POST fails: it is retried, then never again
            other(i)
            predict({"a": i})
            assert mlwatch.flush(5.0)
    assert "s3cret" not in caplog.text
    assert "HTTP 500" in caplog.text
    first = rec.requests[0]
    assert (first["path"], first["status"]) == ("/v1/models", 500)
    assert first["headers"]["Content-Encoding"] == "gzip"
    assert first["headers"]["Content-Type"] == "application/json"
    assert all(r["headers"]["Authorization"] == "Bearer s3cret-token" for r in rec.requests)
    regs = [reg for r in rec.requests if r["path"] == "/v1/models" and r["status"] == 202
            for reg in r["body"]]
    assert sorted((g["model"], g["version"]) for g in regs) == [("m", "1"), ("reg", "7")]
    assert next(g for g in regs if g["model"] == "reg")["params"] == {"lr": 0.1}
    assert [r["path"] for r in rec.requests][-1:] == ["/v1/events"]
    assert len(rec.events()) == 6
    for reg in regs:
        validate_registration(reg)


def test_bound_holds_and_drop_header_is_sent_then_cleared(server: tuple[str, Recorder]) -> None:
    url, rec = server
    start(url, queue_size=5, batch_size=1000, flush_interval_ms=60_000)
    for i in range(50):
        predict({"i": i})
    shipper = runtime._current.shipper  # type: ignore[union-attr]
    assert shipper is not None and len(shipper.queue) == 5
    assert DropCounts.report(drops(), runtime._current.identity_of) == [  # type: ignore[union-attr]
        {"model": "m", "version": "1", "reason": "queue_full", "count": 45}]
    rec.script["/v1/events"] = [(500, {})]  # not retryable: the batch fails at once, the counts stay
    assert mlwatch.flush(5.0)
    for i in range(3):
        predict({"i": i})
    assert mlwatch.flush(5.0)
    for i in range(2):
        predict({"i": i})
    assert mlwatch.flush(5.0)
    posts = [r for r in rec.requests if r["path"] == "/v1/events"]
    headers = [validate_drop_report(json.loads(r["headers"]["X-Mlwatch-Dropped"]))
               if "X-Mlwatch-Dropped" in r["headers"] else None for r in posts]
    assert headers == [
        [("m", "1", "queue_full", 45)],
        [("m", "1", "queue_full", 45), ("m", "1", "send_failed", 5)],
        None,  # cleared after the 2xx
    ]
    assert drops() == {}


def test_retry_on_503_honours_retry_after(server: tuple[str, Recorder]) -> None:
    url, rec = server
    start(url, flush_interval_ms=60_000)
    rec.script["/v1/events"] = [(503, {"Retry-After": "1"}), (429, {}), (202, {})]
    predict({"i": 1})
    assert mlwatch.flush(10.0)
    posts = [r for r in rec.requests if r["path"] == "/v1/events"]
    assert [r["status"] for r in posts] == [503, 429, 202]
    assert posts[0]["body"] == posts[2]["body"]
    assert posts[1]["at"] - posts[0]["at"] >= 0.9
    assert drops() == {}


def test_gives_up_after_retry_timeout(server: tuple[str, Recorder]) -> None:
    url, rec = server
    start(url, flush_interval_ms=60_000, retry_timeout_s=0.5)
    rec.script["/v1/events"] = [(503, {})] * 1000
    for i in range(4):
        predict({"i": i})
    t0 = time.monotonic()
    assert mlwatch.flush(10.0)
    assert time.monotonic() - t0 < 5.0
    assert len([r for r in rec.requests if r["path"] == "/v1/events"]) > 1
    assert drops() == {(("m", "1"), "send_failed"): 4}


def test_422_is_rejected_without_retry(server: tuple[str, Recorder]) -> None:
    url, rec = server
    start(url, flush_interval_ms=60_000)
    predict({"i": 0})  # registration first, so that the 422 hits the events
    assert mlwatch.flush(5.0)
    rec.script["/v1/events"] = [(422, {})]
    for i in range(3):
        predict({"i": i})
    assert mlwatch.flush(5.0)
    assert [r["status"] for r in rec.requests if r["path"] == "/v1/events"] == [202, 422]
    assert drops() == {(("m", "1"), "rejected"): 3}


def test_sidecar_down_never_blocks_the_caller() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed when the block ends: connections are refused
    start(f"http://127.0.0.1:{port}", flush_interval_ms=10, retry_timeout_s=0.3)
    t0 = time.perf_counter()
    for i in range(1000):
        predict({"i": i})
    assert time.perf_counter() - t0 < 2.0
    assert mlwatch.flush(10.0)
    assert sum(n for (_k, reason), n in drops().items() if reason == "send_failed") == 1000
    assert runtime.shutdown(5.0)


def test_flush_times_out_and_shutdown_keeps_one_deadline(server: tuple[str, Recorder]) -> None:
    url, rec = server
    start(url, flush_interval_ms=60_000, send_timeout_s=30)
    rec.gate.clear()  # the sidecar hangs
    predict({"i": 1})
    assert not mlwatch.flush(0.3)
    t0 = time.monotonic()
    assert not mlwatch.shutdown(0.5)
    assert not mlwatch.shutdown(0.5)  # idempotent: same deadline, already passed
    assert time.monotonic() - t0 < 1.5
    rec.gate.set()


def test_feedback_is_shipped(server: tuple[str, Recorder]) -> None:
    url, rec = server
    start(url, flush_interval_ms=60_000)
    mlwatch.log_feedback("req-1", 1)
    mlwatch.log_feedback("req-2", "cat", model="other", ts=1_700_000_000.5)
    assert mlwatch.flush(5.0)
    [post] = [r for r in rec.requests if r["path"] == "/v1/feedback"]
    assert [(f["model"], f["request_id"], f["label"]) for f in post["body"]] == [
        ("m", "req-1", 1), ("other", "req-2", "cat")]
    assert post["body"][1]["ts"] == "2023-11-14T22:13:20.500000Z"
    with pytest.raises(mlwatch.ValidationError):
        mlwatch.log_feedback("", 1)


def test_flush_at_exit_in_a_subprocess(server: tuple[str, Recorder]) -> None:
    url, rec = server
    script = textwrap.dedent("""
        import mlwatch

        @mlwatch.monitor("exit")
        def predict(x):
            return x

        for i in range(50):
            predict({"i": i})
        # no flush, no shutdown: the atexit hook must ship the queue
    """)
    env = {**os.environ, "MLWATCH_SIDECAR_URL": url, "MLWATCH_FLUSH_INTERVAL_MS": "60000",
           "MLWATCH_BATCH_SIZE": "1000"}
    env.pop("MLWATCH_CONFIG", None)
    proc = subprocess.run([sys.executable, "-c", script], env=env, cwd=REPO, timeout=60,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert rec.wait_events(50, timeout=10)
    assert sorted(e["features"]["i"] for e in rec.events()) == list(range(50))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_ships_its_own_events_only(server: tuple[str, Recorder]) -> None:
    url, rec = server
    start(url, flush_interval_ms=60_000, batch_size=1000)
    for i in range(10):
        predict({"who": "parent", "i": i})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)
        pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 1
        try:
            for i in range(7):
                predict({"who": "child", "i": i})
            code = 0 if mlwatch.flush(10.0) else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert mlwatch.flush(5.0)
    who = [e["features"]["who"] for e in rec.events()]
    assert (who.count("parent"), who.count("child")) == (10, 7)
    assert len({e["event_id"] for e in rec.events()}) == 17


def test_local_mode_writes_into_the_embedded_store(tmp_path: Path) -> None:
    runtime.start(load_config(env={}, model="loc", version="2", data_dir=str(tmp_path),
                              flush_interval_ms=60_000))

    @mlwatch.monitor(params={"depth": 3})
    def local_predict(x: dict[str, float]) -> float:
        return 0.5

    for i in range(5):
        local_predict({"x": float(i)})
    mlwatch.log_feedback("r-1", 1)
    assert mlwatch.shutdown(5.0)
    store = EmbeddedStore(tmp_path / "store.db")
    try:
        assert store.count_events("loc") == 5
        assert store.count_feedback("loc") == 1
        [reg] = store.registrations("loc")
        assert (reg["version"], reg["params"]) == ("2", {"depth": 3})
    finally:
        store.close()


def test_local_mode_redacts_sensitive_features(tmp_path: Path) -> None:
    config = tmp_path / "mlwatch.yaml"
    config.write_text("models:\n  - name: loc\n    features:\n"
                      "      - {name: email, type: categorical, sensitive: true}\n"
                      "      - {name: ssn, type: categorical, sensitive: drop}\n")
    runtime.start(load_config(config, env={}, model="loc", data_dir=str(tmp_path / "d"),
                              hash_key="k"))

    @mlwatch.monitor()
    def local_predict(x: dict[str, object]) -> int:
        return 1

    local_predict({"email": "bob@example.com", "ssn": "123-45", "age": 40})
    assert mlwatch.shutdown(5.0)
    store = EmbeddedStore(tmp_path / "d" / "store.db")
    try:
        [event] = store.events("loc")
        assert set(event["features"]) == {"email", "age"}
        assert event["features"]["email"].startswith("hmac:")
    finally:
        store.close()
