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
from mlwatch.alerting.routing import alertmanager_config
from mlwatch.errors import ConfigError
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
from mlwatch.grafana.render import NOTIFICATIONS_FILE, RULES_FILE
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
    assert "MlwatchKPIBelowThreshold (roc_auc, ticket)" in kpis  # and the KPI
    assert {g.folder_uid for g in groups} == {"mlwatch", "mlwatch-churn", "mlwatch-eta"}
    assert all_rules(example_config(), Options()) == rules  # the same config, the same rules


@pytest.mark.parametrize(
    "change",
    [
        lambda raw: raw["models"][1]["alerts"]["kpis"].update(rmse=6.0),  # a second error KPI
        lambda raw: raw["models"][0]["alerts"]["kpis"].pop("accuracy"),
        lambda raw: raw["models"][0]["alerts"].update(error_ratio=0.05),  # a threshold
    ],
)
def test_a_rules_uid_and_title_do_not_depend_on_the_other_rules(
    change: Any, tmp_path: Path
) -> None:
    before = {r["uid"]: r["title"] for r in all_rules(example_config(), Options())}
    raw = example()
    change(raw)
    after = {r["uid"]: r["title"] for r in all_rules(config_of(raw, tmp_path), Options())}
    kept = set(before) & set(after)
    assert len(kept) >= len(before) - 1  # at most the one rule removed
    assert all(before[uid] == after[uid] for uid in kept)


def test_a_uid_is_short_and_apart_for_apart_groups() -> None:
    assert len(rule_uid("mlwatch-model-" + "x" * 60, "T")) == 40
    assert rule_uid("mlwatch-model-a:b", "T") != rule_uid("mlwatch-model-a-b", "T")
    assert re.fullmatch(r"[A-Za-z0-9_-]+", rule_uid("mlwatch-model-a:b", "T"))


def test_two_models_in_one_folder_are_a_configuration_error(tmp_path: Path) -> None:
    raw = example()
    raw["models"].append({**raw["models"][1], "name": "ETA"})  # folder mlwatch-eta twice
    with pytest.raises(ConfigError, match="same Grafana folder"):
        all_rules(config_of(raw, tmp_path), Options())


def test_the_condition_fires_on_every_series_the_query_returns() -> None:
    """``== 0`` (no traffic) returns series of value 0: a threshold ``> 0`` would never
    fire on them; the condition is true for any number, NaN and infinities included."""
    rule = next(
        r
        for r in all_rules(example_config(), Options())
        if r["title"].startswith("MlwatchNoTraffic")
    )
    assert "== 0" in rule["data"][0]["model"]["expr"]
    reduce, condition = rule["data"][1]["model"], rule["data"][2]["model"]
    assert (reduce["type"], reduce["reducer"], reduce.get("settings")) == ("reduce", "last", None)
    assert (condition["type"], condition["expression"]) == (
        "math",
        "is_number($B) || is_nan($B) || is_inf($B)",
    )
    assert rule["execErrState"] == "KeepLast"  # an outage keeps the state, as in Prometheus


def test_the_rules_file_has_every_group_in_its_models_folder() -> None:
    data = yaml.safe_load((DASHBOARDS / RULES_FILE).read_text(encoding="utf-8"))
    assert data["apiVersion"] == 1 and set(data) == {"apiVersion", "groups"}
    groups = {g["name"]: g for g in data["groups"]}
    assert groups["mlwatch-model-churn"]["folder"] == "churn"
    assert groups["mlwatch"]["interval"] == "1m"
    rules = [r for g in data["groups"] for r in g["rules"]]
    assert len(rules) == len(all_rules(example_config(), Options()))
    assert not any({"folderUID", "ruleGroup", "orgID"} & set(r) for r in rules)


def test_the_notifications_are_the_alertmanager_routing_again() -> None:
    data = yaml.safe_load((DASHBOARDS / NOTIFICATIONS_FILE).read_text(encoding="utf-8"))
    assert set(data) == {"apiVersion", "contactPoints", "policies"}
    receiver = data["contactPoints"][0]["receivers"][0]
    assert receiver["settings"]["url"].endswith("/v1/alerts/alertmanager")
    assert receiver["settings"]["authorization_credentials"] == "${MLWATCH_TOKEN}"
    policy = data["policies"][0]
    route = alertmanager_config(example_config(), alert_options(Options()))["route"]
    assert policy["receiver"] == PEOPLE and policy["group_by"] == route["group_by"]
    retrain = policy["routes"][0]
    assert retrain["receiver"] == CONTACT_POINT
    assert retrain["object_matchers"] == [["retrain", "=", "true"]]
    for key in ("group_wait", "group_interval", "repeat_interval", "continue"):
        assert retrain[key] == route["routes"][0][key]


@pytest.mark.parametrize("change", ["threshold", "remove"])
def test_a_config_change_changes_the_rules(change: str, tmp_path: Path) -> None:
    raw = example()
    if change == "threshold":
        raw["models"][0]["alerts"]["error_ratio"] = 0.05
    else:
        del raw["models"][1]["alerts"]
    before = build(None)[RULES_FILE]
    after = build(raw, tmp_path)[RULES_FILE]
    assert before != after
    if change == "remove":
        assert "mlwatch-model-eta" in before and "mlwatch-model-eta" not in after
