"""``mlwatch sidecar`` with a proxy, as a process: the settings from the environment, a
stop that records what the proxy forwarded, a proxy beside a TLS listener."""

from __future__ import annotations

from pathlib import Path

import httpx2 as httpx
import pytest

from mlwatch.store import EmbeddedStore
from tests.helpers import free_port, make_certs, wait_until
from tests.integration.servers import SidecarProcess, get_json_any
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
    import socket

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
