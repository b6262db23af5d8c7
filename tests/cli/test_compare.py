"""``mlwatch compare``: exit codes for CI, the JSON shape, errors that name the file and
the column, and served traffic of two versions from a data directory's store."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlwatch.cli import main
from mlwatch.store import EmbeddedStore
from mlwatch.wire import validate_event, validate_feedback


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in list(os.environ):
        if key.startswith("MLWATCH_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


def predictions(
    path: Path, seed: int, p_correct: float, n: int = 4000, latency: float = 20
) -> Path:
    rng = np.random.default_rng(seed)
    y = rng.choice(["stay", "leave"], n)
    right = rng.random(n) < p_correct
    pred = np.where(right, y, np.where(y == "stay", "leave", "stay"))
    p_leave = np.clip(np.where(pred == "leave", 0.8, 0.2) + rng.normal(0, 0.05, n), 0, 1)
    frame = pd.DataFrame(
        {"y": y, "pred": pred, "p_leave": p_leave, "latency_ms": rng.gamma(4, latency / 4, n)}
    )
    frame.to_parquet(path)
    return path


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["compare", *args])
    out, err = capsys.readouterr()
    return code, out, err


def file_args(a: Path, b: Path, *more: str) -> list[str]:
    return [
        "--baseline-file", str(a), "--candidate-file", str(b),
        "--label-column", "y", "--prediction-column", "pred", *more,
    ]  # fmt: skip


def test_a_worse_candidate_fails_the_pipeline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = predictions(tmp_path / "a.parquet", 1, 0.85)
    b = predictions(tmp_path / "b.parquet", 2, 0.78)
    code, out, _ = run(capsys, *file_args(a, b, "--margin", "accuracy=0.01"))
    assert code == 1
    assert "accuracy" in out and "worse" in out.splitlines()[-1]


def test_an_equal_candidate_passes_and_the_json_shape(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = predictions(tmp_path / "a.parquet", 1, 0.85)
    b = predictions(tmp_path / "b.parquet", 2, 0.85)
    code, out, _ = run(
        capsys,
        *file_args(a, b, "--score-columns", "p_leave", "--margin", "accuracy=0.05", "--json"),
    )
    assert code == 0
    body = json.loads(out)
    assert body["verdict"] in ("no difference", "not enough data")
    assert body["baseline"] == str(a) and body["task"] == "classification"
    kpis = {k["kpi"]: k for k in body["kpis"]}
    assert set(kpis) == {
        "accuracy", "log_loss", "brier", "error_ratio", "latency_p50", "latency_p99"
    }  # fmt: skip
    assert kpis["accuracy"]["verdict"] == "no difference"
    assert set(kpis["accuracy"]) >= {
        "baseline", "candidate", "difference", "lower", "upper", "fixed_lower", "fixed_upper",
        "n_baseline", "n_candidate", "margin", "alpha", "verdict", "gated", "reason",
    }  # fmt: skip
    assert body["prediction_drift"]["drifted"] is False
    assert body["counts"]["baseline"] == {"events": 4000, "errors": 0, "labelled": 4000}


def test_fail_undecided_exits_3_until_the_data_decides(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = predictions(tmp_path / "a.parquet", 1, 0.85, n=60)  # under min_samples (100)
    b = predictions(tmp_path / "b.parquet", 2, 0.85, n=60)
    code, out, _ = run(capsys, *file_args(a, b, "--gate", "accuracy", "--json"))
    assert (code, json.loads(out)["verdict"]) == (0, "not enough data")
    code, _, _ = run(capsys, *file_args(a, b, "--gate", "accuracy", "--fail-undecided"))
    assert code == 3
    worse = predictions(tmp_path / "w.parquet", 3, 0.6)
    full = predictions(tmp_path / "f.parquet", 4, 0.85)
    code, _, _ = run(capsys, *file_args(full, worse, "--gate", "accuracy", "--fail-undecided"))
    assert code == 1  # decided: worse is 1, as without the flag


def test_a_missing_column_names_the_file_and_the_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = predictions(tmp_path / "a.parquet", 1, 0.85)
    b = predictions(tmp_path / "b.parquet", 2, 0.85)
    code, _, err = run(capsys, *file_args(a, b, "--label-column", "truth"))
    assert code == 2
    assert str(a) in err and "'truth'" in err and "--label-column" in err


def test_a_missing_file_and_bad_margins_are_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = predictions(tmp_path / "a.parquet", 1, 0.85)
    code, _, err = run(capsys, *file_args(a, tmp_path / "nope.csv"))
    assert code == 2 and "nope.csv: no such file" in err
    code, _, err = run(capsys, *file_args(a, a, "--margin", "accuracy"))
    assert code == 2 and "--margin" in err
    code, _, err = run(capsys, *file_args(a, a, "--gate", "mae"))
    assert code == 2 and "cannot gate on mae" in err


def test_regression_files_are_inferred(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(0)
    y = rng.normal(50, 10, 3000)
    for name, noise in (("a.csv", 1.0), ("b.csv", 3.0)):
        pd.DataFrame({"y": y, "pred": y + rng.normal(0, noise, 3000)}).to_csv(
            tmp_path / name, index=False
        )
    code, out, _ = run(capsys, *file_args(tmp_path / "a.csv", tmp_path / "b.csv", "--json"))
    body = json.loads(out)
    assert code == 1 and body["task"] == "regression"
    assert {k["kpi"]: k["verdict"] for k in body["kpis"]}["mae"] == "worse"


def seed_store(data_dir: Path, n: int = 1500) -> None:
    """Two versions of churn over the same period: v2 is right less often and slower."""
    rng = np.random.default_rng(5)
    store = EmbeddedStore(data_dir / "store.db", retention_days=0)
    events: list[dict[str, Any]] = []
    labels = []
    for version, p_right, latency in (("v1", 0.9, 10.0), ("v2", 0.75, 14.0)):
        for i in range(n):
            y = int(rng.integers(0, 2))
            pred = y if rng.random() < p_right else 1 - y
            rid = f"{version}-{i}"
            events.append(
                {
                    "model": "churn",
                    "version": version,
                    "request_id": rid,
                    "latency_ms": float(rng.gamma(4, latency / 4)),
                    "prediction": pred,
                    "status": "error" if i % 100 == 0 else "ok",
                }
            )
            labels.append({"model": "churn", "request_id": rid, "label": y})
    store.insert_events([validate_event(e) for e in events])
    store.insert_feedback([validate_feedback(f) for f in labels])
    store.close()


def test_served_versions_from_the_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seed_store(tmp_path)
    code, out, _ = run(
        capsys, "--model", "churn", "--baseline", "v1", "--candidate", "v2",
        "--data-dir", str(tmp_path), "--json",
    )  # fmt: skip
    assert code == 1
    body = json.loads(out)
    kpis = {k["kpi"]: k for k in body["kpis"]}
    assert (body["baseline"], body["candidate"]) == ("v1", "v2")
    assert kpis["accuracy"]["verdict"] == "worse"
    assert kpis["latency_p50"]["difference"] > 0
    assert body["counts"]["baseline"]["events"] == 1500
    assert body["counts"]["baseline"]["errors"] == 15
    assert kpis["accuracy"]["n_baseline"] == 1485  # error events are not scored
    # the other way round the candidate is better (on accuracy: with the equal error
    # ratios in the gate too, the overall verdict waits for "no difference" on them)
    code, out, _ = run(
        capsys, "--model", "churn", "--baseline", "v2", "--candidate", "v1",
        "--data-dir", str(tmp_path), "--gate", "accuracy",
    )  # fmt: skip
    assert code == 0 and "better" in out.splitlines()[-1]


def test_an_unknown_version_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seed_store(tmp_path, n=10)
    code, _, err = run(
        capsys, "--model", "churn", "--baseline", "v1", "--candidate", "v3",
        "--data-dir", str(tmp_path),
    )  # fmt: skip
    assert code == 2 and "--candidate v3" in err and "v1, v2" in err


def test_a_non_numeric_score_column_names_the_file_and_the_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = predictions(tmp_path / "a.parquet", 1, 0.85)
    frame = pd.read_parquet(a).astype({"p_leave": object})
    frame.loc[3, "p_leave"] = "high"
    frame.to_csv(tmp_path / "b.csv", index=False)
    code, _, err = run(capsys, *file_args(a, tmp_path / "b.csv", "--score-columns", "p_leave"))
    assert code == 2
    assert "b.csv" in err and "'p_leave'" in err and "not numeric" in err


def test_one_version_named_keeps_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seed_store(tmp_path, n=200)
    store = EmbeddedStore(tmp_path / "store.db", retention_days=0)
    event = {"model": "churn", "version": "v3", "request_id": "v3-0", "latency_ms": 5.0}
    store.insert_events([validate_event({**event, "prediction": 1})])
    store.close()
    base = ["--model", "churn", "--data-dir", str(tmp_path), "--json"]
    _, out, _ = run(capsys, *base, "--baseline", "v1")
    assert (json.loads(out)["baseline"], json.loads(out)["candidate"]) == ("v1", "v3")
    _, out, _ = run(capsys, *base, "--candidate", "v2")
    assert (json.loads(out)["baseline"], json.loads(out)["candidate"]) == ("v3", "v2")
    _, out, _ = run(capsys, *base)
    assert (json.loads(out)["baseline"], json.loads(out)["candidate"]) == ("v2", "v3")


def test_environment_compares_that_environments_traffic_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed_store(tmp_path, n=200)  # environment "default"
    store = EmbeddedStore(tmp_path / "store.db", retention_days=0)
    qa = [
        validate_event({"model": "churn", "version": "v3", "request_id": f"qa-{i}",
                        "latency_ms": 5.0, "prediction": 1, "environment": "qa"})
        for i in range(30)
    ]  # fmt: skip
    store.insert_events(qa)
    store.close()
    where = ("--model", "churn", "--data-dir", str(tmp_path), "--json")
    code, out, _ = run(capsys, *where)  # every environment: v3 was served last
    assert json.loads(out)["candidate"] == "v3"
    code, out, _ = run(capsys, *where, "--environment", "default")
    body = json.loads(out)
    assert (body["baseline"], body["candidate"]) == ("v1", "v2")
    assert body["counts"]["baseline"]["events"] == 200
    code, _, err = run(capsys, *where, "--environment", "qa")
    assert code == 2 and "versions served: v3" in err
