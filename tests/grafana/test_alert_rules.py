"""Grafana-managed alert rules: the Prometheus alerting rules again (one source, two
renderings), each firing on what its Prometheus rule fires on, written to the alerting
provisioning file and through the provisioning API."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlwatch.alerting.build import build_groups
from mlwatch.grafana.alert_rules import (
    ALERT_LABEL,
    CONTACT_POINT,
    PEOPLE,
    alert_options,
    all_rules,
    rule_groups,
    rule_uid,
)
from mlwatch.grafana.common import PROMETHEUS_UID, Options
from mlwatch.grafana.render import ALERTING_FILE
from mlwatch.settings import load_config
from tests.grafana.helpers import DASHBOARDS, EXAMPLE, build, example
from tests.helpers import REPO


def example_config() -> Any:
    return load_config(REPO / EXAMPLE, env={})


def config_of(raw: dict[str, Any], tmp_path: Path) -> Any:
    path = tmp_path / "mlwatch.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return load_config(path, env={})


def test_every_alerting_rule_and_only_those_becomes_a_grafana_rule() -> None:
    config = example_config()
    prometheus = [rule for g in build_groups(config, alert_options(Options())) for rule in g.rules]
    alerting = [r for r in prometheus if r.alert]
    assert len(alerting) < len(prometheus)  # the recording rules stay in Prometheus
    rules = all_rules(config, Options())
    assert len(rules) == len(alerting)
    for source, rule in zip(alerting, rules, strict=True):
        query = rule["data"][0]
        assert query["datasourceUid"] == PROMETHEUS_UID
        assert query["model"]["expr"] == source.expr and query["model"]["instant"] is True
        assert rule["labels"] == {**source.labels, ALERT_LABEL: source.alert}
        assert rule["title"].startswith(str(source.alert))
        assert set(rule["annotations"]) == set(source.annotations)
        assert "$value " not in str(rule["annotations"]) + " "  # Grafana's is $values.B
        assert rule["condition"] == "C" and rule["noDataState"] == "OK"


def test_uids_are_stable_short_and_titles_unique_in_a_folder() -> None:
    groups = rule_groups(example_config(), Options())
    rules = [rule for g in groups for rule in g.rules]
    uids = [rule["uid"] for rule in rules]
    assert len(set(uids)) == len(uids)
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{1,40}", uid) for uid in uids)
    titles = Counter((rule["folderUID"], rule["title"]) for rule in rules)
    assert max(titles.values()) == 1
    burns = [r["title"] for r in rules if r["labels"][ALERT_LABEL] == "MlwatchQualityBudgetBurn"]
    assert "MlwatchQualityBudgetBurn (page)" in burns  # the severity tells the two apart
    kpis = {r["title"] for r in rules if r["labels"][ALERT_LABEL] == "MlwatchKPIBelowThreshold"}
    assert "MlwatchKPIBelowThreshold (roc_auc)" in kpis  # and the KPI
    assert {g.folder_uid for g in groups} == {"mlwatch", "mlwatch-churn", "mlwatch-eta"}
    assert all_rules(example_config(), Options()) == rules  # the same config, the same rules


def test_a_uid_survives_rules_added_before_it_and_stays_short(tmp_path: Path) -> None:
    assert rule_uid("mlwatch-model-churn", "MlwatchNoTraffic") == rule_uid(
        "mlwatch-model-churn", "MlwatchNoTraffic"
    )
    assert rule_uid("g", "A (1)") != rule_uid("g", "A (2)")
    assert len(rule_uid("mlwatch-model-" + "x" * 60, "T")) == 40
    assert rule_uid("mlwatch-model-a:b", "T") != rule_uid("mlwatch-model-a-b", "T")
    raw = example()
    raw["models"][0]["alerts"]["kpis"] = {"f1_macro": 0.5, **raw["models"][0]["alerts"]["kpis"]}
    before = {r["title"]: r["uid"] for r in all_rules(example_config(), Options())}
    after = {r["title"]: r["uid"] for r in all_rules(config_of(raw, tmp_path), Options())}
    assert all(after[title] == uid for title, uid in before.items() if title in after)


def test_the_condition_fires_on_every_series_the_query_returns() -> None:
    """``== 0`` (no traffic) returns series of value 0: a threshold ``> 0`` would never
    fire on them, the condition ``$B == $B`` does; NaN counts (as in Prometheus)."""
    rule = next(
        r for r in all_rules(example_config(), Options()) if r["title"] == "MlwatchNoTraffic"
    )
    assert "== 0" in rule["data"][0]["model"]["expr"]
    reduce, condition = rule["data"][1]["model"], rule["data"][2]["model"]
    assert reduce["settings"] == {"mode": "replaceNN", "replaceWithValue": 1}
    assert (condition["type"], condition["expression"]) == ("math", "$B == $B")


def test_the_provisioning_file_has_groups_the_contact_point_and_the_policy() -> None:
    data = yaml.safe_load((DASHBOARDS / ALERTING_FILE).read_text(encoding="utf-8"))
    assert data["apiVersion"] == 1
    groups = {g["name"]: g for g in data["groups"]}
    assert groups["mlwatch-model-churn"]["folder"] == "churn"
    assert groups["mlwatch"]["interval"] == "1m"
    rules = [r for g in data["groups"] for r in g["rules"]]
    assert len(rules) == len(all_rules(example_config(), Options()))
    assert not any({"folderUID", "ruleGroup", "orgID"} & set(r) for r in rules)
    receiver = data["contactPoints"][0]["receivers"][0]
    assert receiver["settings"]["url"].endswith("/v1/alerts/alertmanager")
    assert receiver["settings"]["authorization_credentials"] == "${MLWATCH_TOKEN}"
    policy = data["policies"][0]
    assert policy["receiver"] == PEOPLE
    assert policy["routes"][0]["receiver"] == CONTACT_POINT
    assert policy["routes"][0]["object_matchers"] == [["retrain", "=", "true"]]


@pytest.mark.parametrize("change", ["threshold", "remove"])
def test_a_config_change_changes_the_rules(change: str, tmp_path: Path) -> None:
    raw = example()
    if change == "threshold":
        raw["models"][0]["alerts"]["error_ratio"] = 0.05
    else:
        del raw["models"][1]["alerts"]
    before = build(None)[ALERTING_FILE]
    after = build(raw, tmp_path)[ALERTING_FILE]
    assert before != after
    if change == "remove":
        assert "mlwatch-model-eta" in before and "mlwatch-model-eta" not in after
