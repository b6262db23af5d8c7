"""The public surface of ``mlwatch`` is exactly what docs/python-api.md documents."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import mlwatch

EXPECTED = {
    "monitor",
    "configure",
    "log_feedback",
    "flush",
    "shutdown",
    "register_model",
    "Config",
    "ConfigError",
    "MlwatchError",
    "ValidationError",
    "__version__",
}


def test_all_is_the_documented_surface() -> None:
    assert set(mlwatch.__all__) == EXPECTED
    assert len(mlwatch.__all__) == len(EXPECTED)
    for name in mlwatch.__all__:
        assert getattr(mlwatch, name) is not None


def test_dir_shows_exactly_all() -> None:
    """What a user sees (``dir``, completion) is the documented surface: no submodule or
    helper that ``mlwatch/__init__.py`` happens to import."""
    import mlwatch.client

    assert dir(mlwatch) == sorted(mlwatch.__all__)


def test_version_and_exception_hierarchy() -> None:
    from importlib.metadata import version

    assert mlwatch.__version__ == version("mlwatch") == "0.1.0"
    assert issubclass(mlwatch.ConfigError, mlwatch.MlwatchError)
    assert issubclass(mlwatch.ValidationError, mlwatch.MlwatchError)
    assert issubclass(mlwatch.ConfigError, ValueError)
    with pytest.raises(AttributeError):
        mlwatch.nope  # noqa: B018


def test_configure_validates_and_names_the_setting() -> None:
    with pytest.raises(mlwatch.ConfigError) as info:
        mlwatch.configure(sample_rate=3)
    assert info.value.key == "sample_rate"
    with pytest.raises(mlwatch.ConfigError) as info:
        mlwatch.configure(model="has spaces")
    assert info.value.key == "model"
    with pytest.raises(mlwatch.ConfigError):
        mlwatch.configure(no_such_setting=1)


def test_configure_returns_the_config_and_replaces_the_runtime(tmp_path: Path) -> None:
    from mlwatch.client import runtime

    cfg = mlwatch.configure(sidecar_url="off", model="a")
    assert isinstance(cfg, mlwatch.Config) and cfg.model == "a"
    first = runtime._current
    cfg = mlwatch.configure(sidecar_url="off", model="b")
    assert runtime._current is not first and runtime._current is not None
    assert runtime._current.config.model == "b"
    assert mlwatch.flush(1.0) and mlwatch.shutdown(1.0)


def test_import_is_cheap_and_inert() -> None:
    code = (
        "import sys, threading, time\n"
        "t = time.perf_counter()\n"
        "import mlwatch\n"
        "ms = (time.perf_counter() - t) * 1000\n"
        "import json\n"
        "heavy = [m for m in ('numpy', 'pandas', 'pydantic', 'orjson', 'http.client', 'socket',"
        " 'sqlite3', 'importlib.metadata') if m in sys.modules]\n"
        "print(json.dumps({'threads': threading.active_count(), 'heavy': heavy, 'ms': ms}))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLWATCH_")}
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    report = json.loads(out.stdout)
    assert report["threads"] == 1
    assert report["heavy"] == []
    assert report["ms"] < 500  # generous: this only catches an accidental heavy import


def test_the_command_line_loads_no_statistics_or_rendering_library() -> None:
    """Every command's parser is built for any command (``mlwatch sidecar`` too): what a
    command needs to run is imported when it runs, so that the sidecar does not carry
    SciPy, pandas or Jinja2 in memory (some 60 MiB) for commands it never runs."""
    code = (
        "import json, sys\n"
        "from mlwatch.cli import build_parser\n"
        "build_parser()\n"
        "print(json.dumps([m for m in ('scipy', 'pandas', 'pyarrow', 'sklearn', 'jinja2',"
        " 'mlflow') if m in sys.modules]))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLWATCH_")}
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert json.loads(out.stdout) == []
