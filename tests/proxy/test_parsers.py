"""The protocol readers and the events they give, on exchanges built by hand."""

from __future__ import annotations

import gzip
import json
from typing import Any

import pytest

from mlwatch import wire
from mlwatch.errors import CaptureError
from mlwatch.proxy import jsonpaths, oip, tfserving
from mlwatch.proxy.events import Reader
from mlwatch.proxy.exchange import Exchange
from mlwatch.settings import load_config


def exchange(path: str, request: Any, response: Any, status: int = 200, **kw: Any) -> Exchange:
    raw = lambda v: v if isinstance(v, bytes) or v is None else json.dumps(v).encode()  # noqa: E731
    return Exchange(
        kw.pop("method", "POST"),
        path,
        kw.pop("headers", []),
        raw(request),
        status,
        raw(response),
        kw.pop("encoding", None),
        1_700_000_000_000_000_000,
        2.5,
        **kw,
    )


def test_oip_nested_data_several_inputs_and_outputs() -> None:
    request = {
        "inputs": [
            {"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [[1, 2], [3, 4]]},
            {"name": "city", "shape": [2], "datatype": "BYTES", "data": ["a", "b" * 5000]},
        ]
    }
    rows, rid = oip.features(request)
    assert rows == [
        {"x_0": 1, "x_1": 2, "city": "a"},
        {"x_0": 3, "x_1": 4, "city": "b" * wire.MAX_STRING},
    ]
    assert rid is None
    response = {
        "outputs": [
            {"name": "label", "shape": [2], "datatype": "INT64", "data": [1, 0]},
            {"name": "proba", "shape": [2, 2], "datatype": "FP32", "data": [0.2, 0.8, 0.9, 0.1]},
        ]
    }
    assert oip.predictions(response, 2) == (
        [{"label": 1, "proba": [0.2, 0.8]}, {"label": 0, "proba": [0.9, 0.1]}],
        None,
    )


@pytest.mark.parametrize(
    "request_body",
    [
        {},
        {"inputs": []},
        {"inputs": [{"name": "x", "shape": [2, 3], "data": [1, 2, 3, 4]}]},
        {"inputs": [{"name": "x", "shape": "2", "data": [1]}]},
        {
            "inputs": [
                {"name": "a", "shape": [2], "data": [1, 2]},
                {"name": "b", "shape": [3], "data": [1, 2, 3]},
            ]
        },
    ],
)
def test_oip_refuses_what_is_not_an_inference_request(request_body: Any) -> None:
    with pytest.raises(CaptureError):
        oip.features(request_body)


def test_oip_answer_of_another_batch_size_is_refused() -> None:
    with pytest.raises(CaptureError, match="3 rows"):
        oip.predictions({"outputs": [{"name": "y", "shape": [2], "data": [1, 2]}]}, 3)


def test_tf_serving_formats() -> None:
    assert tfserving.features({"instances": [[1, 2], [3, 4]]})[0] == [
        {"input_0": 1, "input_1": 2},
        {"input_0": 3, "input_1": 4},
    ]
    assert tfserving.features({"instances": [7]})[0] == [{"input": 7}]
    assert tfserving.features({"inputs": [[1, 2]]})[0] == [{"input_0": 1, "input_1": 2}]
    assert tfserving.predictions({"outputs": {"a": [1, 2], "b": [3, 4]}}, 2)[0] == [
        {"a": 1, "b": 3},
        {"a": 2, "b": 4},
    ]
    with pytest.raises(CaptureError):
        tfserving.features({"signature_name": "x"})
    with pytest.raises(CaptureError):
        tfserving.predictions({"predictions": [1]}, 2)


def test_json_paths() -> None:
    assert jsonpaths.features({"a": 1, "b": "x"}, None)[0] == [{"a": 1, "b": "x"}]
    assert jsonpaths.features({"rows": [{"a": 1}, {"a": 2}]}, "rows")[0] == [{"a": 1}, {"a": 2}]
    assert jsonpaths.features({"v": [1, 2]}, "v")[0] == [{"input_0": 1, "input_1": 2}]
    assert jsonpaths.predictions({"p": {"label": 1}}, 1, "p")[0] == [{"label": 1}]
    with pytest.raises(CaptureError, match="no features at 'nope'"):
        jsonpaths.features({"a": 1}, "nope")


def test_the_reader_gives_valid_events_with_identity_from_path_header_or_settings() -> None:
    config = load_config(
        env={}, model="fallback", version="9", proxy_model_header="x-model", code_version="abc"
    )
    reader = Reader(config)
    request = {"inputs": [{"name": "x", "shape": [1, 2], "data": [1.5, 2.5]}]}
    response = {"model_version": "4", "outputs": [{"name": "y", "shape": [1], "data": [1]}]}
    (ev,), misses = reader.events(exchange("/v2/models/iris/versions/2/infer", request, response))
    assert misses == [] and (ev["model"], ev["version"], ev["code_version"]) == ("iris", "2", "abc")
    checked = wire.validate_event(ev)
    assert checked["features"] == {"x_0": 1.5, "x_1": 2.5} and checked["prediction"] == 1
    assert checked["ts"] == "2023-11-14T22:13:20.000000Z" and checked["latency_ms"] == 2.5
    (ev,), _ = reader.events(exchange("/v2/models/iris/infer", request, response))
    assert ev["version"] == "4"  # from the answer
    json_reader = Reader(
        load_config(env={}, model="fallback", proxy_format="json", proxy_model_header="x-model")
    )
    (ev,), _ = json_reader.events(
        exchange("/predict", {"a": 1}, [0.5], headers=[(b"x-model", b"m2")])
    )
    assert (ev["model"], ev["features"], ev["prediction"]) == ("m2", {"a": 1}, [0.5])
    (ev,), _ = json_reader.events(exchange("/predict", {"a": 1}, [0.5]))
    assert ev["model"] == "fallback"


def test_the_reader_undoes_gzip_and_records_errors_and_partial_calls() -> None:
    reader = Reader(load_config(env={}))
    request = {"instances": [[1, 2]]}
    packed = gzip.compress(json.dumps({"predictions": [3]}).encode())
    (ev,), misses = reader.events(
        exchange("/v1/models/m:predict", request, packed, encoding="gzip")
    )
    assert (ev["prediction"], misses) == (3, [])
    (ev,), misses = reader.events(exchange("/v1/models/m:predict", request, None, status=503))
    assert (ev["status"], ev["error"], ev["features"], misses) == (
        "error",
        "HTTP503",
        {"input_0": 1, "input_1": 2},
        [],
    )
    (ev,), misses = reader.events(exchange("/v1/models/m:predict", None, b"{}"))
    assert (ev["features"], ev["prediction"], misses) == (None, None, ["too_large"])
    (ev,), misses = reader.events(exchange("/v1/models/m:predict", b"\x00", b"{}"))
    assert (ev["features"], misses) == (None, ["unparsable"])
    assert reader.events(exchange("/v1/models/m", None, None, method="GET")) == ([], [])
    with pytest.raises(CaptureError) as caught:
        Reader(load_config(env={}, proxy_format="json")).events(exchange("/p", {"a": 1}, {}))
    assert caught.value.reason == "no_model"
