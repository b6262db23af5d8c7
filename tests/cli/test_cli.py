"""The ``mlwatch`` command: configuration errors are one clear line and exit code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlwatch", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_bad_config_file_names_key_and_file(tmp_path: Path) -> None:
    path = tmp_path / "mlwatch.yaml"
    path.write_text("port: 80000\n")
    proc = run("sidecar", "--config", str(path), "--data-dir", str(tmp_path / "d"))
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"mlwatch: configuration error: port: must be at most 65535, got 80000 (in {path})"
    )


def test_bad_environment_is_named(tmp_path: Path) -> None:
    proc = run(
        "sidecar",
        "--data-dir",
        str(tmp_path / "d"),
        env={"MLWATCH_SPOOL_FSYNC": "sometimes", "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 2
    assert "spool_fsync: must be one of always, interval" in proc.stderr
    assert "MLWATCH_SPOOL_FSYNC" in proc.stderr


def test_help_lists_the_commands() -> None:
    proc = run("--help")
    assert proc.returncode == 0 and "sidecar" in proc.stdout and "demo" in proc.stdout
