"""Every generated dashboard type-checks against Grafana's published schema
(``@grafana/schema``, compiled with ``tsc --strict``), and a broken one does not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.grafana import schema
from tests.grafana.helpers import build
from tests.helpers import IN_CI

pytestmark = pytest.mark.skipif(
    schema.node_tools() is None and not IN_CI, reason="node and npm are not on PATH"
)


def dashboards() -> dict[str, str]:
    return {name: text for name, text in build().items() if name.endswith(".json")}


def broken(change: str) -> dict[str, str]:
    """The churn overview with one deliberate mistake."""
    board = json.loads(dashboards()["mlwatch-overview-churn.json"])
    panel = board["panels"][1]
    if change == "gridPos":
        panel["gridPos"] = "0,0,12,8"
    elif change == "unknown key":
        panel["fieldConfig"]["defaults"]["colour"] = "red"
    elif change == "enum":
        panel["fieldConfig"]["defaults"]["thresholds"] = {"mode": "absolut", "steps": []}
    elif change == "query":
        board["annotations"]["list"][0]["target"]["exp"] = "up"
    elif change == "missing":
        del board["templating"]["list"][0]["name"]
    return {"broken.json": json.dumps(board)}


def broken_events(change: str) -> dict[str, str]:
    """The churn events dashboard with one deliberate mistake in a query."""
    board = json.loads(dashboards()["mlwatch-events-churn.json"])
    target = board["panels"][1]["targets"][0]
    if change == "metric type":
        target["metrics"][0]["type"] = "counts"
    elif change == "bucket setting":
        target["bucketAggs"][0]["settings"]["order"] = "descending"
    elif change == "query key":
        target["lucene"] = target.pop("query")
    elif change == "prometheus query":
        overview = json.loads(dashboards()["mlwatch-overview-churn.json"])
        overview["panels"][1]["targets"][0]["exp"] = overview["panels"][1]["targets"][0].pop("expr")
        return {"broken.json": json.dumps(overview)}
    return {"broken.json": json.dumps(board)}


def test_every_dashboard_conforms(tmp_path: Path) -> None:
    assert schema.check(dashboards(), tmp_path) == ""


@pytest.mark.parametrize("change", ["gridPos", "unknown key", "enum", "query", "missing"])
def test_a_broken_dashboard_fails(tmp_path: Path, change: str) -> None:
    messages = schema.check(broken(change), tmp_path)
    assert "error TS" in messages, change


@pytest.mark.parametrize(
    "change", ["metric type", "bucket setting", "query key", "prometheus query"]
)
def test_a_broken_query_fails(tmp_path: Path, change: str) -> None:
    messages = schema.check(broken_events(change), tmp_path)
    assert "error TS" in messages, change
