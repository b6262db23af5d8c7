"""``mlwatch retrain``: a request through the running sidecar, and the list of a model's
triggers from the sidecar or from its data directory."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mlwatch.alerting import retrain
from mlwatch.cli import main
from tests.alerting.fakes import ScriptedTarget
from tests.helpers import wait_until


@pytest.fixture
def sidecar(
    live_sidecar: Callable[..., Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> tuple[str, Any, ScriptedTarget]:
    fake = ScriptedTarget()
    monkeypatch.setattr(retrain, "targets_of", lambda config: {"ci": fake})
    path = tmp_path / "m.yaml"
    path.write_text("models:\n  - {name: churn, retrain: {target: ci}}\n")
    url, sc = live_sidecar(path=str(path))
    return url, sc, fake


def test_a_request_goes_through_the_sidecar(
    sidecar: tuple[str, Any, ScriptedTarget], capsys: pytest.CaptureFixture[str]
) -> None:
    url, sc, fake = sidecar
    assert main(["retrain", "churn", "--reason", "labels from Q4", "--url", url]) == 0
    out = capsys.readouterr().out
    assert out.startswith("retraining of churn requested: trigger ") and "(pending)" in out
    wait_until(lambda: len(fake.sent) == 1)
    assert fake.sent[0].reason == "labels from Q4"
    wait_until(lambda: sc.store.triggers("churn")[0]["state"] == "delivered")
    assert main(["retrain", "churn", "--list", "--url", url]) == 0
    listed = capsys.readouterr().out
    assert "manual" in listed and "delivered" in listed
    config = ["--config", sc.config.source, "--data-dir", str(sc.data_dir)]
    assert main(["retrain", "churn", "--list", *config]) == 0
    assert "delivered" in capsys.readouterr().out


def test_a_model_without_a_policy_is_refused_with_the_sidecars_words(
    sidecar: tuple[str, Any, ScriptedTarget], capsys: pytest.CaptureFixture[str]
) -> None:
    url, _sc, _ = sidecar
    assert main(["retrain", "other", "--reason", "x", "--url", url]) == 2
    assert "model 'other' has no retrain section" in capsys.readouterr().err


def test_a_request_needs_a_sidecar(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "store.db").write_bytes(b"")
    assert main(["retrain", "churn", "--reason", "x", "--data-dir", str(tmp_path)]) == 2
    assert "goes through the running sidecar" in capsys.readouterr().err
