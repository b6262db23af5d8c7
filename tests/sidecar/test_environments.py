"""Environments through the sidecar: the events of two environments are counted apart on
/metrics, an event that names none gets the sidecar's, and ``?environment=`` filters the
query routes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from mlwatch.sidecar.app import create_app
from tests.helpers import event, wait_until


@pytest.fixture
def qa_client(sidecar_config: Callable[..., Any]) -> Iterator[TestClient]:
    """A sidecar whose own environment is qa."""
    app = create_app(sidecar_config(environment="qa"), registry=CollectorRegistry())
    with TestClient(app) as c:
        yield c


def _send(client: TestClient) -> None:
    """3 events of prod (one an error), 2 that name no environment (so qa's)."""
    body = [
        *(event(i, environment="prod") for i in range(2)),
        event(2, environment="prod", status="error"),
        *(event(i) for i in range(3, 5)),
    ]
    assert client.post("/v1/events", json=body).status_code == 202
    wait_until(
        lambda: client.get("/v1/models/iris/status").json()["events_stored"] == 5,
        what="five events stored",
    )


def _sample(client: TestClient, name: str, **labels: str) -> float | None:
    registry = client.app.state.sidecar.registry  # type: ignore[attr-defined]
    return registry.get_sample_value(name, {"model": "iris", "version": "1", **labels})  # type: ignore[no-any-return]


def test_each_environment_has_its_own_series(qa_client: TestClient) -> None:
    _send(qa_client)
    predictions = "mlwatch_predictions_total"
    assert _sample(qa_client, predictions, environment="prod", status="ok") == 2
    assert _sample(qa_client, predictions, environment="prod", status="error") == 1
    assert _sample(qa_client, predictions, environment="qa", status="ok") == 2
    assert _sample(qa_client, predictions, environment="qa", status="error") is None
    latency = "mlwatch_prediction_latency_seconds_count"
    assert _sample(qa_client, latency, environment="prod") == 3
    assert _sample(qa_client, latency, environment="qa") == 2
    assert _sample(qa_client, "mlwatch_predicted_class_total", environment="qa", **{"class": "0"})
    text = qa_client.get("/metrics").text
    assert (
        'mlwatch_predictions_total{environment="prod",model="iris",status="ok",version="1"} 2.0'
        in text
    )
    assert "environment=" in text.split("mlwatch_model_info{", 1)[1].split("}", 1)[0]


def test_environment_filters_the_query_routes(qa_client: TestClient) -> None:
    _send(qa_client)
    page = qa_client.get("/v1/models/iris/events", params={"environment": "prod"}).json()
    assert page["count"] == 3 and {e["environment"] for e in page["events"]} == {"prod"}
    page = qa_client.get("/v1/models/iris/events", params={"environment": "qa"}).json()
    assert sorted(e["request_id"] for e in page["events"]) == ["r3", "r4"]
    everything = qa_client.get("/v1/models/iris/events").json()
    assert everything["count"] == 5
    status = qa_client.get("/v1/models/iris/status", params={"environment": "prod"}).json()
    assert (status["environment"], status["events_stored"]) == ("prod", 3)
    assert qa_client.get("/v1/models/iris/status").json()["environment"] == "qa"
    listed = qa_client.get("/v1/models", params={"environment": "dev"}).json()["models"]
    assert [(m["model"], m["events_stored"]) for m in listed] == [("iris", 0)]


@pytest.mark.parametrize("bad", ["Prod", "pr-od", "a" * 65])
def test_a_bad_environment_is_refused_naming_the_field(qa_client: TestClient, bad: str) -> None:
    answer = qa_client.post("/v1/events", json=[event(0, environment=bad)])
    assert answer.status_code == 422
    assert "environment" in answer.json()["detail"]
    answer = qa_client.get("/v1/models/iris/events", params={"environment": bad})
    assert answer.status_code == 422 and "environment" in answer.json()["detail"]
