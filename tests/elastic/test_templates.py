"""The shipped Elasticsearch JSON equals what the sidecar installs; layout checks."""

from __future__ import annotations

import json
from pathlib import Path

from mlwatch.elastic import templates
from mlwatch.elastic.documents import DATASETS, Origin, event_document
from mlwatch.settings import load_config
from mlwatch.store import event_row
from mlwatch.wire import validate_event
from tests.helpers import REPO

ROOT = REPO
SHIPPED = ROOT / "exporters" / "elasticsearch"


def test_exporters_directory_equals_the_code(tmp_path: Path) -> None:
    written = templates.write_exporters(tmp_path)
    assert sorted(p.name for p in written) == sorted(p.name for p in SHIPPED.glob("*.json")), (
        "run: python -m mlwatch.elastic.templates exporters/elasticsearch"
    )
    for path in written:
        assert json.loads(path.read_text()) == json.loads((SHIPPED / path.name).read_text()), (
            f"{path.name} is stale: python -m mlwatch.elastic.templates exporters/elasticsearch"
        )


def test_settings_follow_the_config() -> None:
    cfg = load_config(
        env={},
        elasticsearch_replicas=2,
        elasticsearch_shards=3,
        elasticsearch_retention="14d",
        elasticsearch_rollover_size="10gb",
    )
    index = templates.settings_component(cfg)["template"]["settings"]["index"]
    assert index["number_of_shards"] == 3 and index["number_of_replicas"] == 2
    assert "auto_expand_replicas" not in index and index["lifecycle"] == {"name": "mlwatch"}
    assert (
        "lifecycle"
        not in templates.settings_component(cfg, ilm=False)["template"]["settings"]["index"]
    )
    phases = templates.ilm_policy(cfg)["policy"]["phases"]
    assert phases["delete"]["min_age"] == "14d"
    assert phases["hot"]["actions"]["rollover"]["max_primary_shard_size"] == "10gb"


def test_one_index_template_per_dataset_above_the_builtin_logs_template() -> None:
    objects = templates.all_objects(load_config(env={}))
    for dataset in DATASETS:
        tpl = objects[f"_index_template/logs-{dataset}"]
        assert tpl["index_patterns"] == [f"logs-{dataset}-*"]
        assert tpl["priority"] > 100 and tpl["data_stream"] == {}
    assert next(iter(objects)) == "_ilm/policy/mlwatch"  # the policy exists before templates use it


def test_every_document_field_has_a_mapping_or_a_dynamic_rule() -> None:
    """A document field left to Elasticsearch's defaults would map strings as text."""
    mappings = templates.mappings_component()["template"]["mappings"]
    ev = validate_event(
        {
            "model": "m",
            "version": "1",
            "latency_ms": 1.0,
            "status": "error",
            "error": "ValueError",
            "request_id": "r",
            "prediction": [0.1, 0.9],
            "features": {"x": 1, "c": "a"},
            "labels": {"trace_id": "t"},
            "code_version": "c",
            "run_id": "r",
            "batch_size": 2,
        }
    )
    doc = event_document(event_row(ev), Origin(host="h", pod="p", namespace="n", node="k"))

    def leaves(obj: dict, prefix: str = "") -> list[str]:
        out = []
        for key, value in obj.items():
            path = f"{prefix}{key}"
            if isinstance(value, dict) and path not in ("mlwatch.prediction",):
                out += leaves(value, path + ".")
            else:
                out.append(path)
        return out

    def mapped(path: str) -> bool:
        node: dict = mappings
        for part in path.split("."):
            props = node.get("properties", {})
            if part not in props:
                return any(path.startswith(p) for p in ("mlwatch.features.", "labels."))
            node = props[part]
        return "type" in node

    missing = [p for p in leaves(doc) if not mapped(p)]
    assert missing == []
