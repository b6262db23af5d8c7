"""The dashboards of a config: deterministic, changed only where the config changed, and
querying only metrics mlwatch exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from mlwatch.alerting import slo as slos
from mlwatch.grafana import drift
from mlwatch.grafana.build import build_dashboards, panel_queries
from mlwatch.grafana.common import Options, uid
from mlwatch.settings import load_config
from mlwatch.stats import registry
from tests.grafana.helpers import EXAMPLE, build, example
from tests.helpers import REPO

#: Every metric mlwatch exports, as Prometheus stores it (counters with _total,
#: histograms with _bucket, _sum and _count), read from the code that defines them.
_DEFINED = re.compile(r'"(mlwatch_[a-z_]+)"')


def exported_metrics() -> set[str]:
    names: set[str] = set()
    for path in (REPO / "mlwatch").rglob("*.py"):
        if "grafana" in path.parts:
            continue
        text = path.read_text(encoding="utf-8")
        for name in _DEFINED.findall(text):
            names |= {name, f"{name}_total", f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    return names


def test_the_same_config_gives_the_same_bytes() -> None:
    assert build() == build()


def test_a_new_feature_changes_only_its_models_drift_dashboard(tmp_path: Path) -> None:
    raw = example()
    raw["models"][1]["features"].append("weight_kg")
    before, after = build(), build(raw, tmp_path)
    changed = sorted(name for name in before if before[name] != after[name])
    assert changed == ["mlwatch-drift-eta.json"]
    assert "Drift: weight_kg" in after["mlwatch-drift-eta.json"]


def test_a_new_model_adds_its_dashboards_and_changes_the_fleet(tmp_path: Path) -> None:
    raw = example()
    raw["models"].append({"name": "fraud", "task": "classification"})
    before, after = build(), build(raw, tmp_path)
    assert sorted(set(after) - set(before)) == [
        "mlwatch-events-fraud.json",
        "mlwatch-overview-fraud.json",
    ]
    changed = sorted(name for name in before if before[name] != after[name])
    assert changed == ["mlwatch-fleet.json"]


def test_a_threshold_changes_only_its_models_dashboards(tmp_path: Path) -> None:
    raw = example()
    raw["models"][0]["alerts"]["kpis"]["accuracy"] = 0.9
    before, after = build(), build(raw, tmp_path)
    changed = sorted(name for name in before if before[name] != after[name])
    assert changed == ["mlwatch-performance-churn.json", "provisioning/alerting/mlwatch-rules.yml"]


def test_uids_are_stable_valid_and_distinct() -> None:
    assert uid("overview", "churn") == "mlwatch-overview-churn"
    odd = [uid("drift", name) for name in ("a:b", "a-b", "a/b", "x" * 80)]
    assert len(set(odd)) == 4
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{1,40}", u) for u in odd)
    assert uid("drift", "a:b") == uid("drift", "a:b")


def test_panels_are_numbered_and_every_dashboard_is_tagged() -> None:
    for name, text in build().items():
        if not name.endswith(".json"):
            continue
        board = json.loads(text)
        ids = [panel["id"] for panel in board["panels"]]
        assert ids == list(range(1, len(ids) + 1)), name
        assert board["uid"] + ".json" == name and "mlwatch" in board["tags"]
        variables = {v["name"] for v in board["templating"]["list"]}
        assert {"datasource", "environment"} <= variables, name
        assert all(p.get("description") for p in board["panels"] if p["type"] != "row"), name


def test_every_expression_queries_exported_metrics_only() -> None:
    config = load_config(REPO / EXAMPLE, env={})
    queries = panel_queries(build_dashboards(config, Options()))
    assert len({q.dashboard for q in queries}) == 8
    recorded = {f"{slos.RECORD}{window}" for window in slos.WINDOWS}  # by the alert rules
    known = exported_metrics() | recorded | {"up"}
    used: set[str] = set()
    for q in queries:
        names = set(re.findall(r"(?<![:\w])([a-z_][a-z0-9_:]*)(?=\{)", q.expr))
        assert names, (q.dashboard, q.panel, q.expr)
        assert names <= known, (q.dashboard, q.panel, names - known)
        used |= names
    assert len(used) > 20


def test_the_model_panels_filter_on_the_variables() -> None:
    config = load_config(REPO / EXAMPLE, env={})
    for q in panel_queries(build_dashboards(config, Options())):
        if q.dashboard.startswith(("mlwatch-overview", "mlwatch-drift", "mlwatch-perf")):
            assert 'model="$model"' in q.expr or 'model="' in q.expr, (q.dashboard, q.panel)


@pytest.mark.parametrize("method", sorted(drift.DISTANCE_THRESHOLDS))
def test_the_distance_thresholds_are_the_registrys(method: str) -> None:
    assert drift.DISTANCE_THRESHOLDS[method] == registry.get_method(method).default_threshold
    assert registry.get_method(method).kind == registry.DISTANCE
    assert drift.AUTO_DISTANCE_THRESHOLD == registry.AUTO_DISTANCE_THRESHOLD


def test_elasticsearch_is_provisioned_without_credentials(tmp_path: Path) -> None:
    raw = example()
    raw["elasticsearch_url"] = "https://writer:s3cret@es.example:9200,https://es2.example:9200"
    files = build(raw, tmp_path)
    sources = yaml.safe_load(files["provisioning/datasources/mlwatch.yml"])["datasources"]
    assert [s["type"] for s in sources] == ["prometheus", "elasticsearch"]
    assert sources[1]["url"] == "https://es.example:9200"
    assert "s3cret" not in files["provisioning/datasources/mlwatch.yml"]
    assert sources[1]["jsonData"]["index"] == "logs-mlwatch.predictions-default"


def test_without_elasticsearch_no_datasource_and_no_events_dashboards(tmp_path: Path) -> None:
    raw = example()
    del raw["elasticsearch_url"]
    files = build(raw, tmp_path)
    assert "elasticsearch" not in files["provisioning/datasources/mlwatch.yml"]
    assert not [name for name in files if name.startswith("mlwatch-events-")]
    assert sorted(name for name in build() if name.startswith("mlwatch-events-")) == [
        "mlwatch-events-churn.json",
        "mlwatch-events-eta.json",
    ]


def test_the_provider_points_at_the_dashboards_path() -> None:
    provider = yaml.safe_load(build()["provisioning/dashboards/mlwatch.yml"])["providers"][0]
    assert provider["type"] == "file" and provider["folder"] == "mlwatch"
    assert provider["options"]["path"] == Options().dashboards_path


def test_panels_fit_the_grid_without_overlapping() -> None:
    for name, text in build().items():
        if not name.endswith(".json"):
            continue
        cells: set[tuple[int, int]] = set()
        for panel in json.loads(text)["panels"]:
            pos = panel["gridPos"]
            assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, (name, panel["title"])
            mine = {
                (x, y)
                for x in range(pos["x"], pos["x"] + pos["w"])
                for y in range(pos["y"], pos["y"] + pos["h"])
            }
            assert not cells & mine, (name, panel["title"])
            cells |= mine
