"""``mlwatch report --model``: a served model's period from the embedded store — the
stored KPI windows with intervals and thresholds, traffic, versions, drift, triggers —
and the command's errors."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlwatch.cli import main
from mlwatch.stats.drift import compare
from mlwatch.stats.kpi import window_kpis
from mlwatch.store import EmbeddedStore
from mlwatch.times import format_us
from mlwatch.wire import validate_event, validate_registration
from tests.report.conftest import XSS, embedded

HOUR_US = 3_600_000_000
T0 = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
CONFIG = """
models:
  - name: churn
    features: [x]
    alerts:
      kpis: {accuracy: 0.8}
    retrain:
      target: ci
      "on":
        - {kpi: accuracy, below: 0.7, windows: 2}
targets:
  - {name: ci, kind: webhook, url: "https://hooks.example/retrain", secret_env: HOOK_SECRET}
"""


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in list(os.environ):
        if key.startswith("MLWATCH_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


def seed(data_dir: Path) -> dict[str, Any]:
    """Three hours of churn traffic (versions 1 and 2, some errors), a KPI and a drift
    result per hour and version 1, and one retrain trigger; returns what was written."""
    store = EmbeddedStore(data_dir / "store.db", retention_days=0)
    rng = np.random.default_rng(5)
    events = []
    for i in range(300):
        ts_us = T0 + i * 36_000_000  # every 36 s: 100 an hour
        version = "1" if i < 200 else "2"
        failed = i % 25 == 0
        ev = {
            "model": "churn",
            "version": version,
            "request_id": f"r{i}",
            "ts": format_us(ts_us),
            "latency_ms": float(10 + i % 7),
            "status": "error" if failed else "ok",
            "features": {"x": float(rng.normal())},
        }
        if failed:
            ev["error"] = "ValueError"
        else:
            ev["prediction"] = int(rng.integers(0, 2))
        events.append(validate_event(ev))
    store.insert_events(events)
    store.register_model(
        validate_registration(
            {"model": "churn", "version": "2", "code_version": "c2", "run_id": "run-2"}
        )
    )
    rows = [
        ({"prediction": int(y if rng.random() < 0.8 else 1 - y), "ts_us": T0 + k * 36_000_000}, y)
        for k, y in enumerate(rng.integers(0, 2, size=300).tolist())
    ]
    kpis = window_kpis(rows, 3600, min_samples=20)
    for report in kpis:
        start = report.window_start_us
        assert start is not None
        store.put_result("churn", "1", "kpi", start, start + HOUR_US, report.to_dict())
    ref = {"x": rng.normal(size=500), XSS: rng.choice(["a", "b"], size=500)}
    drifts = []
    for h in range(3):
        cur = {"x": rng.normal(0.3 * h, 1, size=500), XSS: rng.choice(["a", "b", "c"], size=500)}
        body = compare(ref, cur).to_dict() | {"rows": 500}
        drifts.append(body)
        store.put_result("churn", "1", "drift", T0 + h * HOUR_US, T0 + (h + 1) * HOUR_US, body)
    body = {"model": "churn", "cause": "kpi:accuracy", "target": "ci", "reason": "accuracy 0.6"}
    store.request_trigger(
        "churn",
        "kpi:accuracy",
        "1",
        T0 + 2 * HOUR_US,
        lambda s, r: None,
        lambda: ("t-1", body, "delivered"),
    )
    store.close()
    return {"kpis": kpis, "drifts": drifts}


def report(tmp_path: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["report", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_served_model_sections(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOK_SECRET", "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY")
    written = seed(tmp_path / "data")
    (tmp_path / "mlwatch.yaml").write_text(CONFIG)
    code, _, err = report(
        tmp_path,
        capsys,
        "--model",
        "churn",
        "--data-dir",
        str(tmp_path / "data"),
        "--config",
        str(tmp_path / "mlwatch.yaml"),
        "--since",
        "2026-01-01T00:00:00Z",
        "--until",
        "2026-01-01T03:00:00Z",
        "--bucket",
        "1h",
        "-o",
        "served.html",
    )
    assert code == 0, err
    html = (tmp_path / "served.html").read_text(encoding="utf-8")
    served = embedded(html)["served"]
    # KPIs: every stored window, with the stored values and intervals
    assert [r["start_us"] for r in served["kpis"]] == [k.window_start_us for k in written["kpis"]]
    for row, kpi in zip(served["kpis"], written["kpis"], strict=True):
        acc = kpi.kpis["accuracy"]
        assert row["kpis"]["accuracy"]["value"] == acc.value
        assert (row["kpis"]["accuracy"]["lower"], row["kpis"]["accuracy"]["upper"]) == (
            acc.lower,
            acc.upper,
        )
    assert served["kpi_thresholds"]["accuracy"] == [
        {"source": "alert", "direction": "below", "value": 0.8},
        {"source": "retrain", "direction": "below", "value": 0.7},
    ]
    assert 'data-kpi="accuracy"' in html and 'class="threshold"' in html
    # traffic: per hour and version, counts and errors as written
    counts = {(r["start"][:13], r["version"]): (r["count"], r["errors"]) for r in served["traffic"]}
    assert counts == {
        ("2026-01-01T00", "1"): (100, 4),
        ("2026-01-01T01", "1"): (100, 4),
        ("2026-01-01T02", "2"): (100, 4),
    }
    assert html.count('class="traffic"') == 3
    # versions served, with the registration of version 2
    versions = {v["version"]: v for v in served["versions"]}
    assert versions["1"]["events"] == 200 and versions["2"]["errors"] == 4
    assert versions["2"]["code_version"] == "c2" and versions["2"]["run_id"] == "run-2"
    # drift: the share per window, and the newest window's features
    assert [w["drift_share"] for w in served["drift_windows"]] == [
        d["drift_share"] for d in written["drifts"]
    ]
    drift = embedded(html)["drift"]
    assert drift["window"] == ["2026-01-01T02:00:00.000000Z", "2026-01-01T03:00:00.000000Z"]
    newest = {f["name"]: f for f in written["drifts"][-1]["features"]}
    assert {f["name"]: f["figures"] for f in drift["features"]} == newest
    # triggers
    [trigger] = served["triggers"]
    assert (trigger["cause"], trigger["target"], trigger["state"]) == (
        "kpi:accuracy",
        "ci",
        "delivered",
    )
    assert 'id="triggers-table"' in html and "kpi:accuracy" in html
    assert XSS not in html


def test_a_period_without_data_is_said(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seed(tmp_path / "data")
    code, _, err = report(
        tmp_path,
        capsys,
        "--model",
        "churn",
        "--data-dir",
        str(tmp_path / "data"),
        "--since",
        "2025-01-01T00:00:00Z",
        "--until",
        "2025-01-02T00:00:00Z",
        "-o",
        "empty.html",
    )
    assert code == 0, err
    html = (tmp_path / "empty.html").read_text(encoding="utf-8")
    assert "No prediction in this period." in html
    assert "No stored drift result in this period." in html


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give two files (REFERENCE CURRENT) to compare, or --model NAME"),
        (["a.csv"], "give two files"),
        (["--since", "1h", "a.csv", "b.csv"], "--since needs --model"),
        (["--model", "churn", "a.csv"], "--model churn reads the store: give no files"),
        (["--model", "churn", "--data-dir", "nowhere"], "no mlwatch store at nowhere/store.db"),
        (["--model", "nope", "--data-dir", "data"], "nope"),
        (
            ["--model", "churn", "--data-dir", "data", "--since", "yesterday"],
            "--since: expected a duration",
        ),
        (["missing.csv", "b.csv"], "missing.csv"),
    ],
)
def test_bad_usage_is_exit_2_with_a_clear_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    seed(tmp_path / "data")
    (tmp_path / "b.csv").write_text("x\n1\n")
    code, _, err = report(tmp_path, capsys, *args, "-o", "out.html")
    assert code == 2
    assert message in err
    assert err.startswith("mlwatch report: ")
    assert not (tmp_path / "out.html").exists()


def test_fail_on_drift_exits_1_and_still_writes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.report.conftest import write_pair

    ref, cur = write_pair(tmp_path)
    code, _, _ = report(tmp_path, capsys, str(ref), str(cur), "--fail-on-drift", "-o", "d.html")
    assert code == 1
    assert (tmp_path / "d.html").stat().st_size > 0
    code, _, _ = report(tmp_path, capsys, str(ref), str(ref), "--fail-on-drift", "-o", "n.html")
    assert code == 0


def test_the_newest_window_is_drawn_from_the_stored_profiles(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With the reference profile the scheduler stores, the newest drift window's features
    are drawn: the reference from its profile's sample, the window from the events of the
    window (as the drift job builds its profile); the figures stay the stored result's."""
    from mlwatch.stats.profile import DatasetProfile

    seed(tmp_path / "data")
    rng = np.random.default_rng(9)
    reference = {"x": rng.normal(5.0, 1.0, size=2000)}  # far from the served x ~ N(0, 1)
    profile = DatasetProfile.from_reference(reference, seed=1)
    newest = compare(reference, {"x": rng.normal(size=100)}).to_dict() | {"rows": 1000}
    store = EmbeddedStore(tmp_path / "data" / "store.db")
    store.put_profile("churn", "*", "reference", 0, 0, profile.to_json(), tag="t")
    # hour 3 holds version 2's 100 events: its result is the newest, with the most rows
    store.put_result("churn", "2", "drift", T0 + 2 * HOUR_US, T0 + 3 * HOUR_US, newest)
    store.close()
    code, _, err = report(
        tmp_path,
        capsys,
        "--model",
        "churn",
        "--data-dir",
        str(tmp_path / "data"),
        "--since",
        "2026-01-01T00:00:00Z",
        "--until",
        "2026-01-01T03:00:00Z",
        "-o",
        "drawn.html",
    )
    assert code == 0, err
    html = (tmp_path / "drawn.html").read_text(encoding="utf-8")
    data = embedded(html)
    assert data["drift"]["sampled"] is True
    (x,) = [f for f in data["drift"]["features"] if f["name"] == "x"]
    hist = x["histogram"]
    assert hist is not None and hist["edges"][0] == pytest.approx(
        profile.columns["x"].reservoir.values.min()
    )
    assert sum(hist["ref"]) == pytest.approx(1.0)
    # the window's events (x ~ N(0, 1)) lie below the reference's range
    assert hist["below"][1] > 0.9 and hist["below"][0] == 0.0
    (stored,) = [f for f in newest["features"] if f["name"] == "x"]
    assert x["figures"] == stored  # the numbers are the stored result's, not the sample's
    assert x["effect"] == stored.get("effect")
    assert "drawn from the samples the stored profiles keep" in html


def test_the_periods_triggers_are_found_behind_many_newer_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The store is asked for the period's triggers, not for the newest ones then
    filtered: a period followed by hundreds of triggers still shows its own."""
    seed(tmp_path / "data")  # one trigger, at T0 + 2 h
    store = EmbeddedStore(tmp_path / "data" / "store.db")
    body = {"model": "churn", "cause": "drift", "target": "ci", "reason": "later"}
    for i in range(250):  # a day later, one every minute
        at = T0 + 24 * HOUR_US + i * 60_000_000
        store.request_trigger(
            "churn",
            f"drift:{i}",
            "1",
            at,
            lambda s, r: None,
            lambda i=i: (f"l-{i}", body, "delivered"),
        )
    store.close()
    code, _, err = report(
        tmp_path,
        capsys,
        "--model",
        "churn",
        "--data-dir",
        str(tmp_path / "data"),
        "--since",
        "2026-01-01T00:00:00Z",
        "--until",
        "2026-01-01T03:00:00Z",
        "-o",
        "triggers.html",
    )
    assert code == 0, err
    triggers = embedded((tmp_path / "triggers.html").read_text(encoding="utf-8"))["served"][
        "triggers"
    ]
    assert [t["key"] for t in triggers] == ["t-1"]
