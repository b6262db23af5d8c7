"""What the proxy records: the right features and predictions in the store and
/metrics, and, whatever capture meets (a full spool, a malformed answer, a body over
the limit), the caller gets what the model server sent."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx2 as httpx

from tests.helpers import wait_until
from tests.proxy.conftest import Proxied
from tests.proxy.model_server import FEATURES, IRIS, MODEL

ROWS = IRIS.data[[0, 60, 120]].tolist()
OIP = {"id": "req-1", "inputs": [{"name": "x", "shape": [3, 4], "datatype": "FP64", "data": ROWS}]}


def stored(px: Proxied, n: int, model: str = "iris") -> list[dict[str, Any]]:
    return wait_until(lambda: len(px.events(model)) >= n and px.events(model), what=f"{n} events")


def test_oip_rows_land_in_the_store_and_metrics(proxied: Callable[..., Proxied]) -> None:
    px = proxied()
    with httpx.Client(timeout=10) as c:
        answer = c.post(px.url + "/v2/models/iris/versions/7/infer", json=OIP)
    assert answer.status_code == 404  # the model server has no such route: recorded as an error
    with httpx.Client(timeout=10) as c:
        assert c.post(px.url + "/v2/models/iris/infer", json=OIP).status_code == 200
    events = sorted(stored(px, 6), key=lambda e: (e["version"], e["request_id"]))
    ok = [e for e in events if e["status"] == "ok"]
    assert [e["features"] for e in ok] == [{f"x_{j}": v for j, v in enumerate(row)} for row in ROWS]
    assert [e["prediction"] for e in ok] == MODEL.predict(ROWS).tolist()
    assert [e["request_id"] for e in ok] == ["req-1:0", "req-1:1", "req-1:2"]
    assert {(e["version"], e["batch_size"]) for e in ok} == {("1", 3)}  # the answer's model_version
    failed = [e for e in events if e["status"] == "error"]
    assert {(e["version"], e["error"], e["prediction"]) for e in failed} == {("7", "HTTP404", None)}
    assert all(e["latency_ms"] > 0 for e in events)
    assert (
        px.metric(
            'mlwatch_predictions_total{environment="default",model="iris",status="ok",version="1"}'
        )
        == 3
    )
    assert (
        px.metric(
            'mlwatch_predictions_total{environment="default",model="iris",status="error",version="7"}'
        )
        == 3
    )
    for label in set(MODEL.predict(ROWS).tolist()):
        assert (
            px.metric(
                f'mlwatch_predicted_class_total{{class="{label}",environment="default",model="iris",version="1"}}'
            )
            >= 1
        )
    assert (
        px.metric(
            'mlwatch_prediction_latency_seconds_count{environment="default",model="iris",version="1"}'
        )
        == 3
    )


def test_tf_serving_instances_land_in_the_store(proxied: Callable[..., Proxied]) -> None:
    px = proxied(proxy_request_id_header="x-call")
    instances = [dict(zip(FEATURES, row, strict=True)) for row in ROWS[:2]]
    with httpx.Client(timeout=10) as c:
        answer = c.post(
            px.url + "/v1/models/iris:predict",
            json={"instances": instances},
            headers={"x-call": "c9"},
        )
    events = sorted(stored(px, 2), key=lambda e: e["request_id"])
    assert [e["features"] for e in events] == instances
    assert [e["prediction"] for e in events] == answer.json()["predictions"]
    assert [e["request_id"] for e in events] == ["c9:0", "c9:1"]


def test_plain_json_with_paths_and_a_model_header(proxied: Callable[..., Proxied]) -> None:
    px = proxied(
        proxy_format="json",
        proxy_json_route="/infer$",
        proxy_features_path="inputs.0.data",
        proxy_prediction_path="outputs.0.data",
        proxy_model_header="x-model",
        proxy_version_header="x-model-version",
    )
    with httpx.Client(timeout=10) as c:
        c.post(
            px.url + "/v2/models/iris/infer",
            json=OIP,
            headers={"x-model": "flowers", "x-model-version": "v3"},
        )
    events = stored(px, 3, "flowers")
    want = [
        ({f"input_{j}": v for j, v in enumerate(row)}, label)
        for row, label in zip(ROWS, MODEL.predict(ROWS).tolist(), strict=True)
    ]
    got = [(e["features"], e["prediction"]) for e in events]
    assert sorted(map(repr, got)) == sorted(map(repr, want))
    assert {e["version"] for e in events} == {"v3"}


def test_a_malformed_answer_reaches_the_caller_unchanged(
    proxied: Callable[..., Proxied], model_url: str
) -> None:
    px = proxied()
    with httpx.Client(timeout=10) as c:
        direct = c.post(model_url + "/v2/models/broken/infer", json=OIP)
        answer = c.post(px.url + "/v2/models/broken/infer", json=OIP)
    assert (
        (answer.status_code, answer.content)
        == (direct.status_code, direct.content)
        == (200, b"{not json")
    )
    events = stored(px, 3, "broken")
    assert {e["prediction"] for e in events} == {None} and all(e["features"] for e in events)
    assert px.metric('mlwatch_proxy_capture_failures_total{reason="unparsable"}') == 1


def test_a_body_over_the_limit_is_recorded_without_it(
    proxied: Callable[..., Proxied], model_url: str
) -> None:
    px = proxied(proxy_capture_max_bytes=64)
    with httpx.Client(timeout=10) as c:
        direct = c.post(model_url + "/v2/models/iris/infer", json=OIP)
        answer = c.post(px.url + "/v2/models/iris/infer", json=OIP)
    assert answer.content == direct.content
    (event,) = stored(px, 1)
    assert (event["features"], event["prediction"], event["status"]) == (None, None, "ok")
    assert px.metric('mlwatch_proxy_capture_failures_total{reason="too_large"}') == 1


def test_a_full_spool_never_reaches_the_caller(
    proxied: Callable[..., Proxied], model_url: str
) -> None:
    px = proxied(spool_segment_bytes=4096, spool_max_bytes=16384)
    store_sink = px.sidecar.sinks[0]

    def broken(batch: Any) -> None:
        raise OSError("disk on fire")

    store_sink.export = broken  # nothing leaves the spool: it fills
    big = {"inputs": [{"name": "text", "shape": [4], "datatype": "BYTES", "data": ["y" * 900] * 4}]}
    with httpx.Client(timeout=10) as c:
        direct = c.post(model_url + "/v2/models/broken/infer", json=big)
        for _ in range(60):
            answer = c.post(px.url + "/v2/models/broken/infer", json=big)
            assert (answer.status_code, answer.content, answer.headers["content-type"]) == (
                direct.status_code,
                direct.content,
                direct.headers["content-type"],
            )
            if px.metric('mlwatch_proxy_capture_failures_total{reason="spool_full"}') > 0:
                break
    assert px.metric('mlwatch_proxy_capture_failures_total{reason="spool_full"}') > 0


def test_calls_without_a_model_name_are_counted_not_recorded(
    proxied: Callable[..., Proxied],
) -> None:
    px = proxied(proxy_format="json")
    with httpx.Client(timeout=10) as c:
        answer = c.post(px.url + "/v2/models/iris/infer", json=OIP)
    assert answer.status_code == 200
    wait_until(
        lambda: px.metric('mlwatch_proxy_capture_failures_total{reason="no_model"}') == 1,
        what="counted",
    )


def test_calls_that_are_not_inference_are_not_recorded(proxied: Callable[..., Proxied]) -> None:
    px = proxied(model="iris")
    with httpx.Client(timeout=10) as c:
        c.get(px.url + "/v2/health/ready")
        c.post(px.url + "/v2/models/iris/infer", content=json.dumps(OIP))
    assert len(stored(px, 3)) == 3
    assert px.metric('mlwatch_proxy_requests_total{code="2xx"}') == 2
