"""The sync against the fake Grafana: create, update, unchanged, hand edits, prune, dry
run, the token, alert rules and annotations. Requests are counted on the fake."""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("grafana_client")

from mlwatch.errors import ConfigError, GrafanaError
from mlwatch.grafana.grafana_api import annotate
from mlwatch.grafana.sync import Folder, sync
from tests.grafana.fake_grafana import FakeGrafana
from tests.helpers import free_port

TOKEN = "glsa_sync_test_token_5f0c1e9d"
FRAUD = Folder("team-fraud", "Fraud team")


@pytest.fixture
def fake() -> Iterator[FakeGrafana]:
    with FakeGrafana(token=TOKEN, viewer_token="glsa_viewer_only") as grafana:
        yield grafana


def dashboard(uid: str, title: str, threshold: float = 0.2) -> dict[str, Any]:
    return {
        "uid": uid,
        "title": title,
        "tags": ["model"],
        "schemaVersion": 39,
        "panels": [
            {
                "type": "timeseries",
                "title": "drift score",
                "targets": [{"expr": f"mlwatch_drift_score > {threshold}"}],
            }
        ],
    }


def config(threshold: float = 0.2, *, wine: bool = True) -> dict[Any, list[dict[str, Any]]]:
    out: dict[Any, list[dict[str, Any]]] = {
        "iris": [dashboard("iris-drift", "Iris drift", threshold)],
        FRAUD: [dashboard("fraud-kpi", "Fraud KPIs")],
    }
    if wine:
        out["wine"] = [dashboard("wine-drift", "Wine drift")]
    return out


def run(fake: FakeGrafana, dashboards: Any, **options: Any) -> Any:
    return sync(dashboards, url=fake.url, token=TOKEN, **options)


def last_body(fake: FakeGrafana, method: str, path: str) -> Any:
    return [r.body for r in fake.requests if (r.method, r.path) == (method, path)][-1]


def writes(fake: FakeGrafana, since: int = 0) -> list[tuple[str, str]]:
    return [(r.method, r.path) for r in fake.requests[since:] if r.method != "GET"]


def test_the_first_sync_creates_folders_and_dashboards(fake: FakeGrafana) -> None:
    report = run(fake, config(), message="first version")
    assert fake.folders.keys() == {"mlwatch-iris", "team-fraud", "mlwatch-wine"}
    assert fake.folders["team-fraud"]["title"] == "Fraud team"
    placed = {uid: (d.folder_uid, d.version) for uid, d in fake.dashboards.items()}
    assert placed == {
        "iris-drift": ("mlwatch-iris", 1),
        "fraud-kpi": ("team-fraud", 1),
        "wine-drift": ("mlwatch-wine", 1),
    }
    tags = fake.dashboards["iris-drift"].content["tags"]
    assert tags[:2] == ["mlwatch", "model"] and tags[2].startswith("mlwatch-hash:")
    assert len(tags[2]) == len("mlwatch-hash:") + 12
    assert fake.dashboards["iris-drift"].messages == ["first version"]
    assert sorted(report.uids("dashboard", "create")) == ["fraud-kpi", "iris-drift", "wine-drift"]
    assert len(report.uids("folder", "create")) == 3 and report.ok
    assert (
        sorted(writes(fake))
        == [("POST", "/api/dashboards/db")] * 3 + [("POST", "/api/folders")] * 3
    )


def test_an_unchanged_dashboard_is_not_posted_again(fake: FakeGrafana) -> None:
    run(fake, config())
    before = len(fake.requests)
    report = run(fake, config())
    assert writes(fake, before) == []
    assert len(report.uids("dashboard", "unchanged")) == 3
    assert all(d.version == 1 for d in fake.dashboards.values())
    assert "3 unchanged" in report.text()


def test_a_changed_dashboard_is_posted_with_the_message(fake: FakeGrafana) -> None:
    run(fake, config())
    before = len(fake.requests)
    report = run(fake, config(threshold=0.3), message="iris: drift threshold 0.3")
    assert writes(fake, before) == [("POST", "/api/dashboards/db")]
    assert report.uids("dashboard", "update") == ["iris-drift"]
    iris = fake.dashboards["iris-drift"]
    assert iris.version == 2 and iris.messages[-1] == "iris: drift threshold 0.3"
    assert "0.3" in iris.content["panels"][0]["targets"][0]["expr"]
    posted = last_body(fake, "POST", "/api/dashboards/db")
    assert posted["overwrite"] is False and posted["dashboard"]["version"] == 1
    assert posted["folderUid"] == "mlwatch-iris"


def test_a_dashboard_moved_to_another_folder_is_posted(fake: FakeGrafana) -> None:
    run(fake, config())
    moved = config()
    moved[FRAUD].append(moved.pop("wine")[0])
    report = run(fake, moved)
    assert report.uids("dashboard", "update") == ["wine-drift"]
    assert fake.dashboards["wine-drift"].folder_uid == "team-fraud"


def test_a_hand_edit_is_reported_and_kept_unless_forced(
    fake: FakeGrafana, caplog: pytest.LogCaptureFixture
) -> None:
    run(fake, config())
    fake.hand_edit("iris-drift")
    before = len(fake.requests)
    report = run(fake, config(threshold=0.3))
    assert writes(fake, before) == []
    assert report.uids("dashboard", "hand-edited") == ["iris-drift"] and not report.ok
    assert "hand-edited dashboard iris-drift (edited in Grafana since mlwatch wrote it" in (
        report.text()
    )
    assert "added by hand" in report.diffs["dashboard/iris-drift"]
    assert fake.dashboards["iris-drift"].content["panels"][-1]["title"] == "added by hand"
    assert "iris-drift" in caplog.text and "not overwritten" in caplog.text

    unchanged_config = run(fake, config())  # the same is true when mlwatch's side is unchanged
    assert unchanged_config.uids("dashboard", "hand-edited") == ["iris-drift"]

    forced = run(fake, config(threshold=0.3), force=True)
    assert forced.uids("dashboard", "update") == ["iris-drift"] and forced.ok
    iris = fake.dashboards["iris-drift"]
    assert iris.version == 3 and len(iris.content["panels"]) == 1
    assert last_body(fake, "POST", "/api/dashboards/db")["overwrite"] is True
    assert run(fake, config(threshold=0.3)).uids("dashboard", "unchanged") == sorted(
        ["fraud-kpi", "iris-drift", "wine-drift"]
    )


def test_a_save_in_grafana_during_the_sync_is_not_overwritten(fake: FakeGrafana) -> None:
    """Between mlwatch's read and its write someone saves the dashboard: Grafana answers
    412 version-mismatch to the write, and the sync reports a hand edit."""
    run(fake, config())

    def edit_first(request: Any) -> None:
        if (request.method, request.path) == ("POST", "/api/dashboards/db"):
            fake.on_request = None
            fake.hand_edit("iris-drift")

    fake.on_request = edit_first
    report = run(fake, config(threshold=0.3))
    assert report.uids("dashboard", "hand-edited") == ["iris-drift"]
    assert "saved in Grafana while mlwatch was syncing" in report.text()
    iris = fake.dashboards["iris-drift"]
    assert iris.version == 2 and iris.content["panels"][-1]["title"] == "added by hand"


def test_a_dashboard_mlwatch_did_not_write_is_not_overwritten(fake: FakeGrafana) -> None:
    fake.folders["mlwatch-iris"] = {"id": 99, "uid": "mlwatch-iris", "title": "iris"}
    run(fake, {})  # nothing of mlwatch's yet
    fake.dashboards.clear()
    from tests.grafana.fake_grafana import StoredDashboard

    mine = {"uid": "iris-drift", "title": "Someone's", "tags": [], "panels": []}
    fake.dashboards["iris-drift"] = StoredDashboard(7, mine, "mlwatch-iris", 4)
    report = run(fake, {"iris": [dashboard("iris-drift", "Iris drift")]})
    assert report.uids("dashboard", "hand-edited") == ["iris-drift"]
    assert "without mlwatch's hash tag" in report.text()
    assert fake.dashboards["iris-drift"].content["title"] == "Someone's"


def test_removed_models_are_deleted_only_with_prune(fake: FakeGrafana) -> None:
    run(fake, config())
    fake.dashboards["by-hand"] = copy.deepcopy(fake.dashboards["wine-drift"])
    fake.dashboards["by-hand"].content.update(uid="by-hand", title="Mine", tags=["ops"])

    before = len(fake.requests)
    kept = run(fake, config(wine=False))
    assert kept.uids("dashboard", "stale") == ["wine-drift"]
    assert writes(fake, before) == [] and "wine-drift" in fake.dashboards

    pruned = run(fake, config(wine=False), prune=True)
    assert pruned.uids("dashboard", "delete") == ["wine-drift"]
    assert writes(fake, before) == [("DELETE", "/api/dashboards/uid/wine-drift")]
    assert fake.dashboards.keys() == {"iris-drift", "fraud-kpi", "by-hand"}


def test_a_hand_edited_dashboard_is_pruned_only_with_force(fake: FakeGrafana) -> None:
    run(fake, config())
    fake.hand_edit("wine-drift")
    before = len(fake.requests)
    kept = run(fake, config(wine=False), prune=True)
    assert kept.uids("dashboard", "hand-edited") == ["wine-drift"] and not kept.ok
    assert "prune with force deletes it" in kept.text()
    assert writes(fake, before) == [] and "wine-drift" in fake.dashboards
    forced = run(fake, config(wine=False), prune=True, force=True)
    assert forced.uids("dashboard", "delete") == ["wine-drift"]
    assert "wine-drift" not in fake.dashboards


def test_a_dry_run_prints_diffs_and_writes_nothing(fake: FakeGrafana) -> None:
    empty = run(fake, config(), dry_run=True)
    assert fake.writes() == [] and fake.folders == {} and fake.dashboards == {}
    assert sorted(empty.uids("dashboard", "create")) == ["fraud-kpi", "iris-drift", "wine-drift"]
    assert "would create folder mlwatch-iris" in empty.text()

    run(fake, config())
    before = len(fake.requests)
    report = run(fake, config(threshold=0.5, wine=False), dry_run=True, prune=True)
    assert writes(fake, before) == []
    diff = report.diffs["dashboard/iris-drift"]
    assert diff.startswith("--- grafana/iris-drift\n+++ mlwatch/iris-drift\n")
    assert '-          "expr": "mlwatch_drift_score > 0.2"' in diff
    assert '+          "expr": "mlwatch_drift_score > 0.5"' in diff
    assert "would update dashboard iris-drift" in report.text()
    assert "would delete dashboard wine-drift" in report.text()
    assert report.uids("dashboard", "delete") == ["wine-drift"] and "wine-drift" in fake.dashboards


def test_the_token_is_never_logged_nor_in_errors(
    fake: FakeGrafana,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.DEBUG)
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    monkeypatch.delenv("MLWATCH_GRAFANA_TOKEN", raising=False)
    monkeypatch.setenv("MLWATCH_GRAFANA_TOKEN_FILE", str(token_file))
    sync(config(), url=fake.url)  # the token from the file
    fake.hand_edit("iris-drift")
    sync(config(threshold=0.9), url=fake.url)  # a warning
    assert any(r.levelno == logging.WARNING for r in caplog.records)

    monkeypatch.setenv("MLWATCH_GRAFANA_TOKEN", TOKEN + "-revoked")  # the variable wins
    with pytest.raises(GrafanaError) as refused:
        sync(config(), url=fake.url)
    assert "answered 401" in str(refused.value)
    assert "token (MLWATCH_GRAFANA_TOKEN) is refused" in str(refused.value)
    with pytest.raises(GrafanaError) as forbidden:
        sync(config(wine=False, threshold=0.1), url=fake.url, token="glsa_viewer_only", force=True)
    assert "dashboard 'iris-drift'" in str(forbidden.value) and "answered 403" in str(
        forbidden.value
    )

    errors: list[BaseException] = []
    for error in (refused.value, forbidden.value):
        while error is not None:
            errors.append(error)
            error = error.__cause__ or error.__context__  # type: ignore[assignment]
    for secret in (TOKEN, "glsa_viewer_only"):
        assert not [str(e) for e in errors if secret in str(e)]
        assert not [r for r in caplog.records if secret in r.getMessage()]
        assert secret not in caplog.text
    assert len(fake.requests) > 10 and caplog.records  # the check had something to look at


def test_errors_name_the_dashboard_and_grafanas_answer(fake: FakeGrafana) -> None:
    run(fake, {"iris": [dashboard("iris-drift", "Iris drift")]})
    clash = {"iris": [dashboard("iris-drift", "Iris drift"), dashboard("iris-2", "iris DRIFT")]}
    with pytest.raises(GrafanaError) as refused:
        run(fake, clash)
    assert str(refused.value) == (
        f"dashboard 'iris-2': Grafana at {fake.url}/ answered 412: "
        "A dashboard with the same name in the folder already exists (name-exists)"
    )
    with pytest.raises(GrafanaError, match="no answer from Grafana"):
        sync({}, url=f"http://127.0.0.1:{free_port()}", token=TOKEN, timeout=2)
    with pytest.raises(ConfigError, match="appears twice"):
        run(fake, {"a": [dashboard("x", "X")], "b": [dashboard("x", "Y")]})
    with pytest.raises(ConfigError, match="share the uid 'mlwatch-iris'"):
        run(fake, {"Iris": [dashboard("x", "X")], "iris": [dashboard("y", "Y")]})
    with pytest.raises(ConfigError, match="not 1-40"):
        run(fake, {"a": [dashboard("no spaces please", "X")]})
    with pytest.raises(ConfigError, match="MLWATCH_GRAFANA_TOKEN: the Grafana token is empty"):
        sync({}, url=fake.url, token="")
    with pytest.raises(ConfigError, match="url: not an http"):
        sync({}, url="grafana:3000", token=TOKEN)


def test_a_grafana_under_a_sub_path_is_reached() -> None:
    with FakeGrafana(token=TOKEN, path_prefix="/grafana") as fake:
        assert fake.url.endswith("/grafana")
        assert run(fake, config()).uids("dashboard", "create")
        assert {r.path[:13] for r in fake.requests} == {"/grafana/api/"}
        assert fake.dashboards.keys() == {"iris-drift", "fraud-kpi", "wine-drift"}


def alert_rule(uid: str, title: str, threshold: float = 0.2) -> dict[str, Any]:
    return {
        "uid": uid,
        "orgID": 1,
        "folderUID": "mlwatch-iris",
        "ruleGroup": "mlwatch-drift",
        "title": title,
        "condition": "B",
        "data": [
            {
                "refId": "A",
                "relativeTimeRange": {"from": 600, "to": 0},
                "datasourceUid": "prometheus",
                "model": {"expr": "max(mlwatch_drift_score)", "refId": "A"},
            },
            {
                "refId": "B",
                "datasourceUid": "__expr__",
                "model": {
                    "type": "threshold",
                    "expression": "A",
                    "refId": "B",
                    "conditions": [{"evaluator": {"type": "gt", "params": [threshold]}}],
                },
            },
        ],
        "noDataState": "OK",
        "execErrState": "Error",
        "for": "10m",
        "labels": {"model": "iris"},
        "annotations": {"summary": f"{title} above {threshold}"},
        "isPaused": False,
    }


def rules(threshold: float = 0.2, *, latency: bool = True) -> list[dict[str, Any]]:
    out = [alert_rule("iris-drift-rule", "Iris drift", threshold)]
    if latency:
        out.append(alert_rule("iris-latency-rule", "Iris latency"))
    return out


def test_alert_rules_are_created_updated_and_left_alone(fake: FakeGrafana) -> None:
    iris = {"iris": [dashboard("iris-drift", "Iris drift")]}
    created = run(fake, iris, alert_rules=rules())
    assert sorted(created.uids("rule", "create")) == ["iris-drift-rule", "iris-latency-rule"]
    stored = fake.rules["iris-drift-rule"]
    assert stored["provenance"] == "api"  # locked in Grafana's UI
    assert len(stored["annotations"]["mlwatch_hash"]) == 12
    assert stored["annotations"]["summary"] == "Iris drift above 0.2"

    before = len(fake.requests)
    same = run(fake, iris, alert_rules=rules())
    assert writes(fake, before) == []
    assert len(same.uids("rule", "unchanged")) == 2

    before = len(fake.requests)
    changed = run(fake, iris, alert_rules=rules(threshold=0.4))
    assert writes(fake, before) == [("PUT", "/api/v1/provisioning/alert-rules/iris-drift-rule")]
    assert changed.uids("rule", "update") == ["iris-drift-rule"]
    model = fake.rules["iris-drift-rule"]["data"][1]["model"]
    assert model["conditions"][0]["evaluator"]["params"] == [0.4]

    before = len(fake.requests)
    dry = run(fake, iris, alert_rules=rules(threshold=0.5), dry_run=True)
    assert writes(fake, before) == [] and "0.5" in dry.diffs["rule/iris-drift-rule"]


def test_removed_alert_rules_are_deleted_only_with_prune(fake: FakeGrafana) -> None:
    iris = {"iris": [dashboard("iris-drift", "Iris drift")]}
    run(fake, iris, alert_rules=rules())
    someone = {**alert_rule("by-hand", "Mine"), "annotations": {}, "id": 99}  # made in the UI
    fake.rules["by-hand"] = someone

    before = len(fake.requests)
    kept = run(fake, iris, alert_rules=rules(latency=False))
    assert kept.uids("rule", "stale") == ["iris-latency-rule"] and writes(fake, before) == []

    pruned = run(fake, iris, alert_rules=rules(latency=False), prune=True)
    assert pruned.uids("rule", "delete") == ["iris-latency-rule"]
    assert writes(fake, before) == [
        ("DELETE", "/api/v1/provisioning/alert-rules/iris-latency-rule")
    ]
    assert fake.rules.keys() == {"iris-drift-rule", "by-hand"}

    clash = run(fake, iris, alert_rules=[alert_rule("by-hand", "Mine, from code")])
    assert clash.uids("rule", "hand-edited") == ["by-hand"]
    assert fake.rules["by-hand"]["title"] == "Mine"
    forced = run(fake, iris, alert_rules=[alert_rule("by-hand", "Mine, from code")], force=True)
    assert forced.uids("rule", "update") == ["by-hand"]
    assert fake.rules["by-hand"]["title"] == "Mine, from code"


def test_a_rule_grafana_refuses_names_the_rule(fake: FakeGrafana) -> None:
    broken = {**alert_rule("bad-rule", "Bad"), "for": "ten minutes"}
    with pytest.raises(GrafanaError) as refused:
        run(fake, {"iris": []}, alert_rules=[broken])
    assert "alert rule 'bad-rule'" in str(refused.value) and "not a duration" in str(refused.value)
    before = len(fake.requests)
    with pytest.raises(ConfigError, match="has no uid"):
        run(fake, {"wine": [dashboard("wine", "Wine")]}, alert_rules=[{"title": "no uid"}])
    assert len(fake.requests) == before  # refused before any request


def test_a_retrain_trigger_is_annotated(fake: FakeGrafana) -> None:
    run(fake, {"iris": [dashboard("iris-drift", "Iris drift")]})
    first = annotate(
        "retrain iris: drift on petal_width",
        ["mlwatch", "retrain", "model:iris"],
        1_764_950_400_000,
        "iris-drift",
        url=fake.url,
        token=TOKEN,
    )
    everywhere = annotate("retrain wine", ["retrain"], 1_764_950_500_000, url=fake.url, token=TOKEN)
    assert first != everywhere
    assert fake.annotations[0] == {
        "id": first,
        "dashboardUID": "iris-drift",
        "panelId": None,
        "time": 1_764_950_400_000,
        "timeEnd": None,
        "tags": ["mlwatch", "retrain", "model:iris"],
        "text": "retrain iris: drift on petal_width",
    }
    assert "dashboardUID" not in fake.annotations[1]
    assert writes(fake)[-2:] == [("POST", "/api/annotations")] * 2
