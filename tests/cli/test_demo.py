"""The README's first command, as a smoke test: ``mlwatch demo`` end to end."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.servers import SidecarProcess, get_text

pytestmark = pytest.mark.integration


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlwatch",
            "demo",
            "--requests",
            "1200",
            "--data-dir",
            str(tmp_path / "demo"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    stored = re.search(r"events stored\s+(\d+) \(sent 1200, (\d+) with status=error\)", out)
    assert stored and int(stored.group(1)) == 1200, out
    errors = int(stored.group(2))
    assert errors == len(range(0, 1200, 97))  # every 97th request is malformed on purpose
    labels = re.search(r"feedback stored\s+(\d+) labels", out)
    assert labels and 500 < int(labels.group(1)) < 900, out
    assert f'status="error",version="1"}} {errors}.0' in out
    assert (tmp_path / "demo" / "store.db").exists()
    assert "serving predictions" in proc.stderr
    # the drift job finds exactly the injected shift, and only after it
    before = re.search(r"before the shift\s+600 rows, (\d+) of 30 features drifted", out)
    after = re.search(
        r"after the shift\s+600 rows, (\d+) of 30 features drifted.*"
        r"dataset drift YES: (.*)",
        out,
    )
    assert before and int(before.group(1)) <= 1, out
    assert after and int(after.group(1)) == 2, out
    assert "mean radius (ks" in after.group(2) and "mean texture (ks" in after.group(2)
    accuracy = re.search(r"accuracy\s+(0\.\d+)\s+\(95% CI (0\.\d+)-(0\.\d+), n=(\d+)\)", out)
    assert accuracy, out
    assert float(accuracy.group(2)) <= float(accuracy.group(1)) <= float(accuracy.group(3))
    assert 0.85 < float(accuracy.group(1)) < 1.0 and int(accuracy.group(4)) > 500
    # what it prints stays true after it exits: no address of its own, stopped sidecar
    port = re.search(r"sidecar ready on port (\d+)", out)
    assert port and f"127.0.0.1:{port.group(1)}" not in out
    assert f"mlwatch scheduler --config {tmp_path / 'demo' / 'mlwatch.yaml'} --once" in out
    # the shift starts retraining: one trigger, delivered to the stand-in pipeline, signed
    assert re.search(r"trigger\s+\S+: dataset drift share 0\.\d+ >= 0\.05", out), out
    assert "delivered after 1 attempt(s), signed webhook" in out
    assert "pipeline         run started for breast-cancer" in out
    # MLflow: the model served by its alias, results written next to its training run
    assert "registered it as breast-cancer version 1, alias champion" in out
    assert "serving models:/breast-cancer@champion, loaded back from MLflow" in out
    served = re.search(r"model version\s+breast-cancer:1 \(run ([0-9a-f]{32})\)", out)
    assert served, out
    assert (
        f"MLflow             file://{tmp_path / 'demo' / 'mlruns'} (training run {served.group(1)})"
        in out
    )
    assert "run 'mlwatch breast-cancer 1' in experiment 'breast-cancer-training'" in out
    latest = re.search(
        r"latest\s+drift.share (0\.\d+), drift.dataset_drift 1\.000, kpi.accuracy", out
    )
    assert latest, out
    secret = (tmp_path / "demo" / "webhook.secret").stat()
    assert secret.st_mode & 0o777 == 0o600  # only its owner reads the signing secret
    the_advice_still_works(tmp_path / "demo", out)


def the_advice_still_works(root: Path, out: str) -> None:
    """The commands the demo prints work on the data it leaves."""
    config = root / "mlwatch.yaml"
    assert f"mlwatch status breast-cancer --data-dir {root}" in out
    page = (root / "report.html").read_text()  # the HTML report, named in the output
    assert f"HTML report        {root / 'report.html'} (open it in a browser)" in out
    assert "breast-cancer" in page and "mean radius" in page and "<svg" in page
    status = mlwatch("status", "breast-cancer", "--data-dir", str(root), "--format", "json")
    assert json.loads(status)["events_stored"] == 1200
    once = json.loads(mlwatch("scheduler", "--config", str(config), "--once"))
    assert once["breast-cancer"]["drift"]["1"]["rows"] == 1200  # the last hour holds it all
    sc = SidecarProcess(root, MLWATCH_CONFIG=str(config)).start()  # served again
    try:
        metrics = get_text(sc.url + "/metrics")
    finally:
        sc.stop()
    assert (
        'mlwatch_predictions_total{environment="default",model="breast-cancer",status="ok",version="1"}'
        in metrics
    )
    assert (
        'mlwatch_dataset_drift{environment="default",model="breast-cancer",version="1"}' in metrics
    )  # restored
    # the served version with its MLflow run, from the store and the sidecar's own lookup
    assert re.search(
        r'mlwatch_model_info\{code_version="[^"]*",environment="default",model="breast-cancer",run_id="[0-9a-f]{32}",version="1"\}',
        metrics,
    ), metrics


def mlwatch(*args: str) -> str:
    run = subprocess.run(
        [sys.executable, "-m", "mlwatch", *args], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout


def test_demo_refuses_to_wipe_a_directory_it_did_not_make(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    proc = subprocess.run(
        [sys.executable, "-m", "mlwatch", "demo", "--requests", "10", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "not made by 'mlwatch demo'" in proc.stderr
    assert (tmp_path / "precious.txt").read_text() == "keep me"
