"""Real servers as subprocesses: the mlwatch sidecar and Debian's Prometheus."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from tests.helpers import free_port, require_binary, wait_until


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


def get_json_any(url: str) -> tuple[int, Any]:
    """Status and JSON body, also for 4xx/5xx answers (``/readyz`` says 503 with details)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read() or b"null")


def answers_ok(url: str) -> bool:
    """Whether ``url`` answers 200; the response closed either way (a 503 while a server
    loads holds its socket in the HTTPError)."""
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return bool(r.status == 200)
    except urllib.error.HTTPError as exc:
        exc.close()
        return False


def probe_json(url: str) -> tuple[int, Any]:
    """Status and JSON body of a GET whose connection is closed whatever happens: urllib
    leaves its socket to the garbage collector when a server still starting resets the
    connection before answering (with TLS, a ResourceWarning in whichever test runs next)."""
    import http.client
    import ssl
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(
            parts.netloc, timeout=5, context=ssl.create_default_context()
        )
    else:
        conn = http.client.HTTPConnection(parts.netloc, timeout=5)
    try:
        conn.request("GET", parts.path or "/")
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        conn.close()


def get_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as r:
        return str(r.read().decode())


class SidecarProcess:
    """``python -m mlwatch sidecar`` on a free port, restartable on the same data dir."""

    def __init__(
        self, data_dir: Path, *, port: int | None = None, scheme: str = "http", **env: str
    ) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self.log_path = data_dir.parent / f"sidecar-{self.port}.log"

    def start(self) -> SidecarProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLWATCH_")}
        env.update(self.env)
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mlwatch",
                "sidecar",
                "--port",
                str(self.port),
                "--data-dir",
                str(self.data_dir),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        try:
            wait_until(self._ready, timeout=30, what=f"sidecar on {self.url}")
        except BaseException:
            self.stop()  # a sidecar that never got ready must not outlive the test
            raise
        return self

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"sidecar exited {self.proc.returncode}: {self.log()}")
        status, body = probe_json(self.url + "/readyz")
        return status == 200 and bool(body["ready"])

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


class PrometheusProcess:
    """Debian's ``prometheus`` binary with a scrape config written for the test."""

    def __init__(
        self,
        workdir: Path,
        scrape_configs: list[dict[str, Any]],
        *,
        rule_files: list[str] | None = None,
        alertmanager: str | None = None,
        args: tuple[str, ...] = (),
    ) -> None:
        self.binary = require_binary("prometheus")
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_path = workdir / "prometheus.yml"
        config: dict[str, Any] = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": scrape_configs,
        }
        if rule_files:
            config["rule_files"] = rule_files
        if alertmanager:  # host:port
            config["alerting"] = {
                "alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]
            }
        self.config_path.write_text(json.dumps(config))  # JSON is valid YAML
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> PrometheusProcess:
        log = open(self.workdir / "prometheus.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                self.binary,
                f"--config.file={self.config_path}",
                f"--storage.tsdb.path={self.workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                *self.args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        wait_until(
            lambda: answers_ok(self.url + "/-/ready"),
            timeout=30,
            what="prometheus ready",
        )
        return self

    def alerts(self) -> list[dict[str, Any]]:
        """The alerts Prometheus holds now (pending and firing)."""
        with urllib.request.urlopen(self.url + "/api/v1/alerts", timeout=5) as r:
            return list(json.loads(r.read())["data"]["alerts"])

    def log(self) -> str:
        path = self.workdir / "prometheus.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def query(self, promql: str) -> list[dict[str, Any]]:
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=5) as r:
            body = json.loads(r.read())
        assert body["status"] == "success", body
        return list(body["data"]["result"])

    def targets_up(self) -> bool:
        with urllib.request.urlopen(self.url + "/api/v1/targets", timeout=5) as r:
            active = json.loads(r.read())["data"]["activeTargets"]
        return bool(active) and all(t["health"] == "up" for t in active)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class AlertmanagerProcess:
    """Debian's Alertmanager (``prometheus-alertmanager``) with a config written for the
    test; clustering off (one instance, no gossip port)."""

    def __init__(self, workdir: Path, config: dict[str, Any]) -> None:
        self.binary = require_binary("prometheus-alertmanager")
        self.workdir = workdir
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.address}"
        self.config_path = workdir / "alertmanager.yml"
        self.config_path.write_text(json.dumps(config))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> AlertmanagerProcess:
        log = open(self.workdir / "alertmanager.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                self.binary,
                f"--config.file={self.config_path}",
                f"--storage.path={self.workdir / 'am-data'}",
                f"--web.listen-address={self.address}",
                "--cluster.listen-address=",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        wait_until(
            lambda: answers_ok(self.url + "/-/ready"),
            timeout=30,
            what="alertmanager ready",
        )
        return self

    def log(self) -> str:
        path = self.workdir / "alertmanager.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
