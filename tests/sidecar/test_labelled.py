"""``mlwatch_labelled_predictions_total{outcome}``: each prediction is counted once, right
or wrong, when it meets its ground truth — whichever of the two arrives first — scored
as the model's KPIs score it."""

from __future__ import annotations

from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from mlwatch.sidecar.app import create_app
from tests.helpers import event, wait_until


def labelled(client: TestClient, outcome: str) -> float:
    registry = client.app.state.sidecar.registry  # type: ignore[attr-defined]
    labels = {"model": "iris", "environment": "default", "version": "1", "outcome": outcome}
    return registry.get_sample_value("mlwatch_labelled_predictions_total", labels) or 0.0


def post(client: TestClient, path: str, records: list[dict[str, object]]) -> None:
    assert client.post(path, json=records).status_code == 202


def test_feedback_after_its_event_counts_once(sidecar_config: object) -> None:
    app = create_app(sidecar_config(), registry=CollectorRegistry())  # type: ignore[operator]
    with TestClient(app) as client:
        post(client, "/v1/events", [event(i) for i in range(9)])  # predictions 0,1,2,0,1,2,...
        post(
            client,
            "/v1/feedback",
            [{"model": "iris", "request_id": f"r{i}", "label": 0} for i in range(9)],
        )
        wait_until(lambda: labelled(client, "correct") + labelled(client, "wrong") == 9)
        assert (labelled(client, "correct"), labelled(client, "wrong")) == (3.0, 6.0)
        post(client, "/v1/events", [event(100)])  # no feedback: not counted
        wait_until(lambda: client.get("/v1/models/iris/status").json()["events_stored"] == 10)
        assert labelled(client, "correct") + labelled(client, "wrong") == 9


def test_feedback_before_its_event_counts_when_the_event_arrives(sidecar_config: object) -> None:
    app = create_app(sidecar_config(), registry=CollectorRegistry())  # type: ignore[operator]
    with TestClient(app) as client:
        post(client, "/v1/feedback", [{"model": "iris", "request_id": "r1", "label": 1}])
        wait_until(lambda: client.get("/v1/models/iris/status").json()["feedback_stored"] == 1)
        assert labelled(client, "correct") == 0
        post(client, "/v1/events", [event(1)])  # prediction 1: right
        wait_until(lambda: labelled(client, "correct") == 1)
        assert labelled(client, "wrong") == 0


def test_a_second_label_for_a_prediction_is_not_a_second_count(sidecar_config: object) -> None:
    app = create_app(sidecar_config(), registry=CollectorRegistry())  # type: ignore[operator]
    with TestClient(app) as client:
        post(client, "/v1/events", [event(1)])
        post(client, "/v1/feedback", [{"model": "iris", "request_id": "r1", "label": 1}])
        wait_until(lambda: labelled(client, "correct") == 1)
        post(client, "/v1/feedback", [{"model": "iris", "request_id": "r1", "label": 1}])
        post(client, "/v1/events", [event(2)])  # a marker behind the second label
        wait_until(lambda: client.get("/v1/models/iris/status").json()["events_stored"] == 2)
        assert labelled(client, "correct") + labelled(client, "wrong") == 1
