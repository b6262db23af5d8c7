"""The real promtool and amtool over alerts/: the committed rules pass ``check rules``,
their unit tests pass ``test rules``, the Alertmanager example passes ``check-config`` —
and each of the three refuses a broken copy, so the checks are known to bite."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mlwatch.alerting.checks import commands
from tests.helpers import REPO, require_binary

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _tools() -> None:
    require_binary("promtool")
    require_binary("amtool")


def alerts_test(directory: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLWATCH_")}
    return subprocess.run(
        [sys.executable, "-m", "mlwatch", "alerts", "test", "--dir", str(directory)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )


def test_the_committed_rules_tests_and_config_pass() -> None:
    proc = alerts_test(REPO / "alerts")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ran = [line for line in proc.stdout.splitlines() if line.startswith("$ ")]
    assert len(ran) == 5  # three rule files, the unit tests, the Alertmanager config
    assert proc.stdout.splitlines()[-1] == "all checks passed"


def copy(tmp_path: Path) -> Path:
    out = tmp_path / "alerts"
    shutil.copytree(REPO / "alerts", out)
    return out


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """One of the commands mlwatch alerts test runs (the failing runs are shown through
    the command itself in test_alerts_cli.py; here each tool alone, to keep this short)."""
    return subprocess.run(argv, capture_output=True, text=True, timeout=600)


def command(out: Path, tool: str, last: str) -> list[str]:
    """The command of ``tool`` whose last argument is the file ``last``."""
    [argv] = [a for a in commands(out) if a[0].endswith(tool) and a[-1].endswith(last)]
    return argv


def test_a_changed_threshold_fails_the_unit_tests(tmp_path: Path) -> None:
    out = copy(tmp_path)
    rules = out / "rules/model-churn.rules.yml"
    text = rules.read_text()
    assert text.count('kpi="log_loss"}) > 0.45') == 1
    rules.write_text(text.replace('kpi="log_loss"}) > 0.45', 'kpi="log_loss"}) > 0.65'))
    argv = command(out, "promtool", "slo.yml")
    assert argv[1:3] == ["test", "rules"]
    proc = run([*argv[:3], str(out / "tests/kpi.yml")])  # the test file of the KPI alerts
    assert proc.returncode == 1
    assert "FAILED" in proc.stdout + proc.stderr
    assert "alertname: MlwatchKPIAboveThreshold" in proc.stdout + proc.stderr


def test_a_broken_expression_fails_check_rules(tmp_path: Path) -> None:
    out = copy(tmp_path)
    rules = out / "rules/mlwatch.rules.yml"
    rules.write_text(rules.read_text().replace("== 0 or absent(", "== 0 or absent(("))
    proc = run(command(out, "promtool", "mlwatch.rules.yml"))
    assert proc.returncode == 1 and "parse error" in proc.stdout + proc.stderr


def test_a_route_to_no_receiver_fails_check_config(tmp_path: Path) -> None:
    out = copy(tmp_path)
    config = out / "alertmanager.yml"
    config.write_text(config.read_text().replace("receiver: mlwatch-retrain", "receiver: nobody"))
    proc = run(command(out, "amtool", "alertmanager.yml"))
    assert proc.returncode == 1 and '"nobody"' in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("labels", "receivers"),
    [(["retrain=true", "model=churn"], "mlwatch-retrain,on-call"), (["alertname=X"], "on-call")],
)
def test_amtool_routes_retrain_alerts_to_the_sidecar_and_on_call(
    labels: list[str], receivers: str
) -> None:
    amtool = shutil.which("amtool")
    assert amtool is not None
    config = str(REPO / "alerts" / "alertmanager.yml")
    proc = run([amtool, "config", "routes", "test", f"--config.file={config}", *labels])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == receivers
