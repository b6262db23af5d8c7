"""A real Elasticsearch 8 for the tests, from Maven Central.

The distribution is Elastic's own ``integ-test-zip`` build
(``org.elasticsearch.distribution.integ-test-zip:elasticsearch:<version>:zip``), which
Maven resolves into ``~/.m2`` once; it is the genuine server with a minimal module set
(transport, x-pack core and security; no ILM, no ``GET /``). The ``elasticsearch-cluster-
runner`` artifacts on Maven Central stop at 7.10, which the 8.x Python client cannot talk to.

Elasticsearch refuses to run as root, so under root each node runs as ``nobody`` through
``setpriv``, with its config, data and logs in a directory that user owns.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

from tests.helpers import IN_CI, free_port, wait_until

VERSION = os.environ.get("MLWATCH_TEST_ES_VERSION", "8.19.21")
ARTIFACT = f"org.elasticsearch.distribution.integ-test-zip:elasticsearch:{VERSION}:zip"
ROOT = Path(os.environ.get("MLWATCH_TEST_ES_ROOT", "/tmp/mlwatch-es"))
HEAP = os.environ.get("MLWATCH_TEST_ES_HEAP", "384m")
# C1 only: a node starts in about half the time; benchmarks turn it off for full speed
FAST_START_OPTS = "-XX:TieredStopAtLevel=1"
NOBODY = 65534


class Unavailable(Exception):
    """Maven or Java is missing: skip locally, fail in CI."""


def java_home() -> str:
    for key in ("ES_JAVA_HOME", "JAVA_HOME"):
        if os.environ.get(key):
            return os.environ[key]
    java = shutil.which("java")
    if not java:
        raise Unavailable("java is not installed")
    return str(Path(os.path.realpath(java)).parent.parent)


def distribution() -> Path:
    """The unpacked distribution (resolved with Maven on first use, then cached)."""
    home = ROOT / f"elasticsearch-{VERSION}"
    if (home / "bin" / "elasticsearch").exists():
        return home
    mvn = shutil.which("mvn")
    if not mvn:
        raise Unavailable("mvn is not installed")
    ROOT.mkdir(parents=True, exist_ok=True)
    os.chmod(ROOT, 0o755)
    out = subprocess.run(
        [mvn, "-q", "-B", "dependency:copy", f"-Dartifact={ARTIFACT}", f"-DoutputDirectory={ROOT}"],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
    )
    archive = ROOT / f"elasticsearch-{VERSION}.zip"
    if out.returncode != 0 or not archive.exists():
        raise RuntimeError(f"maven could not fetch {ARTIFACT}: {out.stdout[-2000:]}")
    tmp = ROOT / f"unpack-{os.getpid()}"
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(tmp)
    for path in (tmp / home.name / "bin").iterdir():
        path.chmod(0o755)
    for path in (tmp / home.name).rglob("*"):
        if path.is_dir():
            path.chmod(0o755)
    jdk_bin = tmp / home.name / "lib"
    for path in jdk_bin.rglob("*"):
        if path.is_file():
            path.chmod(path.stat().st_mode | 0o444)
    os.replace(tmp / home.name, home)
    shutil.rmtree(tmp, ignore_errors=True)
    archive.unlink()
    return home


class Node:
    """One Elasticsearch node process; restartable on the same data directory."""

    def __init__(
        self,
        base: Path,
        name: str,
        *,
        cluster: str,
        seeds: list[int],
        masters: list[str],
        settings: dict[str, Any] | None = None,
    ) -> None:
        self.home = distribution()
        self.base = base / name
        self.name = name
        self.http_port = free_port()
        self.transport_port = free_port()
        self.cluster = cluster
        self.seeds = seeds
        self.masters = masters
        self.settings = settings or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.scheme = "http"
        for sub in ("config", "data", "logs"):
            (self.base / sub).mkdir(parents=True, exist_ok=True)
        shutil.copytree(self.home / "config", self.base / "config", dirs_exist_ok=True)

    def command(self) -> list[str]:
        settings: dict[str, Any] = {
            "cluster.name": self.cluster,
            "node.name": self.name,
            "network.host": "127.0.0.1",
            "http.port": self.http_port,
            "transport.port": self.transport_port,
            "path.data": self.base / "data",
            "path.logs": self.base / "logs",
            "xpack.security.enabled": "false",
            "cluster.routing.allocation.disk.threshold_enabled": "false",
            "action.destructive_requires_name": "false",
        }
        if len(self.masters) == 1:
            settings["discovery.type"] = "single-node"
        else:
            settings["discovery.seed_hosts"] = ",".join(f"127.0.0.1:{p}" for p in self.seeds)
            settings["cluster.initial_master_nodes"] = ",".join(self.masters)
        settings.update(self.settings)
        cmd = [str(self.home / "bin" / "elasticsearch")]
        for key, value in settings.items():
            cmd += ["-E", f"{key}={value}"]
        if os.geteuid() == 0:
            cmd = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *cmd]
        return cmd

    def start(self) -> Node:
        if os.geteuid() == 0:
            subprocess.run(["chown", "-R", f"{NOBODY}:{NOBODY}", str(self.base)], check=True)
            self.base.parent.chmod(0o755)
        env = {
            **os.environ,
            "ES_JAVA_HOME": java_home(),
            "ES_PATH_CONF": str(self.base / "config"),
            "ES_JAVA_OPTS": f"-Xms{HEAP} -Xmx{HEAP} {FAST_START_OPTS}",
            "HOME": str(self.base),
        }
        env.pop("JAVA_TOOL_OPTIONS", None)
        log = open(self.base / "stdout.log", "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            self.command(), env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        return self

    def wait_http(self, timeout: float = 180) -> Node:
        def answers() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(
                    f"elasticsearch {self.name} exited {self.proc.returncode}: "
                    f"{self.output()[-3000:]}"
                )
            request(self.url, "GET", "/_cluster/health", timeout=5)
            return True

        wait_until(
            answers,
            timeout=timeout,
            interval=0.5,
            what=f"elasticsearch {self.name} to answer on {self.url}",
        )
        return self

    def output(self) -> str:
        path = self.base / "stdout.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self, timeout: float = 60) -> None:
        """A clean shutdown (SIGTERM), as an operator would do."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.proc = None


class Cluster:
    """``n`` nodes of one cluster (every node master-eligible and a data node)."""

    def __init__(self, base: Path, n: int = 1, *, settings: dict[str, Any] | None = None) -> None:
        self.name = f"mlwatch-test-{os.getpid()}-{int(time.time() * 1000) % 100000}"
        names = [f"node-{i}" for i in range(n)]
        base.mkdir(parents=True, exist_ok=True)
        self.nodes: list[Node] = []
        seeds: list[int] = []
        for name in names:
            node = Node(
                base, name, cluster=self.name, seeds=seeds, masters=names, settings=settings
            )
            seeds.append(node.transport_port)
            self.nodes.append(node)

    @property
    def url(self) -> str:
        return self.nodes[0].url

    @property
    def urls(self) -> str:
        return ",".join(node.url for node in self.nodes)

    def start(self, timeout: float = 240) -> Cluster:
        for node in self.nodes:
            node.start()
        for node in self.nodes:
            node.wait_http(timeout)
        self.wait_health("yellow" if len(self.nodes) == 1 else "green", timeout=timeout)
        return self

    def wait_health(self, status: str = "yellow", timeout: float = 120) -> None:
        live = [n for n in self.nodes if n.proc is not None]
        request(
            live[0].url,
            "GET",
            f"/_cluster/health?wait_for_status={status}"
            f"&wait_for_nodes={len(live)}&timeout={int(timeout)}s",
            timeout=timeout + 5,
        )

    def stop(self) -> None:
        for node in self.nodes:
            with contextlib.suppress(Exception):
                node.stop()


def request(
    url: str,
    method: str,
    path: str,
    body: Any = None,
    *,
    timeout: float = 30,
    ndjson: bytes | None = None,
) -> Any:
    """A plain HTTP call to Elasticsearch (the tests check the server, not our client)."""
    data = ndjson if ndjson is not None else (None if body is None else json.dumps(body).encode())
    ctype = "application/x-ndjson" if ndjson is not None else "application/json"
    req = urllib.request.Request(
        url + path, data=data, method=method, headers={"Content-Type": ctype}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read() or b"null")
    except urllib.error.HTTPError as exc:
        with exc:  # an HTTPError holds the connection open until closed
            detail = exc.read()[:2000].decode(errors="replace")
        raise ElasticsearchHTTPError(
            exc.code, f"{method} {path}: HTTP {exc.code}: {detail}"
        ) from None


class ElasticsearchHTTPError(OSError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def skip_or_fail(reason: str) -> None:
    import pytest

    if IN_CI:
        pytest.fail(f"Elasticsearch unavailable in CI: {reason}")
    pytest.skip(f"Elasticsearch unavailable: {reason}")
