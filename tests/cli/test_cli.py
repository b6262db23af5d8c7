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


def test_version() -> None:
    from mlwatch import __version__

    proc = run("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"mlwatch {__version__}"


def test_help_texts_are_plain_text() -> None:
    from mlwatch.cli import COMMANDS

    for command in ("", *COMMANDS):
        proc = run(*([command] if command else []), "--help")
        assert proc.returncode == 0, proc.stderr
        for markup in ("``", ":mod:", ":class:", ":func:", ":data:"):
            assert markup not in proc.stdout, (command, markup)


def test_a_secret_given_as_a_flag_names_the_variable_and_the_file() -> None:
    proc = run("sidecar", "--token", "s3cret")
    assert proc.returncode == 2
    assert "--token is not a flag" in proc.stderr
    assert "MLWATCH_TOKEN, or MLWATCH_TOKEN_FILE=/path/to/file, or token_file:" in proc.stderr
    assert "s3cret" not in proc.stderr
    proc = run("scheduler", "--forward-shared-key=k")
    assert proc.returncode == 2 and "MLWATCH_FORWARD_SHARED_KEY" in proc.stderr


def test_an_abbreviated_secret_flag_is_refused_without_echoing_it() -> None:
    proc = run("sidecar", "--tok", "s3cret")
    assert proc.returncode == 2 and "MLWATCH_TOKEN" in proc.stderr and "s3cret" not in proc.stderr


def test_short_version_flag() -> None:
    assert run("-V").stdout.startswith("mlwatch ")
