"""``GET /v1/models`` lists every known model; the status and events of a model nothing is
known about are a 404 that suggests the name meant, so a typo never reads as "no traffic
yet"."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from mlwatch.settings import ModelSpec
from mlwatch.sidecar.app import create_app
from mlwatch.sidecar.service import Sidecar
from mlwatch.store.payloads import EVENTS
from tests.helpers import event, wait_until

TOKEN = "models-token-123456"


def configured(sidecar_config: Callable[..., Any], *names: str, **overrides: Any) -> Any:
    cfg = sidecar_config(**overrides)
    return type(cfg)(**{**cfg.__dict__, "models": tuple(ModelSpec(name=n) for n in names)})


def stored_models(client: TestClient) -> dict[str, Any]:
    """The model list once the events, the feedback and the registration are stored."""

    def listed() -> Any:
        found = {m["model"]: m for m in client.get("/v1/models").json()["models"]}
        done = (
            found["iris"]["events_stored"] == 3
            and found["fraud"]["feedback_stored"] == 1
            and found["ranker"]["versions"] == ["4"]
        )
        return found if done else None

    return dict(wait_until(listed, what="everything stored"))


def test_the_model_list_has_every_known_model(sidecar_config: Callable[..., Any]) -> None:
    app = create_app(configured(sidecar_config, "churn"), registry=CollectorRegistry())
    with TestClient(app) as c:
        evs = [event(0), event(1, version="2"), event(2, ts="2026-01-01T00:00:00Z")]
        assert c.post("/v1/events", json=evs).status_code == 202
        feedback = [{"model": "fraud", "request_id": "r1", "label": 1}]
        assert c.post("/v1/feedback", json=feedback).status_code == 202
        assert c.post("/v1/models", json=[{"model": "ranker", "version": "4"}]).status_code == 202
        models = stored_models(c)
    assert sorted(models) == ["churn", "fraud", "iris", "ranker"]
    iris = models["iris"]
    assert iris["events_stored"] == 3 and iris["feedback_stored"] == 0
    assert iris["versions"] == ["1", "2"] and iris["configured"] is False
    assert iris["last_event"] > "2026-01-01T00:00:00.000000Z"
    assert models["churn"] == {
        "model": "churn",
        "events_stored": 0,
        "feedback_stored": 0,
        "last_event": None,
        "versions": [],
        "configured": True,
    }
    assert models["fraud"]["events_stored"] == 0 and models["ranker"]["last_event"] is None


def test_the_model_list_needs_the_token(sidecar_config: Callable[..., Any]) -> None:
    app = create_app(sidecar_config(token=TOKEN), registry=CollectorRegistry())
    with TestClient(app) as c:
        r = c.get("/v1/models")
        assert r.status_code == 401 and "bearer token" in r.json()["detail"]
        r = c.get("/v1/models", headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 200 and r.json() == {"models": []}


def test_an_unknown_model_is_404_with_did_you_mean(client: TestClient) -> None:
    assert client.post("/v1/events", json=[event(i) for i in range(3)]).status_code == 202
    for path in ("/v1/models/irsi/status", "/v1/models/irsi/events"):
        r = client.get(path)
        assert r.status_code == 404, r.text
        detail = r.json()["detail"]
        assert detail.startswith("unknown model 'irsi'"), detail
        assert "Did you mean 'iris'?" in detail and "Known models: iris." in detail
    metrics = client.get("/metrics").text
    assert 'mlwatch_requests_rejected_total{status="404"} 2.0' in metrics


def test_with_nothing_known_the_404_says_so(client: TestClient) -> None:
    r = client.get("/v1/models/iris/status")
    assert r.status_code == 404 and r.json()["detail"].endswith("No model is known yet.")


def test_a_bad_name_or_window_is_still_422_before_404(client: TestClient) -> None:
    assert client.get("/v1/models/-bad/status").status_code == 422
    r = client.get("/v1/models/nosuch/events", params={"since": "yesterday"})
    assert r.status_code == 422 and "'since'" in r.json()["detail"]


def test_a_configured_model_without_events_answers_200(sidecar_config: Callable[..., Any]) -> None:
    app = create_app(configured(sidecar_config, "churn"), registry=CollectorRegistry())
    with TestClient(app) as c:
        status = c.get("/v1/models/churn/status")
        assert status.status_code == 200 and status.json()["events_stored"] == 0
        assert status.json()["sinks"]["store"]["lag_bytes"] == 0
        events = c.get("/v1/models/churn/events")
        assert events.status_code == 200 and events.json() == {
            "model": "churn",
            "count": 0,
            "events": [],
        }


def test_a_model_accepted_but_not_yet_stored_is_known(sidecar_config: Callable[..., Any]) -> None:
    """Right after a 202 the records may still be in the spool: the model is known."""
    sidecar = Sidecar(sidecar_config(), registry=CollectorRegistry())  # no consumer runs
    try:
        assert sidecar.accept(EVENTS, [event(0, model="fresh")]) == 1
        status = sidecar.status("fresh")
        assert status["events_stored"] == 0 and status["sinks"]["store"]["lag_bytes"] > 0
        assert sidecar.events("fresh")["count"] == 0
        [fresh] = sidecar.models()["models"]
        assert fresh["model"] == "fresh" and fresh["events_stored"] == 0
    finally:
        sidecar.stop()


def test_405_on_the_model_list_allows_get_and_post(client: TestClient) -> None:
    r = client.request("OPTIONS", "/v1/models")
    assert r.status_code == 405 and r.headers["allow"] == "GET, POST"
    assert r.json() == {"detail": "Method Not Allowed"}
    assert client.delete("/v1/models/iris/status").headers["allow"] == "GET"
