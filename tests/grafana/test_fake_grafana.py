"""The fake Grafana against a peer: the real ``grafana-client`` library's calls must be
accepted and their answers parsed, and the fake must refuse what Grafana refuses."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("grafana_client")

from grafana_client.api import GrafanaApi
from grafana_client.client import (
    GrafanaBadInputError,
    GrafanaClientError,
    GrafanaUnauthorizedError,
)

from tests.grafana.fake_grafana import FakeGrafana

TOKEN = "glsa_peer_test_token_0123456789"


def client(fake: FakeGrafana, token: str = TOKEN) -> GrafanaApi:
    host, port = fake.url.removeprefix("http://").split(":")
    return GrafanaApi(auth=token, host=host, port=int(port), protocol="http", timeout=5.0)


@pytest.fixture
def fake() -> Iterator[FakeGrafana]:
    with FakeGrafana(token=TOKEN, viewer_token="glsa_viewer") as grafana:
        yield grafana


@pytest.fixture
def api(fake: FakeGrafana) -> Iterator[GrafanaApi]:
    grafana = client(fake)
    yield grafana
    grafana.client.s.close()


def rule(uid: str = "r1", **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "uid": uid,
        "folderUID": "f1",
        "ruleGroup": "mlwatch",
        "title": "Drift on iris",
        "condition": "B",
        "data": [
            {
                "refId": "A",
                "relativeTimeRange": {"from": 600, "to": 0},
                "datasourceUid": "prom",
                "model": {"expr": "mlwatch_drift_score > 0.2", "refId": "A"},
            },
            {
                "refId": "B",
                "datasourceUid": "__expr__",
                "model": {"type": "threshold", "expression": "A", "refId": "B"},
            },
        ],
        "noDataState": "OK",
        "execErrState": "Error",
        "for": "5m",
        "labels": {"model": "iris"},
        "annotations": {"summary": "drift"},
    }
    body.update(overrides)
    return body


def raw(fake: FakeGrafana, method: str, path: str, body: Any = None, **headers: str) -> int:
    """The status Grafana answers a request made without grafana-client."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(fake.url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        error.close()
        return int(error.code)


def test_dashboards_round_trip_through_the_real_client(fake: FakeGrafana, api: GrafanaApi) -> None:
    folder = api.folder.create_folder("Iris", uid="f1")
    assert folder["uid"] == "f1" and api.folder.get_folder("f1")["title"] == "Iris"
    assert [f["uid"] for f in api.folder.get_all_folders()] == ["f1"]

    dashboard = {"uid": "d1", "title": "Iris overview", "tags": ["mlwatch"], "panels": []}
    payload = {"dashboard": dashboard, "folderUid": "f1", "message": "first", "overwrite": False}
    saved = api.dashboard.update_dashboard(payload)
    assert set(saved) == {"id", "uid", "url", "status", "version", "slug"}
    assert saved["uid"] == "d1" and saved["version"] == 1 and saved["status"] == "success"

    got = api.dashboard.get_dashboard("d1")
    assert got["meta"]["version"] == 1 and got["meta"]["folderUid"] == "f1"
    assert got["dashboard"]["title"] == "Iris overview" and got["dashboard"]["version"] == 1

    again = {**payload, "dashboard": {**dashboard, "version": 1}, "message": "second"}
    assert api.dashboard.update_dashboard(again)["version"] == 2
    assert fake.dashboards["d1"].messages == ["first", "second"]

    hits = api.search.search_dashboards(tag="mlwatch", type_="dash-db")
    assert [(h["uid"], h["folderUid"]) for h in hits] == [("d1", "f1")]
    assert api.search.search_dashboards(tag=["mlwatch", "other"], type_="dash-db") == []

    assert api.dashboard.delete_dashboard("d1")["title"] == "Iris overview"
    with pytest.raises(GrafanaClientError) as missing:
        api.dashboard.get_dashboard("d1")
    assert missing.value.status_code == 404


def test_a_stale_version_is_refused_unless_overwrite(fake: FakeGrafana, api: GrafanaApi) -> None:
    dashboard = {"uid": "d1", "title": "Iris", "panels": []}
    api.dashboard.update_dashboard({"dashboard": dashboard, "overwrite": False})
    assert fake.hand_edit("d1") == 2
    stale = {"dashboard": {**dashboard, "version": 1}, "overwrite": False}
    with pytest.raises(GrafanaClientError) as refused:
        api.dashboard.update_dashboard(stale)
    assert refused.value.status_code == 412
    assert refused.value.response["status"] == "version-mismatch"
    assert api.dashboard.update_dashboard({**stale, "overwrite": True})["version"] == 3


def test_the_fake_refuses_what_grafana_refuses(fake: FakeGrafana, api: GrafanaApi) -> None:
    wrong = client(fake, token="glsa_wrong")
    with pytest.raises(GrafanaUnauthorizedError):
        wrong.folder.get_all_folders()
    wrong.client.s.close()
    assert raw(fake, "GET", "/api/folders") == 401  # no Authorization at all
    assert raw(fake, "GET", "/api/folders", Authorization=f"Basic {TOKEN}") == 401
    assert raw(fake, "GET", "/api/folders", Authorization="Bearer glsa_viewer") == 200
    viewer = {"Authorization": "Bearer glsa_viewer", "Content-Type": "application/json"}
    assert raw(fake, "POST", "/api/folders", {"title": "x"}, **viewer) == 403

    with pytest.raises(GrafanaBadInputError, match="'dashboard' is required"):
        api.dashboard.update_dashboard({"folderUid": "", "overwrite": False})
    with pytest.raises(GrafanaBadInputError, match="unknown fields"):
        api.dashboard.update_dashboard({"dashboard": {"title": "x"}, "folderUID": "f"})
    with pytest.raises(GrafanaBadInputError, match="title cannot be empty"):
        api.dashboard.update_dashboard({"dashboard": {"uid": "d"}})
    with pytest.raises(GrafanaClientError) as no_folder:
        api.dashboard.update_dashboard({"dashboard": {"title": "x"}, "folderUid": "nope"})
    assert no_folder.value.status_code == 404

    api.dashboard.update_dashboard({"dashboard": {"uid": "a", "title": "Same"}})
    with pytest.raises(GrafanaClientError) as clash:
        api.dashboard.update_dashboard({"dashboard": {"uid": "b", "title": "same"}})
    assert clash.value.status_code == 412 and clash.value.response["status"] == "name-exists"

    with pytest.raises(GrafanaClientError) as unknown_path:
        api.client.GET("/dashboards/nothing-here")
    assert unknown_path.value.status_code == 404
    with pytest.raises(GrafanaClientError) as wrong_method:
        api.client.PUT("/dashboards/db", json={})
    assert wrong_method.value.status_code == 405
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "text/plain"}
    assert raw(fake, "POST", "/api/folders", {"title": "x"}, **headers) == 400
    assert fake.dashboards.keys() == {"a"}


def test_alert_rules_through_the_real_client(fake: FakeGrafana, api: GrafanaApi) -> None:
    api.folder.create_folder("Iris", uid="f1")
    created = api.alertingprovisioning.create_alertrule(rule())
    assert created["uid"] == "r1" and created["provenance"] == "api"
    assert api.alertingprovisioning.get_alertrule("r1")["title"] == "Drift on iris"

    changed = rule(title="Drift on iris (2)")
    assert api.alertingprovisioning.update_alertrule("r1", changed)["title"] == "Drift on iris (2)"
    assert [r["uid"] for r in api.alertingprovisioning.get_alertrules_all()] == ["r1"]

    with pytest.raises(GrafanaClientError) as unlocked:  # provenance api cannot be dropped
        api.alertingprovisioning.update_alertrule("r1", changed, disable_provenance=True)
    assert unlocked.value.status_code == 409

    assert api.alertingprovisioning.delete_alertrule("r1") is None  # 204
    assert fake.rules == {}

    editable = api.alertingprovisioning.create_alertrule(rule("r2"), disable_provenance=True)
    assert "provenance" not in editable


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        ({"title": None}, "non-empty string"),
        ({"for": "five minutes"}, "not a duration"),
        ({"condition": "C"}, "no refId"),
        ({"noDataState": "Maybe"}, "noDataState"),
        ({"folderUID": "nope"}, "does not exist"),
        ({"data": []}, "non-empty list"),
        ({"labels": {"n": 1}}, "strings to strings"),
        ({"colour": "red"}, "unknown fields"),
    ],
)
def test_a_broken_alert_rule_is_refused(
    fake: FakeGrafana, api: GrafanaApi, broken: dict[str, Any], message: str
) -> None:
    api.folder.create_folder("Iris", uid="f1")
    with pytest.raises(GrafanaBadInputError, match=message):
        api.alertingprovisioning.create_alertrule(rule(**broken))
    missing = rule()
    del missing["execErrState"]
    with pytest.raises(GrafanaBadInputError, match="missing required fields"):
        api.alertingprovisioning.create_alertrule(missing)
    assert fake.rules == {}


def test_annotations_through_the_real_client(fake: FakeGrafana, api: GrafanaApi) -> None:
    answer = api.annotations.add_annotation(time_from=1_700_000_000_000, tags=["a"], text="hi")
    assert answer["message"] == "Annotation added" and isinstance(answer["id"], int)
    assert fake.annotations[0]["text"] == "hi"
    with pytest.raises(GrafanaBadInputError, match="text field is required"):
        api.annotations.add_annotation(time_from=1, tags=[], text="")
    with pytest.raises(GrafanaClientError) as no_dashboard:
        api.annotations.add_annotation(dashboard_uid="nope", time_from=1, text="x")
    assert no_dashboard.value.status_code == 404
