"""``mlwatch scheduler``: never a new, empty store; ``--once`` says why a result is empty,
carries its window, and fails with ``--strict``."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from mlwatch.store import EmbeddedStore
from mlwatch.wire import format_ts, validate_event


def scheduler(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlwatch", "scheduler", "--config", str(tmp_path / "m.yaml"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )


def setup(tmp_path: Path, *, hours_ago: float) -> Path:
    rng = np.random.default_rng(1)
    pd.DataFrame({"x": rng.normal(0, 1, 500)}).to_csv(tmp_path / "ref.csv", index=False)
    data = tmp_path / "data"
    store = EmbeddedStore(data / "store.db")
    at = time.time() - hours_ago * 3600
    store.insert_events(
        [
            validate_event(
                {
                    "model": "m",
                    "latency_ms": 1.0,
                    "ts": format_ts(int((at + i) * 1e9)),
                    "features": {"x": float(rng.normal())},
                }
            )
            for i in range(50)
        ]
    )
    store.close()
    (tmp_path / "m.yaml").write_text(
        f"models:\n  - name: m\n    features: [x]\n    reference: {tmp_path / 'ref.csv'}\n"
        "    window: 10m\n    sliding: true\n"
    )
    return data


def test_without_the_sidecars_data_dir_it_refuses_and_creates_nothing(tmp_path: Path) -> None:
    setup(tmp_path, hours_ago=0)
    run = scheduler(tmp_path, "--once")  # forgot --data-dir: ./mlwatch-data
    assert run.returncode == 2, run.stderr
    assert "no mlwatch store at mlwatch-data/store.db" in run.stderr
    assert not (tmp_path / "mlwatch-data").exists()


def test_once_explains_an_empty_window_and_strict_fails(tmp_path: Path) -> None:
    data = setup(tmp_path, hours_ago=5)  # the traffic is older than the 10-minute window
    run = scheduler(tmp_path, "--once", "--data-dir", str(data))
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["m"]["drift"] == {} and len(out["m"]["window"]) == 2
    assert "drift m: no events in [" in run.stderr
    assert "holds 50 events of m from " in run.stderr
    assert "kpi m: no events in [" in run.stderr
    strict = scheduler(tmp_path, "--once", "--strict", "--data-dir", str(data))
    assert strict.returncode == 1, strict.stderr


def test_once_with_results_says_nothing_of_the_drift(tmp_path: Path) -> None:
    data = setup(tmp_path, hours_ago=0.05)  # 3 minutes ago: inside the 10-minute window
    run = scheduler(tmp_path, "--once", "--data-dir", str(data))
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["m"]["drift"]["unknown"]["rows"] == 50
    assert out["m"]["window"][1] > out["m"]["window"][0]
    assert "drift m: no events" not in run.stderr
