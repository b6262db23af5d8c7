"""A real MLflow tracking server for the tests (PyPI ``mlflow``).

The server lives in its own virtualenv under ``~/.cache/mlwatch/mlflow-<version>`` (made
once, by ``.ci/run`` or on first use), apart from the test environment, which has only
``mlflow-skinny`` (what ``mlwatch[mlflow]`` installs): the server's dependencies never
change the ones mlwatch is tested with. It runs with a SQLite backend and serves its
artifacts itself (``mlflow-artifacts:/``), on a free port, with one worker.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.helpers import IN_CI, free_port, wait_until

VERSION = os.environ.get("MLWATCH_TEST_MLFLOW_VERSION", "3.17.2")
HOME = Path(os.environ.get("MLWATCH_CACHE", Path.home() / ".cache" / "mlwatch"))


def server_python() -> Path:
    """The Python of the server's virtualenv, made on first use."""
    venv = HOME / f"mlflow-{VERSION}"
    python = venv / "bin" / "python"
    if python.exists():
        return python
    tmp = HOME / f"mlflow-{VERSION}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    HOME.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(tmp)], check=True, timeout=300)
    pip = subprocess.run(
        [str(tmp / "bin" / "python"), "-m", "pip", "install", "-q", f"mlflow=={VERSION}"],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    if pip.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise RuntimeError(f"pip could not install mlflow=={VERSION}: {pip.stderr[-2000:]}")
    try:
        os.replace(tmp, venv)
    except OSError:  # another process made it first
        shutil.rmtree(tmp, ignore_errors=True)
    return python


class MlflowServer:
    """``mlflow server`` on 127.0.0.1 with its store and artifacts in ``workdir``; it can
    be stopped and started again on the same port and data."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 120.0) -> MlflowServer:
        try:
            python = server_python()
        except Exception as exc:
            import pytest

            if IN_CI:
                pytest.fail(f"MLflow server unavailable in CI: {exc}")
            pytest.skip(f"MLflow server unavailable: {exc}")
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = open(self.workdir / "mlflow.log", "ab")  # noqa: SIM115
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        self.proc = subprocess.Popen(
            [
                str(python),
                "-m",
                "mlflow",
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                "1",
                "--backend-store-uri",
                f"sqlite:///{self.workdir / 'mlflow.db'}",
                "--artifacts-destination",
                str(self.workdir / "artifacts"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=self.workdir,
            start_new_session=True,
        )
        log.close()
        wait_until(self.healthy, timeout=timeout, what="mlflow server ready")
        return self

    def healthy(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited: {self.log()[-3000:]}")
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def log(self) -> str:
        path = self.workdir / "mlflow.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        """Stop the server and its workers (the whole process group)."""
        if self.proc is not None and self.proc.poll() is None:
            import signal

            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.proc = None
