"""The sidecar's HTTP API in process: accepted paths, and every kind of bad input.

Bad input must get the right 4xx with a message that names the problem, the
sidecar must keep serving, and the store must stay intact.
"""

from __future__ import annotations

import gzip
import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from mlwatch.settings import FeatureSpec, ModelSpec
from mlwatch.sidecar.app import create_app
from tests.helpers import event, gz, wait_until


def stored(client: TestClient, model: str = "iris") -> int:
    return int(client.get(f"/v1/models/{model}/status").json()["events_stored"])


def post(client: TestClient, body: Any, ctype: str = "application/json", **headers: str) -> Any:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post("/v1/events", content=data, headers={"content-type": ctype, **headers})


def test_json_array_is_accepted_and_stored(client: TestClient) -> None:
    r = post(client, [event(i) for i in range(10)])
    assert r.status_code == 202, r.text
    assert r.json() == {"accepted": 10}
    wait_until(lambda: stored(client) == 10, what="10 events stored")
    rows = client.get("/v1/models/iris/events", params={"limit": 3}).json()["events"]
    assert len(rows) == 3
    assert [r["ts"] for r in rows] == sorted((r["ts"] for r in rows), reverse=True)
    assert rows[0]["features"]["color"] == "red"
    # what the API returns is the wire format: it can be posted again as it is
    assert post(client, rows).status_code == 202


def test_ndjson_and_gzip_are_accepted(client: TestClient) -> None:
    nd = b"\n".join(json.dumps(event(i)).encode() for i in range(5)) + b"\n"
    assert post(client, nd, "application/x-ndjson").json() == {"accepted": 5}
    r = post(
        client,
        gz([event(i) for i in range(5, 9)]),
        "application/json",
        **{"content-encoding": "gzip"},
    )
    assert r.status_code == 202 and r.json() == {"accepted": 4}
    wait_until(lambda: stored(client) == 9, what="9 events stored")


def test_replayed_event_ids_are_stored_once(client: TestClient) -> None:
    batch = [event(i, event_id=f"00000000-0000-7000-8000-{i:012d}") for i in range(4)]
    assert post(client, batch).status_code == 202
    assert post(client, batch).status_code == 202
    wait_until(lambda: stored(client) == 4, what="4 events stored")
    assert stored(client) == 4


@pytest.mark.parametrize(
    ("body", "ctype", "status", "needle"),
    [
        (b'[{"model": "iris", "latency_ms": 1}', "application/json", 400, "invalid JSON at line 1"),
        (
            b'{"model":"iris","latency_ms":1}\n{"model": oops}\n',
            "application/x-ndjson",
            400,
            "line 2: invalid JSON",
        ),
        (b'[{"model": "iris", "latency_ms": NaN}]', "application/json", 400, "invalid JSON"),
        (b"", "application/json", 400, "empty body"),
        (
            json.dumps([event(0), event(1, latency_ms="fast")]).encode(),
            "application/json",
            422,
            "line 2, field 'latency_ms': expected a non-negative number, got str",
        ),
        (
            json.dumps([event(0, latency_ms=-1)]).encode(),
            "application/json",
            422,
            "field 'latency_ms'",
        ),
        (
            json.dumps([event(0, features={"x": [1, 2]})]).encode(),
            "application/json",
            422,
            "field 'features.x'",
        ),
        (
            json.dumps([event(0, colour="red")]).encode(),
            "application/json",
            422,
            "field 'colour': unknown field",
        ),
        (
            json.dumps([{"latency_ms": 1}]).encode(),
            "application/json",
            422,
            "line 1, field 'model': required",
        ),
        (
            json.dumps([event(0, status="maybe")]).encode(),
            "application/json",
            422,
            "field 'status'",
        ),
        (json.dumps([event(0, ts="yesterday")]).encode(), "application/json", 422, "field 'ts'"),
        (
            json.dumps([event(0, model="bad name!")]).encode(),
            "application/json",
            422,
            "field 'model'",
        ),
        (json.dumps([1, 2]).encode(), "application/json", 422, "line 1: expected a JSON object"),
        (
            json.dumps([event(0)]).encode(),
            "text/plain",
            415,
            "unsupported Content-Type 'text/plain'",
        ),
        (json.dumps([event(0)]).encode(), "", 415, "unsupported Content-Type"),
    ],
)
def test_bad_input_gets_a_precise_4xx(
    client: TestClient, body: bytes, ctype: str, status: int, needle: str
) -> None:
    assert post(client, [event(i) for i in range(3)]).status_code == 202
    r = post(client, body, ctype)
    assert r.status_code == status, r.text
    assert needle in r.json()["detail"], r.json()
    # still serving, and the store holds exactly the good batch
    assert post(client, [event(9)]).status_code == 202
    wait_until(lambda: stored(client) == 4, what="only the good events stored")
    assert client.get("/healthz").status_code == 200


def test_several_errors_are_listed(client: TestClient) -> None:
    r = post(client, [event(0, latency_ms=None), event(1), event(2, status="x")])
    assert r.status_code == 422
    errors = r.json()["errors"]
    assert [(e["line"], e["field"]) for e in errors] == [(1, "latency_ms"), (3, "status")]
    assert "(and 1 more)" in r.json()["detail"]


def test_non_finite_numbers_from_python_json_are_refused(client: TestClient) -> None:
    body = json.dumps([event(0, features={"x": float("inf")})]).encode()  # Python writes Infinity
    r = post(client, body)
    assert r.status_code == 400 and "invalid JSON" in r.json()["detail"]


def test_bad_gzip_and_unknown_encoding(client: TestClient) -> None:
    r = post(client, b"not gzip at all", **{"content-encoding": "gzip"})
    assert r.status_code == 400 and "not valid gzip" in r.json()["detail"]
    r = post(client, gzip.compress(b"[]")[:-6], **{"content-encoding": "gzip"})
    assert r.status_code == 400 and "gzip" in r.json()["detail"]
    r = post(client, json.dumps([event(0)]).encode(), **{"content-encoding": "br"})
    assert r.status_code == 415 and "Content-Encoding" in r.json()["detail"]


def test_size_and_count_limits(sidecar_config: Any) -> None:
    app = create_app(
        sidecar_config(max_body_bytes=4096, max_events_per_request=3), registry=CollectorRegistry()
    )
    with TestClient(app) as c:
        big = json.dumps([event(i, features={"x": "y" * 2000}) for i in range(3)]).encode()
        r = post(c, big)
        assert r.status_code == 413 and "4096" in r.json()["detail"]
        bomb = gzip.compress(b"[" + b" " * 100_000 + b"]")
        r = post(c, bomb, **{"content-encoding": "gzip"})
        assert r.status_code == 413 and "after gzip" in r.json()["detail"]
        r = post(c, [event(i) for i in range(4)])
        assert r.status_code == 413 and "limit is 3" in r.json()["detail"]
        assert post(c, [event(i) for i in range(3)]).status_code == 202
        metrics = c.get("/metrics").text
        assert 'mlwatch_requests_rejected_total{status="413"} 3.0' in metrics


def test_token_is_required_when_set(sidecar_config: Any) -> None:
    app = create_app(sidecar_config(token="s3cret-token"), registry=CollectorRegistry())
    with TestClient(app) as c:
        assert post(c, [event(0)]).status_code == 401
        r = post(c, [event(0)], authorization="Bearer wrong")
        assert r.status_code == 401 and "bearer token" in r.json()["detail"]
        assert r.headers["www-authenticate"] == "Bearer"
        assert c.get("/metrics").status_code == 401
        assert c.get("/v1/models/iris/status").status_code == 401
        assert post(c, [event(0)], authorization="Bearer s3cret-token").status_code == 202
        assert c.get("/healthz").status_code == 200  # probes stay open


def test_feedback_and_registration(client: TestClient) -> None:
    assert post(client, [event(i) for i in range(3)]).status_code == 202
    fb = [
        {"model": "iris", "request_id": "r1", "label": 2},
        {"model": "iris", "request_id": "r2", "label": 0},
    ]
    r = client.post("/v1/feedback", json=fb)
    assert r.status_code == 202 and r.json() == {"accepted": 2}
    r = client.post("/v1/feedback", json=[{"model": "iris", "label": 1}])
    assert r.status_code == 422 and "field 'request_id': required" in r.json()["detail"]
    reg = [
        {
            "model": "iris",
            "version": "1",
            "code_version": "abc123",
            "run_id": "run-7",
            "task": "classification",
            "params": {"C": 1.0},
        }
    ]
    assert client.post("/v1/models", json=reg).status_code == 202

    def done() -> Any:
        status = client.get("/v1/models/iris/status").json()
        return status if status["feedback_stored"] == 2 and status["versions"] else None

    status = wait_until(done, what="feedback and registration stored")
    assert status["events_stored"] == 3
    assert status["versions"][0]["params"] == {"C": 1.0}
    metrics = client.get("/metrics").text
    assert (
        'mlwatch_model_info{code_version="abc123",environment="default",model="iris",run_id="run-7",version="1"} 1.0'
        in metrics
    )


def test_events_query_parameters(client: TestClient) -> None:
    evs = [event(i, ts=f"2026-01-01T00:00:0{i}.000000Z") for i in range(5)]
    assert post(client, evs).status_code == 202
    wait_until(lambda: stored(client) == 5, what="5 events stored")
    r = client.get(
        "/v1/models/iris/events",
        params={"since": "2026-01-01T00:00:01Z", "until": "2026-01-01T00:00:04Z"},
    )
    assert [e["request_id"] for e in r.json()["events"]] == ["r3", "r2", "r1"]
    r = client.get("/v1/models/iris/events", params={"since": "last week"})
    assert r.status_code == 422 and "'since'" in r.json()["detail"]
    r = client.get("/v1/models/iris/events", params={"limit": 0})
    assert r.status_code == 422 and "limit" in r.json()["detail"]


def test_metrics_count_predictions_classes_latency_and_drops(client: TestClient) -> None:
    evs = [event(i, latency_ms=2.0, prediction="setosa") for i in range(4)]
    evs.append(event(9, status="error", error="ValueError", prediction=None))
    drops = json.dumps([{"model": "iris", "version": "1", "reason": "queue_full", "count": 7}])
    assert post(client, evs, **{"x-mlwatch-dropped": drops}).status_code == 202
    text = client.get("/metrics").text
    assert (
        'mlwatch_predictions_total{environment="default",model="iris",status="ok",version="1"} 4.0'
        in text
    )
    assert (
        'mlwatch_predictions_total{environment="default",model="iris",status="error",version="1"} 1.0'
        in text
    )
    assert (
        'mlwatch_predicted_class_total{class="setosa",environment="default",model="iris",version="1"} 4.0'
        in text
    )
    assert (
        'mlwatch_prediction_latency_seconds_bucket{environment="default",le="0.0025",model="iris",version="1"} 5.0'
        in text
    )
    assert (
        'mlwatch_prediction_latency_seconds_bucket{environment="default",le="0.001",model="iris",version="1"} 0.0'
        in text
    )
    assert (
        'mlwatch_events_dropped_total{environment="default",model="iris",reason="queue_full",version="1"} 7.0'
        in text
    )
    bad = post(client, [event(0)], **{"x-mlwatch-dropped": "{nope"})
    assert bad.status_code == 400 and "X-Mlwatch-Dropped" in bad.json()["detail"]


def test_regression_values_histogram(sidecar_config: Any) -> None:
    cfg = sidecar_config()
    cfg = type(cfg)(**{**cfg.__dict__, "models": (ModelSpec(name="house", task="regression"),)})
    with TestClient(create_app(cfg, registry=CollectorRegistry())) as c:
        evs = [event(i, model="house", prediction=float(v)) for i, v in enumerate([0.5, 5, 50])]
        assert post(c, evs).status_code == 202
        text = c.get("/metrics").text
        assert (
            'mlwatch_prediction_value_bucket{environment="default",le="10.0",model="house",version="1"} 2.0'
            in text
        )
        assert (
            'mlwatch_prediction_value_count{environment="default",model="house",version="1"} 3.0'
            in text
        )


def test_a_model_specs_value_buckets_shape_the_histogram(sidecar_config: Any) -> None:
    cfg = sidecar_config()
    spec = ModelSpec(name="house", task="regression", value_buckets=(25.0, 100.0, 350.0))
    cfg = type(cfg)(**{**cfg.__dict__, "models": (spec,)})
    with TestClient(create_app(cfg, registry=CollectorRegistry())) as c:
        evs = [event(i, model="house", prediction=float(v)) for i, v in enumerate([30, 90, 200])]
        assert post(c, evs).status_code == 202
        text = c.get("/metrics").text
        for le, n in (("25.0", 0), ("100.0", 2), ("350.0", 3), ("+Inf", 3)):
            assert (
                f'mlwatch_prediction_value_bucket{{environment="default",le="{le}",model="house",version="1"}} {n}.0'
                in text
            )
        assert 'le="1000.0"' not in text
        assert "mlwatch_predicted_class_total{" not in text


def test_sensitive_features_are_hashed_or_dropped_before_storage(sidecar_config: Any) -> None:
    cfg = sidecar_config(hash_key="k1")
    spec = ModelSpec(
        name="iris",
        features=(
            FeatureSpec("email", "categorical", "hash"),
            FeatureSpec("ssn", "categorical", "drop"),
        ),
    )
    cfg = type(cfg)(**{**cfg.__dict__, "models": (spec,)})
    with TestClient(create_app(cfg, registry=CollectorRegistry())) as c:
        evs = [
            event(i, features={"email": "alice@example.com", "ssn": "123", "x": 1})
            for i in range(2)
        ]
        assert post(c, evs).status_code == 202
        wait_until(lambda: stored(c) == 2, what="2 events stored")
        rows = c.get("/v1/models/iris/events").json()["events"]
        for row in rows:
            assert "ssn" not in row["features"]
            assert row["features"]["email"].startswith("hmac:")
            assert "alice" not in json.dumps(row)
        assert rows[0]["features"]["email"] == rows[1]["features"]["email"]


def test_openapi_lists_the_contract(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    for path in (
        "/v1/events",
        "/v1/feedback",
        "/v1/models",
        "/metrics",
        "/healthz",
        "/readyz",
        "/v1/models/{model}/status",
        "/v1/models/{model}/events",
    ):
        assert path in spec["paths"], path
    body = spec["paths"]["/v1/events"]["post"]["requestBody"]["content"]
    assert set(body) == {
        "application/json",
        "application/x-ndjson",
        "application/jsonl",
        "application/x-jsonlines",
    }


def test_readyz(client: TestClient) -> None:
    r = client.get("/readyz")
    assert r.status_code == 200 and r.json()["sinks"]["store"]["healthy"] is True


def test_full_spool_answers_503_until_the_sink_catches_up(sidecar_config: Any) -> None:
    cfg = sidecar_config(spool_segment_bytes=4096, spool_max_bytes=16384)
    app = create_app(cfg, registry=CollectorRegistry())
    sidecar = app.state.sidecar
    store_sink = sidecar.sinks[0]
    real_export = store_sink.export

    def broken(batch: Any) -> None:
        raise OSError("disk on fire")

    store_sink.export = broken
    with TestClient(app) as c:
        statuses = []
        for i in range(40):
            r = post(c, [event(i * 10 + j, features={"x": "y" * 200}) for j in range(5)])
            statuses.append(r.status_code)
            if r.status_code == 503:
                break
        assert statuses[0] == 202 and statuses[-1] == 503, statuses
        assert r.headers["retry-after"] == "5" and "spool is full" in r.json()["detail"]
        wait_until(lambda: c.get("/readyz").status_code == 503, what="not ready")
        ready = c.get("/readyz").json()
        assert "disk on fire" in ready["sinks"]["store"]["last_error"]
        assert 'mlwatch_sink_errors_total{sink="store"}' in c.get("/metrics").text
        accepted = 5 * statuses.count(202)
        store_sink.export = real_export  # the sink recovers: the backlog drains, nothing lost
        wait_until(lambda: stored(c) == accepted, timeout=30, what="backlog drained")
        wait_until(lambda: post(c, [event(999)]).status_code == 202, what="ingest again")
        assert c.get("/readyz").status_code == 200


def test_batch_larger_than_the_spool_is_413_not_a_retry_loop(sidecar_config: Any) -> None:
    cfg = sidecar_config(spool_segment_bytes=4096, spool_max_bytes=16384)
    with TestClient(create_app(cfg, registry=CollectorRegistry())) as c:
        r = post(c, [event(i, features={"x": "y" * 1000}) for i in range(14)])
        assert r.status_code == 413 and "larger than the spool" in r.json()["detail"]
        assert post(c, [event(0)]).status_code == 202


def test_full_disk_is_503_not_500(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    real_pwrite = os.pwrite

    def full(fd: int, data: bytes, offset: int) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "pwrite", full)
    r = post(client, [event(0)])
    assert r.status_code == 503, r.text
    assert "No space left on device" in r.json()["detail"] and r.headers["retry-after"]
    monkeypatch.setattr(os, "pwrite", real_pwrite)
    assert post(client, [event(1)]).status_code == 202
    wait_until(lambda: stored(client) == 1, what="the later event stored")


def test_drop_reports_count_once_and_may_come_without_events(client: TestClient) -> None:
    def report(rid: str, n: int) -> str:
        return json.dumps(
            [{"model": "iris", "version": "1", "reason": "shutdown", "count": n, "report_id": rid}]
        )

    assert post(client, [], **{"x-mlwatch-dropped": report("a", 3)}).json() == {"accepted": 0}
    assert post(client, [], **{"x-mlwatch-dropped": report("a", 3)}).status_code == 202  # resent
    assert post(client, [event(0)], **{"x-mlwatch-dropped": report("b", 2)}).status_code == 202
    text = client.get("/metrics").text
    assert (
        'mlwatch_events_dropped_total{environment="default",model="iris",reason="shutdown",version="1"} 5.0'
        in text
    )


@pytest.mark.parametrize(
    ("ev", "field"),
    [
        (event(0, ts="0001-01-01T00:00:00+01:00"), "ts"),
        (event(0, prediction=json.loads("[" * 40 + "1" + "]" * 40)), "prediction"),
        (event(0, request_id="r\u0000x"), "request_id"),
        (event(0, labels={"bad key": "x"}), "labels.bad key"),
    ],
)
def test_edge_values_are_422_not_500(client: TestClient, ev: dict, field: str) -> None:
    r = post(client, [ev])
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"].startswith(field)


def test_a_failed_cursor_write_does_not_stop_the_store(sidecar_config: Any) -> None:
    app = create_app(sidecar_config(), registry=CollectorRegistry())
    spool = app.state.sidecar.spool
    real_commit = spool.commit
    failures = []

    def flaky_commit(consumer: str, record: Any) -> None:
        if not failures:
            failures.append(1)
            raise OSError(28, "No space left on device")
        real_commit(consumer, record)

    spool.commit = flaky_commit
    with TestClient(app) as c:
        assert post(c, [event(0)]).status_code == 202
        wait_until(lambda: failures, what="the commit failed once")
        assert post(c, [event(1)]).status_code == 202
        wait_until(lambda: stored(c) == 2, timeout=15, what="both events stored")
        wait_until(
            lambda: c.get("/v1/models/iris/status").json()["sinks"]["store"]["lag_bytes"] == 0,
            what="cursor caught up",
        )
        status = c.get("/v1/models/iris/status").json()["sinks"]["store"]
        assert status["alive"] and status["healthy"]
        assert 'mlwatch_sink_errors_total{sink="store"} 1.0' in c.get("/metrics").text


def test_a_sidecar_that_cannot_be_built_releases_its_spool(
    sidecar_config: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure after the spool opened (here the scheduler) closes it again: the next
    sidecar on the same data directory starts."""
    from mlwatch.sidecar import service

    config = sidecar_config()

    def broken_redactor(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a late construction failure")

    monkeypatch.setattr(service, "Redactor", broken_redactor)
    with pytest.raises(RuntimeError, match="late construction failure"):
        service.Sidecar(config, registry=CollectorRegistry())
    monkeypatch.undo()
    sidecar = service.Sidecar(config, registry=CollectorRegistry())
    sidecar.stop()


def test_window_source_elasticsearch_needs_a_url(sidecar_config: Any) -> None:
    from mlwatch.errors import ConfigError

    with pytest.raises(ConfigError, match="window_source: 'elasticsearch' needs elasticsearch_url"):
        sidecar_config(window_source="elasticsearch")
