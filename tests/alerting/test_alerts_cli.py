"""``mlwatch alerts build`` and ``mlwatch alerts test`` as a user runs them: what is
written, removed and compared, and what a missing tool or a failing check looks like
(with stand-in tools; tests/alerting/test_promtool.py runs the real ones)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlwatch.alerting.checks import CheckError, commands
from tests.helpers import REPO

EXAMPLE = REPO / "alerts/example.mlwatch.yaml"


def mlwatch(*args: str, path: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLWATCH_")}
    if path is not None:
        env["PATH"] = path
    return subprocess.run(
        [sys.executable, "-m", "mlwatch", "alerts", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=REPO,
    )


def test_build_writes_checks_and_cleans_up(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = mlwatch("build", "--config", str(EXAMPLE), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*.yml"))
    assert written == [
        "alertmanager.yml",
        "rules/mlwatch.rules.yml",
        "rules/model-churn.rules.yml",
        "rules/model-eta.rules.yml",
    ]
    assert f"wrote {out / 'rules/model-eta.rules.yml'}" in proc.stdout
    assert mlwatch("build", "--config", str(EXAMPLE), "--out", str(out), "--check").returncode == 0
    # a hand edit is found by --check, and undone by a build
    eta = out / "rules/model-eta.rules.yml"
    eta.write_text(eta.read_text().replace("> 4", "> 5"))
    stale = out / "rules/model-old.rules.yml"
    stale.write_text((out / "rules/mlwatch.rules.yml").read_text())
    mine = out / "rules/mine.yml"
    mine.write_text("groups: []\n")
    proc = mlwatch("build", "--config", str(EXAMPLE), "--out", str(out), "--check")
    assert proc.returncode == 1
    assert f"differs from a fresh build: {eta}" in proc.stdout and str(stale) in proc.stdout
    proc = mlwatch("build", "--config", str(EXAMPLE), "--out", str(out))
    assert proc.returncode == 0 and f"removed {stale}" in proc.stdout
    assert not stale.exists() and mine.exists() and "> 4" in eta.read_text()


def test_build_options_reach_the_files(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = mlwatch(
        "build", "--config", str(EXAMPLE), "--out", str(out), "--job", "sidecars",
        "--runbook-url", "https://wiki.example/mlwatch", "--credentials-file", "/run/secrets/t",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    text = (out / "rules/mlwatch.rules.yml").read_text()
    assert (
        'up{job="sidecars"}' in text and "https://wiki.example/mlwatch#mlwatchsidecardown" in text
    )
    assert "credentials_file: /run/secrets/t" in (out / "alertmanager.yml").read_text()


def test_build_needs_a_config_and_names_a_bad_key(tmp_path: Path) -> None:
    proc = mlwatch("build", "--out", str(tmp_path))
    assert proc.returncode == 2
    assert "configuration error: config: mlwatch alerts build needs the config file" in proc.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [{name: m, task: regression, alerts: {kpis: {accuracy: 0.9}}}]\n")
    proc = mlwatch("build", "--config", str(bad), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2 and "models[0].alerts.kpis.accuracy" in proc.stderr
    assert not (tmp_path / "out").exists()


def tools(tmp_path: Path, **scripts: str) -> str:
    """A PATH that finds stand-ins (shell bodies) for the named tools first."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, body in scripts.items():
        tool = bin_dir / name
        tool.write_text(f"#!/bin/sh\n{body}\n")
        tool.chmod(0o755)
    return f"{bin_dir}:/bin:/usr/bin"


@pytest.mark.parametrize(("present", "missing", "package"), [
    ((), "promtool", "prometheus"),
    (("promtool",), "amtool", "prometheus-alertmanager"),
])  # fmt: skip
def test_a_missing_tool_names_its_debian_package(
    tmp_path: Path, present: tuple[str, ...], missing: str, package: str
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in present:
        (bin_dir / name).symlink_to("/bin/true")
    proc = mlwatch("test", "--dir", str(REPO / "alerts"), path=str(bin_dir))
    assert proc.returncode == 2
    assert f"{missing} is not installed: it comes with the Debian package {package}" in proc.stderr


def test_a_failing_check_prints_the_tools_message_and_exits_1(tmp_path: Path) -> None:
    path = tools(
        tmp_path,
        promtool='case "$1 $3" in "check "*eta*) echo "bad expr in $3" >&2; exit 1;; esac',
        amtool="echo fine",
    )
    proc = mlwatch("test", "--dir", str(REPO / "alerts"), path=path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    rules = REPO / "alerts/rules"
    assert lines[0] == f"$ promtool check rules {rules / 'mlwatch.rules.yml'}"
    assert f"$ promtool check rules {rules / 'model-eta.rules.yml'}" in lines
    assert "FAILED (exit 1):" in lines and f"bad expr in {rules / 'model-eta.rules.yml'}" in lines
    tests = sorted(str(p) for p in (REPO / "alerts/tests").glob("*.yml"))
    assert f"$ promtool test rules {' '.join(tests)}" in lines
    assert lines[-2:] == [
        f"$ amtool check-config {REPO / 'alerts/alertmanager.yml'}",
        "some checks failed",
    ]


def test_nothing_built_is_said(tmp_path: Path) -> None:
    with pytest.raises(CheckError, match="run mlwatch alerts build --out"):
        commands(tmp_path, which=lambda tool: f"/usr/bin/{tool}")
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules/a.yml").write_text("groups: []\n")
    (tmp_path / "alertmanager.yml").write_text("route: {receiver: x}\n")
    with pytest.raises(CheckError, match="no promtool unit tests"):
        commands(tmp_path, which=lambda tool: f"/usr/bin/{tool}")
