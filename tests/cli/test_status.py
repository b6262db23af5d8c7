"""``mlwatch status [MODEL]``: the known models and one model's status, from a data
directory read-only or from a running sidecar, with the sidecar's "did you mean" for a
model nothing is known about."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mlwatch.cli import main
from mlwatch.store import EmbeddedStore
from mlwatch.store.payloads import EVENTS
from mlwatch.wire import validate_event, validate_feedback, validate_registration
from tests.helpers import event, free_port, wait_until

TOKEN = "status-token-123456"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No setting from the environment of the test run; the working directory is empty."""
    for key in list(os.environ):
        if key.startswith("MLWATCH_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


def fill(data_dir: Path) -> None:
    """Two iris events, a label, a registered churn version, a drift and a KPI result."""
    store = EmbeddedStore(data_dir / "store.db", retention_days=0)
    store.insert_events(
        [validate_event({"model": "iris", "version": v, "latency_ms": 1.0}) for v in "12"]
    )
    store.insert_feedback([validate_feedback({"model": "iris", "request_id": "r1", "label": 1})])
    reg = {"model": "churn", "version": "7", "code_version": "abc123", "run_id": "run-7"}
    store.register_model(validate_registration(reg | {"task": "classification"}))
    drift = {"features": [{"name": "x", "drifted": True}, {"name": "y", "drifted": False}]}
    store.put_result("iris", "1", "drift", 0, 3_600_000_000, drift | {"dataset_drift": True})
    accuracy = {"value": 0.875, "lower": 0.52, "upper": 0.98, "n": 8}
    roc_auc = {"value": None, "lower": None, "upper": None, "n": 8, "reason": "single class"}
    kpi = {"n_rows": 10, "n_labelled": 8, "kpis": {"accuracy": accuracy, "roc_auc": roc_auc}}
    store.put_result("iris", "1", "kpi", 0, 3_600_000_000, kpi)
    store.close()


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["status", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_no_store_is_said_and_nothing_is_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    where = tmp_path / "nowhere"
    code, out, err = run(capsys, "--data-dir", str(where))
    assert code == 2 and out == ""
    assert err == (
        f"mlwatch status: no mlwatch store at {where / 'store.db'}; is --data-dir the sidecar's?\n"
    )
    assert not where.exists()


def test_the_model_list_as_a_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fill(tmp_path / "data")
    config = tmp_path / "mlwatch.json"
    config.write_text(json.dumps({"models": [{"name": "fraud"}]}))
    code, out, _ = run(capsys, "--config", str(config), "--data-dir", str(tmp_path / "data"))
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == [
        "model",
        "versions",
        "events",
        "feedback",
        "last",
        "event",
        "configured",
    ]
    assert lines[2].split() == ["churn", "7", "0", "0", "-", "-"]
    assert lines[3].split() == ["fraud", "-", "0", "0", "-", "yes"]
    assert lines[4].split()[:5] == ["iris", "1,", "2", "2", "1"]
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["store.db"]


def test_the_data_dir_setting_is_the_default(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fill(tmp_path / "elsewhere")
    monkeypatch.setenv("MLWATCH_DATA_DIR", str(tmp_path / "elsewhere"))
    code, out, _ = run(capsys, "--format", "json")
    assert code == 0 and [m["model"] for m in json.loads(out)["models"]] == ["churn", "iris"]


def test_one_model_is_readable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fill(tmp_path / "data")
    code, out, _ = run(capsys, "iris", "--data-dir", str(tmp_path / "data"))
    assert code == 0
    assert out.splitlines()[0] == "model iris"
    assert "  events stored    2\n" in out and "  feedback stored  1\n" in out
    assert "  versions         none registered\n" in out
    assert "  sinks            n/a: read from the store directly" in out
    assert "1 of 2 features drifted (x); dataset drift: YES" in out
    assert "8 of 10 predictions labelled" in out
    assert "accuracy  0.8750  [0.5200, 0.9800]  n=8" in out
    assert "roc_auc   n/a (single class)" in out
    code, out, _ = run(capsys, "churn", "--data-dir", str(tmp_path / "data"))
    assert "7 (code abc123, run run-7, classification)" in out
    assert "  drift            no result yet\n" in out


def test_json_is_the_raw_answer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fill(tmp_path / "data")
    code, out, _ = run(capsys, "iris", "--data-dir", str(tmp_path / "data"), "--format", "json")
    status = json.loads(out)
    assert code == 0 and status["events_stored"] == 2 and status["feedback_stored"] == 1
    assert status["drift"]["1"]["dataset_drift"] is True and "sinks" not in status


def test_an_unknown_model_exits_2_with_did_you_mean(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fill(tmp_path / "data")
    code, out, err = run(capsys, "irsi", "--data-dir", str(tmp_path / "data"))
    assert code == 2 and out == "" and err.count("\n") == 1
    assert err.startswith("mlwatch status: unknown model 'irsi'")
    assert "Did you mean 'iris'?" in err and "Known models: churn, iris." in err


def test_a_running_sidecar_with_the_token_from_the_environment(
    live_sidecar: Callable[..., Any],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, sidecar = live_sidecar(token=TOKEN)
    sidecar.accept(EVENTS, [event(i) for i in range(3)])
    wait_until(lambda: sidecar.spool.lag_bytes("store") == 0, what="the events stored")
    code, _, err = run(capsys, "--url", url)
    assert code == 2 and "answered 401" in err and "MLWATCH_TOKEN" in err
    monkeypatch.setenv("MLWATCH_TOKEN", TOKEN)
    code, out, _ = run(capsys, "--url", url)
    assert code == 0 and out.splitlines()[2].split()[:4] == ["iris", "1", "3", "0"]
    monkeypatch.setenv("MLWATCH_SIDECAR_URL", url)  # the setting is the default
    code, out, _ = run(capsys, "iris")
    assert code == 0 and "  events stored    3\n" in out
    assert "  sinks            store: lag 0 bytes, healthy\n" in out
    code, _, err = run(capsys, "irsi")
    assert code == 2 and err.startswith("mlwatch status: unknown model 'irsi'")
    assert "Did you mean 'iris'?" in err and TOKEN not in err


def test_a_sidecar_that_is_not_there(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    code, _, err = run(capsys, "--url", url)
    assert code == 2 and err.startswith(f"mlwatch status: cannot reach the sidecar at {url}")
    code, _, err = run(capsys, "--url", "ftp://example.com")
    assert code == 2 and "expected an http:// or https:// URL" in err


def test_the_token_is_never_a_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--token", TOKEN]) == 2
    err = capsys.readouterr().err
    assert "--token is not a flag" in err and "MLWATCH_TOKEN" in err and TOKEN not in err


def test_a_redirect_is_not_followed(capsys: pytest.CaptureFixture[str]) -> None:
    """The token must not travel to wherever a redirect points."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class Redirect(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(302)
            self.send_header("Location", "http://example.invalid/steal")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Redirect)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        code, _, err = run(capsys, "--url", f"http://127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()
        server.server_close()
    assert code == 2 and "answered 302" in err and "example.invalid" not in err


def test_environment_filters_the_counts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = EmbeddedStore(tmp_path / "d" / "store.db", retention_days=0)
    store.insert_events(
        [validate_event(event(i, environment="prod" if i else "qa")) for i in range(4)]
    )
    store.close()
    where = ("--data-dir", str(tmp_path / "d"), "--format", "json")
    code, out, _ = run(capsys, "iris", *where, "--environment", "prod")
    assert code == 0 and json.loads(out)["events_stored"] == 3
    code, out, _ = run(capsys, *where, "--environment", "qa")
    assert [m["events_stored"] for m in json.loads(out)["models"]] == [1]
    code, out, _ = run(capsys, *where, "--environment", "dev")
    assert [m["events_stored"] for m in json.loads(out)["models"]] == [0]
