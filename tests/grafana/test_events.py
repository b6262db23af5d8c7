"""The events dashboard: its queries name fields the index template maps, its link opens
the saved search Kibana is given, and "slow" starts at the model's latency threshold.
tests/integration/test_grafana_elasticsearch.py runs the queries on a real node."""

from __future__ import annotations

import json
import re
from typing import Any

from mlwatch.elastic.templates import PROPERTIES
from mlwatch.grafana.build import build_dashboards, es_queries
from mlwatch.grafana.common import Options
from mlwatch.grafana.event_panels import COLUMNS, KIBANA_SEARCH
from mlwatch.settings import load_config
from tests.grafana.helpers import EXAMPLE, build
from tests.helpers import REPO

FIELD = re.compile(r"([@\w][\w.@]*):")


def mapped(properties: dict[str, Any], prefix: str = "") -> set[str]:
    """Every field path of the index template's mappings."""
    out: set[str] = set()
    for name, spec in properties.items():
        out.add(prefix + name)
        out |= mapped(spec.get("properties", {}), f"{prefix}{name}.")
    return out


def test_every_field_an_events_query_names_is_mapped() -> None:
    queries = es_queries(build_dashboards(load_config(REPO / EXAMPLE, env={}), Options()))
    assert {q.panel for q in queries} == {
        "Failed predictions by error type",
        "Latest errors",
        "Latency percentiles from events",
        "Slow requests",
    }
    known = mapped(PROPERTIES)
    for q in queries:
        fields = set(FIELD.findall(q.query)) - {"_exists_"}
        fields |= {a["field"] for a in (*q.metrics, *q.bucket_aggs) if "field" in a}
        fields |= {q.time_field}
        labels = {f for f in fields if f.startswith("labels.")}  # keyword by a dynamic template
        assert fields - labels <= known, (q.panel, fields - labels - known)
    assert set(COLUMNS) - {"labels"} <= known


def test_the_kibana_link_opens_the_shipped_saved_search() -> None:
    text = (REPO / "exporters/kibana/mlwatch.ndjson").read_text(encoding="utf-8")
    saved = [json.loads(line) for line in text.splitlines()]
    assert {"type": "search", "id": KIBANA_SEARCH} in [
        {"type": o.get("type"), "id": o.get("id")} for o in saved
    ]
    config = load_config(REPO / EXAMPLE, env={})
    boards = build_dashboards(config, Options(kibana_url="https://kibana.example/"))
    board = boards["mlwatch-events-churn.json"]
    urls = [link.url for link in board.links or []]
    assert f"https://kibana.example/app/discover#/view/{KIBANA_SEARCH}" in urls


def test_slow_starts_at_the_latency_alert_else_one_second() -> None:
    files = build()
    for name, slow in (("mlwatch-events-churn.json", "500"), ("mlwatch-events-eta.json", "1000")):
        board = json.loads(files[name])
        [variable] = [v for v in board["templating"]["list"] if v["name"] == "slow_ms"]
        assert variable["query"] == slow and variable["current"]["value"] == slow, name


def test_every_events_panel_explains_itself_and_links_on() -> None:
    for name in ("mlwatch-events-churn.json", "mlwatch-events-eta.json"):
        board = json.loads(build()[name])
        panels = [p for p in board["panels"] if p["type"] != "row"]
        assert len(panels) == 4
        for panel in panels:
            assert len(panel["description"]) > 100, panel["title"]
            assert any("runbooks.md#" in link["url"] for link in panel["links"]), panel["title"]
            assert panel["datasource"] == {"type": "elasticsearch", "uid": "${datasource}"}
        variables = {v["name"]: v for v in board["templating"]["list"]}
        assert variables["datasource"]["query"] == "elasticsearch"
        assert variables["model"]["query"] == name.removeprefix("mlwatch-events-")[:-5]
