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
from mlwatch.client.exporter import ExportBatch, Partial, Result
from mlwatch.client.identity import Identity
from mlwatch.client.local import LocalExporter
from mlwatch.client.memory import MemoryExporter
from mlwatch.client.shipper import Shipper
from mlwatch.client.site import Site
from mlwatch.client.transport import HttpExporter
from mlwatch.logs import failures
from mlwatch.settings import load_config
from mlwatch.store import EmbeddedStore
from mlwatch.wire import validate_drop_report, validate_event, validate_registration
from tests.helpers import REPO


class Recorder:
    """Requests seen by the server, and the responses it will give."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        # the next responses per path; 202 when none is left
        self.script: dict[str, list[tuple[int, dict[str, str]]]] = {}
        self.gate = threading.Event()  # cleared: requests wait (a hung sidecar)
        self.gate.set()
        self.cond = threading.Condition()
        self.max_bytes: int | None = None  # like the sidecar's max_body_bytes: 413 above

    def posts(self, path: str = "/v1/events") -> list[dict[str, Any]]:
        with self.cond:
            return [r for r in self.requests if r["path"] == path]

    def events(self) -> list[dict[str, Any]]:
        with self.cond:
            return [
                e
                for r in self.requests
                if r["path"] == "/v1/events" and r["status"] < 300
                for e in r["body"]
            ]

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
                if rec.max_bytes is not None and len(data) > rec.max_bytes:
                    status, headers = 413, {}
                rec.requests.append(
                    {
                        "path": self.path,
                        "headers": dict(self.headers),
                        "body": json.loads(data),
                        "status": status,
                        "size": len(data),
                        "port": self.client_address[1],
                        "at": time.monotonic(),
                    }
                )
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


def report(request: dict[str, Any]) -> tuple[str | None, list[tuple[str, str, str, int]]] | None:
    """(report_id, drop counts) of a request's ``X-Mlwatch-Dropped`` header, or None."""
    header = request["headers"].get("X-Mlwatch-Dropped")
    if header is None:
        return None
    items = json.loads(header)
    assert all(isinstance(d.get("report_id"), str) for d in items)  # in every object
    return validate_drop_report(items)


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


def test_gzip_json_token_and_registration(
    server: tuple[str, Recorder], caplog: pytest.LogCaptureFixture
) -> None:
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
    regs = [
        reg
        for r in rec.requests
        if r["path"] == "/v1/models" and r["status"] == 202
        for reg in r["body"]
    ]
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
        {"model": "m", "version": "1", "reason": "queue_full", "count": 45}
    ]
    rec.script["/v1/events"] = [
        (500, {})
    ]  # not retryable: the batch fails at once, the counts stay
    assert not mlwatch.flush(5.0)  # handled in time, and lost
    for i in range(3):
        predict({"i": i})
    assert mlwatch.flush(5.0)
    for i in range(2):
        predict({"i": i})
    assert mlwatch.flush(5.0)
    headers = [report(r) for r in rec.posts()]
    [(first_id, first), (again_id, again), (next_id, last)] = headers  # type: ignore[misc]
    assert first == again == [("m", "1", "queue_full", 45)]
    assert again_id == first_id  # the same report until a request carrying it succeeds
    assert last == [("m", "1", "send_failed", 5)]  # then a new one, of what came since
    assert next_id != first_id
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
    assert not mlwatch.flush(10.0)  # given up: lost
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
    assert not mlwatch.flush(5.0)  # rejected: lost
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
    assert not mlwatch.flush(10.0)  # nothing could be delivered
    assert sum(n for (_k, reason), n in drops().items() if reason == "send_failed") == 1000
    assert not runtime.shutdown(5.0)  # the registration, retried until now, is lost too


def test_flush_times_out_and_shutdown_keeps_one_deadline(server: tuple[str, Recorder]) -> None:
    url, rec = server
    start(url, flush_interval_ms=60_000, send_timeout_s=30)
    rec.gate.clear()  # the sidecar hangs
    predict({"i": 1})
    assert not mlwatch.flush(0.3)
    t0 = time.monotonic()
    assert not mlwatch.shutdown(0.5)  # the send in progress ends by the deadline (lost)
    assert time.monotonic() - t0 < 1.0
    worker = runtime._current.shipper.thread  # type: ignore[union-attr]
    assert worker is not None and not worker.is_alive()
    assert mlwatch.shutdown(0.5)  # idempotent: same deadline, already passed
    assert time.monotonic() - t0 < 1.0
    rec.gate.set()


def test_feedback_is_shipped(server: tuple[str, Recorder]) -> None:
    url, rec = server
    start(url, flush_interval_ms=60_000)
    mlwatch.log_feedback("req-1", 1)
    mlwatch.log_feedback("req-2", "cat", model="other", ts=1_700_000_000.5)
    assert mlwatch.flush(5.0)
    [post] = [r for r in rec.requests if r["path"] == "/v1/feedback"]
    assert [(f["model"], f["request_id"], f["label"]) for f in post["body"]] == [
        ("m", "req-1", 1),
        ("other", "req-2", "cat"),
    ]
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
    env = {
        **os.environ,
        "MLWATCH_SIDECAR_URL": url,
        "MLWATCH_FLUSH_INTERVAL_MS": "60000",
        "MLWATCH_BATCH_SIZE": "1000",
    }
    env.pop("MLWATCH_CONFIG", None)
    proc = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        cwd=REPO,
        timeout=60,
        capture_output=True,
        text=True,
    )
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
    runtime.start(
        load_config(
            env={}, model="loc", version="2", data_dir=str(tmp_path), flush_interval_ms=60_000
        )
    )

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
    config.write_text(
        "models:\n  - name: loc\n    features:\n"
        "      - {name: email, type: categorical, sensitive: true}\n"
        "      - {name: ssn, type: categorical, sensitive: drop}\n"
    )
    runtime.start(
        load_config(config, env={}, model="loc", data_dir=str(tmp_path / "d"), hash_key="k")
    )

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


# -- one bad call site, event or batch never stops the others ----------------------------


def _shipper(exporter: Any, identity_of: Any = None, **kw: Any) -> Shipper:
    kw.setdefault("queue_size", 10_000)
    kw.setdefault("batch_size", 100)
    return Shipper(
        exporter,
        flush_interval_s=60.0,
        retry_timeout_s=1.0,
        identity_of=identity_of or (lambda s: Identity(s.model, "1", "c")),
        registration_of=lambda s: {"model": s.model, "version": "1"},
        **kw,
    )


def test_a_site_whose_identity_fails_costs_only_its_own_calls() -> None:
    good, bad = Site(name="good", model="good"), Site(name="bad_fn", model="bad", version="2")

    def identity_of(site: Site) -> Identity:
        if site is bad:
            raise TypeError("'int' object is not subscriptable")  # what run_id=12345 did
        return Identity(site.model or "m", "1", "c")

    sink = MemoryExporter()
    shipper = _shipper(sink, identity_of)
    try:
        for rnd in range(3):
            for i in range(5):
                shipper.record(good, 1000, {"i": i}, i, None, None)
            shipper.record(bad, 1000, {"i": 0}, 0, None, None)
            shipper.drops.add(bad, "queue_full")
            assert not shipper.flush(5.0)  # the bad site's calls were lost
            assert len(sink.records["events"]) == 5 * (rnd + 1)
        reports = [validate_drop_report(d) for d in sink.dropped]
        assert [sorted(r[1]) for r in reports] == [
            [("bad", "2", "error", 1), ("bad", "2", "queue_full", 1)]
        ] * 3
        assert shipper.drops.snapshot() == {}  # each report went out with the good events
    finally:
        assert shipper.shutdown(5.0)


def test_a_drain_that_fails_midway_counts_what_it_held(monkeypatch: pytest.MonkeyPatch) -> None:
    from mlwatch.client import shipper as shipper_mod

    site = Site(name="p", model="m")
    sink = MemoryExporter()
    shipper = _shipper(sink)
    real_build = shipper_mod.build
    calls = []

    def flaky_build(*args: Any) -> list[dict[str, Any]]:
        calls.append(1)
        if len(calls) == 1:
            raise MemoryError("out of memory while building events")
        return real_build(*args)

    monkeypatch.setattr(shipper_mod, "build", flaky_build)
    try:
        shipper.record_rows(site, 1000, [{"i": 1}, {"i": 2}], [1, 2], None, None, 2)
        shipper.record(site, 1000, {"i": 3}, 3, None, None)
        assert not shipper.flush(5.0)  # the calls being built were lost
        assert sink.records["events"] == []
        assert shipper.drops.snapshot() == {(site, "error"): 3}
        shipper.record(site, 1000, {"i": 4}, 4, None, None)
        assert shipper.flush(5.0)
        assert len(sink.records["events"]) == 1
        assert [validate_drop_report(d)[1] for d in sink.dropped] == [[("m", "1", "error", 3)]]
        assert shipper.extra_rows == 0
    finally:
        assert shipper.shutdown(5.0)


def test_drop_report_never_raises_on_a_bad_site() -> None:
    site = Site(name="predict", model="bad name!")

    def broken(s: Site) -> Identity:
        raise RuntimeError("boom")

    assert DropCounts.report({(site, "queue_full"): 2}, broken, "r1") == [
        {
            "model": "predict",
            "version": "unknown",
            "reason": "queue_full",
            "count": 2,
            "report_id": "r1",
        }
    ]


def test_one_unencodable_event_costs_only_itself(
    server: tuple[str, Recorder], monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlwatch.client import shipper as shipper_mod

    url, rec = server
    real_build = shipper_mod.build

    def poisoned(*args: Any) -> list[dict[str, Any]]:
        events = real_build(*args)
        if len(events) > 3:
            events[3]["prediction"] = {"x": object()}  # neither orjson nor json encodes it
        return events

    monkeypatch.setattr(shipper_mod, "build", poisoned)
    start(url, flush_interval_ms=60_000)
    for i in range(10):
        predict({"i": i})
    assert not mlwatch.flush(5.0)  # one event could not be encoded
    assert sorted(e["features"]["i"] for e in rec.events()) == [0, 1, 2, 4, 5, 6, 7, 8, 9]
    assert drops() == {(("m", "1"), "error"): 1}
    predict({"i": 10})
    assert mlwatch.flush(5.0)
    assert report(rec.posts()[-1])[1] == [("m", "1", "error", 1)]  # type: ignore[index]


@pytest.mark.parametrize("encoder", ["orjson", "json"])
def test_exporter_encodes_event_by_event_when_the_batch_fails(
    server: tuple[str, Recorder], encoder: str
) -> None:
    url, rec = server
    exp = HttpExporter(url)
    if encoder == "json":  # the encoder of hosts without orjson
        exp._dumps = lambda v: json.dumps(v, separators=(",", ":"), allow_nan=False).encode()
    bad = {"model": "m", "latency_ms": 1, "prediction": {1j}}
    records = [{"model": "m", "latency_ms": i} for i in range(3)]
    res = exp.export(
        ExportBatch(
            "events", [records[0], bad, records[1], records[2]], deadline=time.monotonic() + 5
        )
    )
    assert res == Partial(lost=[(Result.ERROR, [bad])], report_sent=False)
    assert rec.events() == records
    exp.shutdown()


# -- wide models: requests capped by size, split on 413 ---------------------------------


def _wide(i: int, n: int = 200) -> dict[str, float]:
    return {f"embedding_dimension_{k:04d}": i + k / 1000 for k in range(n)}


def test_requests_are_capped_by_serialized_size(server: tuple[str, Recorder]) -> None:
    url, rec = server
    cap = 40_000
    runtime.start(
        load_config(
            env={},
            sidecar_url=url,
            model="m",
            version="1",
            code_version="c",
            flush_interval_ms=60_000,
        ),
        exporter=HttpExporter(url, max_request_bytes=cap),
    )
    for i in range(50):  # ~7.5 KB each: 5 per request
        predict(_wide(i))
    assert mlwatch.flush(10.0)
    posts = rec.posts()
    assert len(posts) >= 10 and all(r["size"] <= cap and r["status"] == 202 for r in posts)
    assert [e["features"]["embedding_dimension_0000"] for e in rec.events()] == list(range(50))
    assert drops() == {}


def test_413_splits_the_batch_and_drops_only_an_event_too_large_alone(
    server: tuple[str, Recorder],
) -> None:
    url, rec = server
    rec.max_bytes = 60_000  # the client's cap (8 MiB) is far above the server's limit
    start(url, flush_interval_ms=60_000)
    for i in range(40):
        predict(_wide(i))
    predict(_wide(40, n=1_000))  # ~37 KB ... fits alone
    predict({"huge": "x" * 2_000, **_wide(41, n=1_900)})  # ~70 KB: never fits
    assert not mlwatch.flush(10.0)  # the event too large is lost
    posts = rec.posts()
    assert posts[0]["status"] == 413 and all(
        r["size"] <= 60_000 for r in posts if r["status"] == 202
    )
    got = sorted(e["features"]["embedding_dimension_0000"] for e in rec.events())
    assert got == list(range(41))
    assert drops() == {(("m", "1"), "rejected"): 1}


def test_the_drop_report_rides_on_split_requests_under_one_id(server: tuple[str, Recorder]) -> None:
    url, rec = server
    start(url, flush_interval_ms=60_000)
    predict({"i": 0})
    assert mlwatch.flush(5.0)
    rec.max_bytes = 30_000
    runtime._current.shipper.drops.add(("m", "1"), "queue_full", 7)  # type: ignore[union-attr]
    for i in range(20):
        predict(_wide(i))
    assert not mlwatch.flush(10.0)  # 7 calls were dropped
    posts = rec.posts()[1:]
    first_ok = next(i for i, r in enumerate(posts) if r["status"] == 202)
    assert first_ok > 0  # 413 first, then halves
    sent = [report(r) for r in posts[: first_ok + 1]]
    assert sent[0] is not None and sent[0][1] == [("m", "1", "queue_full", 7)]
    assert all(r == sent[0] for r in sent)  # one id: the sidecar counts it once
    assert all(report(r) is None for r in posts[first_ok + 1 :])
    assert len(rec.events()) == 21
    assert drops() == {}


# -- flush waits for the batch being exported ---------------------------------------------


class Blocking(MemoryExporter):
    """An exporter whose events export waits until ``release`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def export(self, batch: ExportBatch) -> Any:
        if batch.kind == "events" and batch.records:
            self.entered.set()
            self.release.wait(10)
        return super().export(batch)


def test_flush_waits_for_the_export_in_flight() -> None:
    sink = Blocking()
    runtime.start(
        load_config(env={}, model="m", code_version="c", flush_interval_ms=10), exporter=sink
    )
    predict({"a": 1})
    assert sink.entered.wait(5)  # the worker took the event off the queue and is exporting
    t0 = time.monotonic()
    assert not mlwatch.flush(0.3)  # the queue is empty, but the export is not done
    assert time.monotonic() - t0 >= 0.25
    threading.Timer(0.3, sink.release.set).start()
    assert mlwatch.flush(5.0)
    assert len(sink.records["events"]) == 1
    assert mlwatch.shutdown(5.0)


# -- local mode applies retention ------------------------------------------------------


def test_local_mode_purges_at_most_once_an_hour(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    exp = LocalExporter(tmp_path / "store.db", retention_days=1.0, clock=lambda: now[0])
    purges: list[int] = []
    real = EmbeddedStore.purge

    def counting(self: EmbeddedStore, **kw: Any) -> int:
        purges.append(1)
        return real(self, **kw)

    monkeypatch.setattr(EmbeddedStore, "purge", counting)
    old = {"model": "loc", "latency_ms": 1.0, "ts": "2020-01-01T00:00:00Z"}

    def export() -> Any:
        return exp.export(ExportBatch("events", [dict(old)], deadline=0.0))

    assert export() is Result.OK
    assert len(purges) == 1  # the first export purges (the 2020 event is gone already)
    now[0] += 3599
    export()
    assert len(purges) == 1
    now[0] += 1
    export()
    assert len(purges) == 2
    assert exp._open().count_events("loc") == 0  # each purge removed the old event
    exp.shutdown()


# -- drop counts at shutdown and on retries ----------------------------------------------


def test_drop_counts_left_at_shutdown_go_out_in_a_last_request(
    server: tuple[str, Recorder],
) -> None:
    url, rec = server
    start(url, flush_interval_ms=60_000)
    predict({"i": 0})
    assert mlwatch.flush(5.0)
    runtime._current.shipper.drops.add(("m", "1"), "queue_full", 3)  # type: ignore[union-attr]
    assert not mlwatch.shutdown(5.0)  # 3 calls were dropped
    last = rec.posts()[-1]
    assert (last["body"], last["status"]) == ([], 202)
    assert report(last)[1] == [("m", "1", "queue_full", 3)]  # type: ignore[index]


def test_report_id_is_kept_across_retries_and_renewed_after_success(
    server: tuple[str, Recorder],
) -> None:
    url, rec = server
    start(url, flush_interval_ms=60_000)
    predict({"i": 0})
    assert mlwatch.flush(5.0)
    shipper = runtime._current.shipper  # type: ignore[union-attr]
    assert shipper is not None
    shipper.drops.add(("m", "1"), "queue_full", 2)
    rec.script["/v1/events"] = [(503, {"Retry-After": "0"}), (202, {})]
    predict({"i": 1})
    assert not mlwatch.flush(10.0)  # 2 calls were dropped
    shipper.drops.add(("m", "1"), "queue_full", 4)
    predict({"i": 2})
    assert not mlwatch.flush(5.0)  # 4 more were dropped
    [retried, ok, after] = [report(r) for r in rec.posts()[1:]]
    assert retried == ok and ok is not None and ok[1] == [("m", "1", "queue_full", 2)]
    assert after is not None and after[1] == [("m", "1", "queue_full", 4)]
    assert after[0] != ok[0]
    assert drops() == {}
