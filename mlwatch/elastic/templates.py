"""Index design: an ILM policy, component templates and one index template per data stream.

The sidecar installs them before its first bulk request (idempotent PUTs;
``elasticsearch_install_templates``) and the same JSON is shipped under
``exporters/elasticsearch/`` for teams that manage templates themselves
(``python -m mlwatch.elastic.templates exporters/elasticsearch`` writes it; a test keeps
the files equal to the code).

- ``mlwatch@settings``: shards, replicas (``auto_expand_replicas: 0-1`` unless set), the
  ILM policy ``mlwatch``, a field limit that fits 2,000 features.
- ``mlwatch@mappings``: the common ECS fields and typed dynamic templates — a numeric
  feature maps to ``double`` (so ``1`` then ``1.5`` never conflicts, and aggregations
  work), a string feature to ``keyword``, labels to ``keyword``; raw predictions and
  labels are kept in ``_source`` but not indexed, since they may be any JSON.
- ``<dataset>@custom`` components are referenced but optional
  (``ignore_missing_component_templates``): the documented place for local overrides
  that a reinstall does not overwrite.
- Index templates ``logs-mlwatch.<dataset>`` match ``logs-mlwatch.<dataset>-*`` at
  priority 200 (above Elastic's built-in ``logs`` template at 100) with ``data_stream: {}``.

A cluster without ILM (a minimal distribution) gets the templates without the
lifecycle setting and a warning; retention is then up to the operator.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

from mlwatch.elastic.documents import DATASETS
from mlwatch.settings import Config

POLICY = "mlwatch"
PRIORITY = 200
FIELD_LIMIT = 5000  # wire format allows 2,000 features; plus ECS and labels
KEYWORD = {"type": "keyword", "ignore_above": 1024}
RAW = {"type": "object", "enabled": False}  # any JSON, kept in _source, not indexed


def ilm_policy(config: Config) -> dict[str, Any]:
    """Roll over by primary shard size or age; delete ``elasticsearch_retention`` later."""
    return {
        "policy": {
            "_meta": {"managed_by": "mlwatch"},
            "phases": {
                "hot": {
                    "actions": {
                        "rollover": {
                            "max_primary_shard_size": config.elasticsearch_rollover_size,
                            "max_age": config.elasticsearch_rollover_age,
                        }
                    }
                },
                "delete": {"min_age": config.elasticsearch_retention, "actions": {"delete": {}}},
            },
        }
    }


def settings_component(config: Config, *, ilm: bool = True) -> dict[str, Any]:
    index: dict[str, Any] = {
        "number_of_shards": config.elasticsearch_shards,
        "mapping": {"total_fields": {"limit": FIELD_LIMIT}},
    }
    if config.elasticsearch_replicas is None:
        index["auto_expand_replicas"] = "0-1"
    else:
        index["number_of_replicas"] = config.elasticsearch_replicas
    if ilm:
        index["lifecycle"] = {"name": POLICY}
    return {"template": {"settings": {"index": index}}, "_meta": {"managed_by": "mlwatch"}}


def _typed(path: str, json_type: str, mapping: dict[str, Any]) -> dict[str, Any]:
    return {"path_match": path, "match_mapping_type": json_type, "mapping": mapping}


#: Features by the JSON type they arrive with: numbers as double (so 1 then 1.5 never
#: conflicts), strings as keyword; labels keyword.
DYNAMIC_TEMPLATES = [
    {"features_long": _typed("mlwatch.features.*", "long", {"type": "double"})},
    {"features_double": _typed("mlwatch.features.*", "double", {"type": "double"})},
    {"features_string": _typed("mlwatch.features.*", "string", KEYWORD)},
    {"labels": _typed("labels.*", "*", {"type": "keyword"})},
    {"strings": {"match_mapping_type": "string", "mapping": KEYWORD}},
]

#: The common fields: ECS where ECS has the concept, mlwatch's own under ``mlwatch``.
PROPERTIES: dict[str, Any] = {
    "@timestamp": {"type": "date"},
    "event": {
        "properties": {
            "id": KEYWORD,
            "kind": KEYWORD,
            "dataset": KEYWORD,
            "outcome": KEYWORD,
            "duration": {"type": "long"},
        }
    },
    "service": {"properties": {"name": KEYWORD, "version": KEYWORD, "environment": KEYWORD}},
    "http": {"properties": {"request": {"properties": {"id": KEYWORD}}}},
    "trace": {"properties": {"id": KEYWORD}},
    "error": {"properties": {"type": KEYWORD, "message": {"type": "text"}}},
    "host": {"properties": {"name": KEYWORD}},
    "kubernetes": {
        "properties": {
            "pod": {"properties": {"name": KEYWORD}},
            "namespace": KEYWORD,
            "node": {"properties": {"name": KEYWORD}},
        }
    },
    "labels": {"type": "object"},
    "mlwatch": {
        "properties": {
            "model": KEYWORD,
            "version": KEYWORD,
            "code_version": KEYWORD,
            "run_id": KEYWORD,
            "status": KEYWORD,
            "task": KEYWORD,
            "latency_ms": {"type": "double"},
            "batch_size": {"type": "integer"},
            "features": {"type": "object"},
            "prediction": RAW,
            "prediction_value": {"type": "double"},
            "prediction_class": KEYWORD,
            "label": RAW,
            "label_value": {"type": "double"},
            "label_class": KEYWORD,
            "params": {"type": "flattened"},
            "reason": KEYWORD,
            "dropped": {"type": "long"},
            "report_id": KEYWORD,
            "tag": KEYWORD,
            "dead_letter": {
                "properties": {
                    "data_stream": KEYWORD,
                    "status": {"type": "integer"},
                    "truncated_from": {"type": "long"},
                    "document": {"type": "text", "index": False},
                }
            },
        }
    },
}


def mappings_component() -> dict[str, Any]:
    """``mlwatch@mappings`` (a copy: callers may change it). ``date_detection`` is off: a
    feature first seen as "2024-05-01" must stay a keyword, or every later non-date value
    of it would be refused."""
    return copy.deepcopy(
        {
            "template": {
                "mappings": {
                    "date_detection": False,
                    "dynamic_templates": DYNAMIC_TEMPLATES,
                    "properties": PROPERTIES,
                }
            },
            "_meta": {"managed_by": "mlwatch"},
        }
    )


def index_template(dataset: str) -> dict[str, Any]:
    custom = f"{dataset}@custom"
    # allow_auto_create: the stream is created by the first write even where the cluster
    # sets action.auto_create_index: false
    return {
        "index_patterns": [f"logs-{dataset}-*"],
        "data_stream": {},
        "priority": PRIORITY,
        "allow_auto_create": True,
        "composed_of": ["mlwatch@settings", "mlwatch@mappings", custom],
        "ignore_missing_component_templates": [custom],
        "_meta": {"managed_by": "mlwatch", "description": f"mlwatch {dataset} data stream"},
    }


def all_objects(config: Config, *, ilm: bool = True) -> dict[str, dict[str, Any]]:
    """Every object by its API path, in install order (policy, components, templates)."""
    objects: dict[str, dict[str, Any]] = {}
    if ilm:
        objects[f"_ilm/policy/{POLICY}"] = ilm_policy(config)
    objects["_component_template/mlwatch@settings"] = settings_component(config, ilm=ilm)
    objects["_component_template/mlwatch@mappings"] = mappings_component()
    for dataset in DATASETS:
        objects[f"_index_template/logs-{dataset}"] = index_template(dataset)
    return objects


def write_exporters(directory: str | Path, config: Config | None = None) -> list[Path]:
    """Write the objects as JSON files named after their API path, plus nothing else."""
    config = config or Config()
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path, body in all_objects(config).items():
        kind, name = path.rsplit("/", 1)
        target = out / f"{kind.strip('_').replace('/', '-')}.{name}.json"
        target.write_text(json.dumps(body, indent=2, sort_keys=False) + "\n")
        written.append(target)
    return written


if __name__ == "__main__":  # python -m mlwatch.elastic.templates exporters/elasticsearch
    for written_path in write_exporters(sys.argv[1] if len(sys.argv) > 1 else "."):
        print(written_path)
