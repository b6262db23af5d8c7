"""The proxy forwards calls unchanged and answers as the model server did, also when
the model server is slow, down or answers in a stream."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from tests.helpers import free_port, make_certs, wait_until
from tests.proxy.conftest import Proxied
from tests.proxy.model_server import ModelServer

OIP = {
    "id": "req-7",
    "inputs": [
        {
            "name": "x",
            "shape": [2, 4],
            "datatype": "FP64",
            "data": [5.1, 3.5, 1.4, 0.2, 6.7, 3.0, 5.2, 2.3],
        }
    ],
}
TF = {
    "instances": [
        {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
    ]
}


def same(direct: httpx.Response, proxied: httpx.Response) -> None:
    """Status, headers (Date aside: a second may pass between the calls) and body bytes."""
    assert proxied.status_code == direct.status_code
    assert proxied.content == direct.content
    strip = {"date"}
    assert [(k, v) for k, v in proxied.headers.raw if k.lower() not in strip] == [
        (k, v) for k, v in direct.headers.raw if k.lower() not in strip
    ]


def test_answers_are_the_model_servers_byte_for_byte(
    proxied: Callable[..., Proxied], model_url: str
) -> None:
    px = proxied()
    with httpx.Client(timeout=10) as c:
        for path, body in (("/v2/models/iris/infer", OIP), ("/v1/models/iris:predict", TF)):
            same(c.post(model_url + path, json=body), c.post(px.url + path, json=body))
        same(c.get(model_url + "/v2/health/ready"), c.get(px.url + "/v2/health/ready"))
        same(c.get(model_url + "/nowhere?a=1&b=%20"), c.get(px.url + "/nowhere?a=1&b=%20"))
        same(
            c.post(model_url + "/v2/models/failing/infer", json=OIP),
            c.post(px.url + "/v2/models/failing/infer", json=OIP),
        )


def _digest(client: httpx.Client, url: str) -> tuple[int, str, int, dict[str, str]]:
    digest, chunks = hashlib.sha256(), 0
    with client.stream("GET", url) as answer:
        for chunk in answer.iter_raw():
            digest.update(chunk)
            chunks += 1
        return answer.status_code, digest.hexdigest(), chunks, dict(answer.headers)


def test_a_large_answer_streams_through(proxied: Callable[..., Proxied], model_url: str) -> None:
    px = proxied(proxy_capture_max_bytes=1024)
    path = f"/big?n={32 * 1024 * 1024 + 5}"
    with httpx.Client(timeout=30) as c:
        status, digest, chunks, headers = _digest(c, px.url + path)
        assert (status, digest) == _digest(c, model_url + path)[:2]
    assert chunks > 1 and headers["transfer-encoding"] == "chunked"


def test_hop_by_hop_headers_stay_on_their_hop(
    proxied: Callable[..., Proxied], model_url: str
) -> None:
    px = proxied()
    with httpx.Client(timeout=10) as c:
        answer = c.post(
            px.url + "/v2/models/iris/infer",
            json=OIP,
            headers={
                "connection": "keep-alive, x-secret-hop",
                "x-secret-hop": "1",
                "te": "trailers",
            },
        )
    assert answer.status_code == 200
    assert "connection" not in answer.headers and "transfer-encoding" not in answer.headers


def test_model_server_down_is_a_502_recorded_as_an_error(proxied: Callable[..., Proxied]) -> None:
    px = proxied(proxy_to=f"http://127.0.0.1:{free_port()}")
    with httpx.Client(timeout=10) as c:
        answer = c.post(px.url + "/v2/models/iris/infer", json=OIP)
    assert answer.status_code == 502 and b"did not answer" in answer.content
    events = wait_until(px.events, what="the error events")
    assert {(e["status"], e["error"], e["prediction"]) for e in events} == {
        ("error", "UpstreamUnreachable", None)
    }
    assert events[0]["features"] == {"x_0": 6.7, "x_1": 3.0, "x_2": 5.2, "x_3": 2.3}
    assert px.metric('mlwatch_proxy_upstream_errors_total{reason="connect"}') == 1
    assert (
        px.metric(
            'mlwatch_predictions_total{environment="default",model="iris",status="error",version="unknown"}'
        )
        == 2
    )


def test_a_slow_model_server_is_a_504(proxied: Callable[..., Proxied], model_url: str) -> None:
    px = proxied(proxy_timeout_s=0.2)
    with httpx.Client(timeout=10) as c:
        assert c.get(px.url + "/slow?s=2").status_code == 504
        assert c.get(px.url + "/slow?s=0").content == b"late"
    wait_until(lambda: px.metric('mlwatch_proxy_upstream_errors_total{reason="timeout"}') == 1)
    wait_until(lambda: px.metric('mlwatch_proxy_requests_total{code="5xx"}') == 1)


def test_a_request_body_in_pieces_is_streamed_to_the_model_server(
    proxied: Callable[..., Proxied], model_url: str
) -> None:
    import json

    px = proxied()
    raw = json.dumps(OIP).encode()

    def pieces() -> Any:
        for at in range(0, len(raw), 7):
            yield raw[at : at + 7]

    with httpx.Client(timeout=10) as c:
        direct = c.post(model_url + "/v2/models/iris/infer", content=raw)
        answer = c.post(px.url + "/v2/models/iris/infer", content=pieces())
    assert answer.content == direct.content
    events = wait_until(lambda: len(px.events()) == 2 and px.events(), what="the events")
    assert sorted(e["prediction"] for e in events) == [0, 2]


def test_head_and_bodiless_answers(proxied: Callable[..., Proxied], model_url: str) -> None:
    px = proxied()
    with httpx.Client(timeout=10) as c:
        same(c.head(model_url + "/v2/health/ready"), c.head(px.url + "/v2/health/ready"))
        same(c.head(model_url + "/nowhere"), c.head(px.url + "/nowhere"))


def test_a_caller_gone_mid_body_is_neither_forwarded_nor_recorded(
    proxied: Callable[..., Proxied],
) -> None:
    import socket

    px = proxied(proxy_max_connections=1)  # a connection left behind would block the next call
    host, port = px.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as s:
        s.sendall(b"POST /v2/models/iris/infer HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\n")
        s.sendall(b'{"inputs": [')
    with httpx.Client(timeout=10) as c:
        for _ in range(3):
            assert c.post(px.url + "/v2/models/iris/infer", json=OIP).status_code == 200
    wait_until(lambda: len(px.events()) == 6, what="the 3 later calls' events")
    assert px.metric('mlwatch_proxy_upstream_errors_total{reason="protocol"}') == 0


def test_an_https_model_server(
    proxied: Callable[..., Proxied], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    certs = tmp_path / "certs"
    make_certs(certs)
    monkeypatch.setenv("SSL_CERT_FILE", str(certs / "ca.crt"))  # the system's CAs, for the test
    with ModelServer(certs=certs) as url:
        px = proxied(proxy_to=url)
        with httpx.Client(timeout=10) as c:
            answer = c.post(px.url + "/v2/models/iris/infer", json=OIP)
        assert answer.status_code == 200 and answer.json()["model_name"] == "iris"
        wait_until(lambda: len(px.events()) == 2, what="the events")


def test_an_https_model_server_with_an_unknown_certificate_is_a_502(
    proxied: Callable[..., Proxied], tmp_path: Path
) -> None:
    certs = tmp_path / "certs"
    make_certs(certs)
    with ModelServer(certs=certs) as url:
        px = proxied(proxy_to=url)
        with httpx.Client(timeout=10) as c:
            assert c.post(px.url + "/v2/models/iris/infer", json=OIP).status_code == 502
