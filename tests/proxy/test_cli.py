"""``mlwatch sidecar`` with a proxy, as a process: the settings from the environment, a
stop that records what the proxy forwarded, a proxy beside a TLS listener."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import httpx2 as httpx
import pytest

from mlwatch.store import EmbeddedStore
from tests.helpers import free_port, make_certs, wait_until
from tests.integration.servers import SidecarProcess, get_json_any, get_text, probe_json
from tests.proxy.test_forward import OIP

pytestmark = pytest.mark.integration


def test_the_sidecar_process_proxies_and_records_before_it_stops(
    tmp_path: Path, model_url: str
) -> None:
    port = free_port()
    sc = SidecarProcess(
        tmp_path / "data", MLWATCH_PROXY_TO=model_url, MLWATCH_PROXY_LISTEN=f"127.0.0.1:{port}"
    ).start()
    try:
        with httpx.Client(timeout=10) as c:
            for _ in range(20):
                assert (
                    c.post(f"http://127.0.0.1:{port}/v2/models/iris/infer", json=OIP).status_code
                    == 200
                )
    finally:
        sc.stop()
    assert "mlwatch proxy on http://127.0.0.1" in sc.log()
    store = EmbeddedStore(tmp_path / "data" / "store.db")
    try:
        assert store.event_count() == 40  # 20 calls of 2 rows, in the store after the stop
    finally:
        store.close()


def test_a_taken_proxy_port_stops_the_sidecar_with_the_address(
    tmp_path: Path, model_url: str
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        sc = SidecarProcess(
            tmp_path / "data", MLWATCH_PROXY_TO=model_url, MLWATCH_PROXY_LISTEN=f"127.0.0.1:{port}"
        )
        with pytest.raises(AssertionError, match="exited"):
            sc.start()
    assert f"cannot listen on 127.0.0.1:{port}" in sc.log()


def test_a_plain_proxy_beside_a_tls_listener(
    tmp_path: Path, model_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    certs = tmp_path / "certs"
    make_certs(certs)
    monkeypatch.setenv("SSL_CERT_FILE", str(certs / "ca.crt"))
    port = free_port()
    sc = SidecarProcess(
        tmp_path / "data",
        scheme="https",
        MLWATCH_TLS_CERT_FILE=str(certs / "node.crt"),
        MLWATCH_TLS_KEY_FILE=str(certs / "node.key"),
        MLWATCH_PROXY_TO=model_url,
        MLWATCH_PROXY_LISTEN=f"127.0.0.1:{port}",
    ).start()
    try:
        with httpx.Client(timeout=10) as c:
            assert (
                c.post(f"http://127.0.0.1:{port}/v2/models/iris/infer", json=OIP).status_code == 200
            )

        def stored() -> bool:  # a 404 until the events are in; get_json_any closes it
            status, body = get_json_any(sc.url + "/v1/models/iris/status")
            return status == 200 and body["events_stored"] == 2

        wait_until(stored, what="2 events")
    finally:
        sc.stop()


def _worker_pid(sidecar_pid: int) -> int:
    """The proxy's worker: the sidecar's one child process."""
    tasks = Path(f"/proc/{sidecar_pid}/task").iterdir()  # started from one of its threads
    children = [pid for task in tasks for pid in (task / "children").read_text().split()]
    assert len(children) == 1, children
    return int(children[0])


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_a_killed_worker_is_started_again_on_the_same_port(tmp_path: Path, model_url: str) -> None:
    port = free_port()
    sc = SidecarProcess(
        tmp_path / "data", MLWATCH_PROXY_TO=model_url, MLWATCH_PROXY_LISTEN=f"127.0.0.1:{port}"
    ).start()
    try:
        assert sc.proc is not None
        first = _worker_pid(sc.proc.pid)
        assert probe_json(sc.url + "/readyz")[1]["proxy"] == {"healthy": True, "restarts": 0}
        os.kill(first, signal.SIGKILL)
        # not ready while no worker serves (a second at least), then ready again
        wait_until(lambda: probe_json(sc.url + "/readyz")[0] == 503, timeout=10, interval=0.05)
        wait_until(lambda: probe_json(sc.url + "/readyz")[0] == 200, timeout=30)
        assert probe_json(sc.url + "/readyz")[1]["proxy"] == {"healthy": True, "restarts": 1}
        with httpx.Client(timeout=30) as c:  # waits in the socket's backlog meanwhile
            answers = [
                c.post(f"http://127.0.0.1:{port}/v2/models/iris/infer", json=OIP).status_code
                for _ in range(5)
            ]
        assert answers == [200] * 5
        assert _worker_pid(sc.proc.pid) != first
        metrics = get_text(sc.url + "/metrics")
        assert "mlwatch_proxy_worker_restarts_total 1.0" in metrics
    finally:
        sc.stop()
    assert "the proxy worker exited with code -9; starting it again" in sc.log()
    store = EmbeddedStore(tmp_path / "data" / "store.db")
    try:
        assert store.event_count() == 10
    finally:
        store.close()


def test_the_worker_goes_when_the_sidecar_is_killed(tmp_path: Path, model_url: str) -> None:
    port = free_port()
    sc = SidecarProcess(
        tmp_path / "data", MLWATCH_PROXY_TO=model_url, MLWATCH_PROXY_LISTEN=f"127.0.0.1:{port}"
    ).start()
    assert sc.proc is not None
    worker = _worker_pid(sc.proc.pid)
    sc.kill9()
    wait_until(lambda: not _alive(worker), timeout=15, what="the orphaned worker to exit")
    with socket.socket() as again:  # the port is free for the next sidecar
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", port))
