"""exporters/kibana/mlwatch.ndjson: Kibana 8 saved objects, checked without a Kibana.

``POST /api/saved_objects/_import`` rejects a file whose references dangle and Kibana
shows an error panel for a visualization on a field that does not exist; neither can
run here, so the file is checked structurally, as strictly as the import and the
renderers would: every line an object, ids unique, every reference (also those named
inside the JSON strings ``panelsJSON`` and ``searchSourceJSON`` and the Lens layers)
resolving to an object of the right type in the file, every field a visualization or
the saved search uses present in the document layout of ``mlwatch.elastic.documents``
(derived from ``event_document`` / ``feedback_document``, not copied), numeric
aggregations only on numeric fields, and dashboard panels that do not overlap.

The checks are functions returning problems, so each one is also shown to fail on a
broken copy of the file.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from mlwatch.elastic.documents import (
    FEEDBACK,
    PREDICTIONS,
    Origin,
    event_document,
    feedback_document,
    stream_name,
)
from mlwatch.store import event_row, feedback_row
from mlwatch.wire import validate_event, validate_feedback
from tests.helpers import REPO

NDJSON = REPO / "exporters" / "kibana" / "mlwatch.ndjson"

TYPES = {"index-pattern", "search", "lens", "visualization", "dashboard"}
SEMVER = re.compile(r"^\d+\.\d+\.\d+$")
GRID_COLUMNS = 48  # Kibana's dashboard grid is 48 columns wide
NUMERIC_OPERATIONS = {
    "percentile",
    "median",
    "average",
    "sum",
    "min",
    "max",
    "standard_deviation",
    "percentile_rank",
}
# Documented as "kept as sent, not indexed": never aggregatable, never a sort key.
NOT_INDEXED = {"mlwatch.prediction", "mlwatch.label"}
FEATURE_PREFIX = "mlwatch.features."  # names vary per model: any mlwatch.features.<name>
KQL_FIELD = re.compile(r"(?<![\w.@])([A-Za-z_@][\w.@]*)\s*:")

Objects = list[dict[str, Any]]


# --- the document layout the saved objects must agree with -------------------------------


def _leaves(doc: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in doc.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_leaves(value, path + "."))
        else:
            out[path] = value
    return out


def _layout() -> dict[str, dict[str, str]]:
    """Field -> kind ("number", "string", "date", "other") per data-view title, from
    documents built by mlwatch itself with every optional field set."""
    origin = Origin(host="h", pod="p", namespace="ns", node="n")
    event = validate_event(
        {
            "event_id": "0190c1de-0000-7000-8000-000000000001",
            "ts": "2026-01-02T03:04:05.000006Z",
            "model": "iris",
            "version": "3",
            "request_id": "r-1",
            "status": "error",
            "error": "ValueError",
            "latency_ms": 2.5,
            "features": {"x": 1.5, "c": "a"},
            "prediction": 1,
            "code_version": "abc",
            "run_id": "run",
            "batch_size": 4,
            "labels": {"trace_id": "t-1", "region": "eu"},
        }
    )
    feedback = validate_feedback(
        {"model": "iris", "request_id": "r-1", "label": 1, "ts": "2026-01-02T03:04:05Z"}
    )
    docs = {
        stream_name(PREDICTIONS, "*"): event_document(event_row(event), origin),
        stream_name(FEEDBACK, "*"): feedback_document(feedback_row(feedback), origin),
    }
    layout: dict[str, dict[str, str]] = {}
    for title, doc in docs.items():
        kinds = {}
        for path, value in _leaves(doc).items():
            if path == "@timestamp":
                kinds[path] = "date"
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                kinds[path] = "number"
            elif isinstance(value, str):
                kinds[path] = "string"
            else:
                kinds[path] = "other"
        layout[title] = kinds
    return layout


LAYOUT = _layout()


def field_kind(title: str, field: str) -> str | None:
    """The kind of ``field`` in the documents behind the data view ``title``, or None."""
    kinds = LAYOUT.get(title, {})
    if field in kinds and not field.startswith(FEATURE_PREFIX):
        return kinds[field]
    if (
        title == stream_name(PREDICTIONS, "*")
        and field.startswith(FEATURE_PREFIX)
        and len(field) > len(FEATURE_PREFIX)
    ):
        return "feature"  # double or keyword, by the index template
    return None


# --- loading --------------------------------------------------------------------------------


def load(path: Path = NDJSON) -> Objects:
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines, f"{path} is empty"
    objects = []
    for n, line in enumerate(lines, 1):
        assert line.strip(), f"line {n}: blank line (NDJSON has one object per line)"
        obj = json.loads(line)
        assert isinstance(obj, dict), f"line {n}: not a JSON object"
        objects.append(obj)
    if "exportedCount" in objects[-1]:  # an export summary line is allowed, if it is right
        summary = objects.pop()
        assert summary == {
            "exportedCount": len(objects),
            "missingRefCount": 0,
            "missingReferences": [],
        }, summary
    return objects


def _json_attr(obj: dict[str, Any], *path: str) -> Any:
    value: Any = obj["attributes"]
    for key in path:
        value = value[key]
    assert isinstance(value, str), f"{obj['id']}: {'.'.join(path)} must be a JSON string"
    return json.loads(value)


# --- checks (each returns a list of problems) --------------------------------------------------


def check_objects(objects: Objects) -> list[str]:
    problems = []
    seen: set[tuple[str, str]] = set()
    ids: set[str] = set()
    for obj in objects:
        where = f"{obj.get('type')}/{obj.get('id')}"
        for key in ("id", "type", "attributes", "references"):
            if key not in obj:
                problems.append(f"{where}: missing {key!r}")
        if obj.get("type") not in TYPES:
            problems.append(f"{where}: unknown type")
        for key in ("coreMigrationVersion", "typeMigrationVersion"):
            if not SEMVER.match(str(obj.get(key, ""))):
                problems.append(f"{where}: {key} must be a version like 8.8.0")
        if (obj.get("type"), obj.get("id")) in seen or obj.get("id") in ids:
            problems.append(f"{where}: duplicate id")
        seen.add((obj.get("type"), obj.get("id")))
        ids.add(obj.get("id"))
        if not obj.get("attributes", {}).get("title"):
            problems.append(f"{where}: no title")
        names = [ref.get("name") for ref in obj.get("references", [])]
        if len(names) != len(set(names)):
            problems.append(f"{where}: duplicate reference names")
    return problems


def resolve(objects: Objects, obj: dict[str, Any], name: str, want: str) -> dict[str, Any] | None:
    """The object that reference ``name`` of ``obj`` points to, if it exists with type ``want``."""
    for ref in obj["references"]:
        if ref["name"] == name:
            if ref["type"] != want:
                return None
            return next((o for o in objects if o["id"] == ref["id"] and o["type"] == want), None)
    return None


def check_references(objects: Objects) -> list[str]:
    problems = []
    by_key = {(o["type"], o["id"]) for o in objects}
    for obj in objects:
        for ref in obj["references"]:
            if (ref["type"], ref["id"]) not in by_key:
                problems.append(
                    f"{obj['id']}: reference {ref['name']!r} -> "
                    f"{ref['type']}/{ref['id']} is not in the file"
                )
    return problems


def check_data_views(objects: Objects) -> list[str]:
    problems = []
    titles = {stream_name(PREDICTIONS, "*"), stream_name(FEEDBACK, "*")}
    views = [o for o in objects if o["type"] == "index-pattern"]
    if {v["attributes"]["title"] for v in views} != titles:
        problems.append(f"data view titles must be exactly {sorted(titles)}")
    for view in views:
        attrs = view["attributes"]
        if attrs.get("timeFieldName") != "@timestamp":
            problems.append(f"{view['id']}: timeFieldName must be @timestamp")
        for field in json.loads(attrs.get("fieldFormatMap", "{}")):
            if field_kind(attrs["title"], field) is None:
                problems.append(f"{view['id']}: fieldFormatMap names unknown field {field!r}")
    if not any(
        v["id"] == "mlwatch-predictions"
        and v["attributes"]["title"] == stream_name(PREDICTIONS, "*")
        for v in views
    ):
        problems.append("the predictions data view must have id mlwatch-predictions")
    return problems


def _kql_fields(query: str) -> list[str]:
    return KQL_FIELD.findall(query)


def _check_field(
    problems: list[str],
    where: str,
    title: str,
    field: str,
    *,
    numeric: bool = False,
    sortable: bool = False,
) -> None:
    kind = field_kind(title, field)
    if kind is None:
        problems.append(f"{where}: {field!r} is not a field of the documents in {title}")
    elif numeric and kind not in ("number", "feature"):
        problems.append(f"{where}: {field!r} is {kind}, a numeric aggregation needs a number")
    elif (sortable or numeric) and (field in NOT_INDEXED or kind == "other"):
        problems.append(f"{where}: {field!r} is not indexed")


def check_searches(objects: Objects) -> list[str]:
    problems = []
    for obj in (o for o in objects if o["type"] == "search"):
        source = _json_attr(obj, "kibanaSavedObjectMeta", "searchSourceJSON")
        view = resolve(objects, obj, source.get("indexRefName", ""), "index-pattern")
        if view is None:
            problems.append(f"{obj['id']}: indexRefName does not resolve to a data view")
            continue
        title = view["attributes"]["title"]
        if source.get("query", {}).get("language") != "kuery":
            problems.append(f"{obj['id']}: query language must be kuery")
        for field in _kql_fields(source.get("query", {}).get("query", "")):
            _check_field(problems, f"{obj['id']} query", title, field)
        for field in obj["attributes"]["columns"]:
            _check_field(problems, f"{obj['id']} column", title, field)
        for field, direction in obj["attributes"]["sort"]:
            if direction not in ("asc", "desc"):
                problems.append(f"{obj['id']}: sort direction {direction!r}")
            _check_field(problems, f"{obj['id']} sort", title, field, sortable=True)
    return problems


def _lens_accessors(vis_type: str, vis: dict[str, Any]) -> dict[str, set[str]]:
    """Layer id -> column ids the visualization state uses."""
    used: dict[str, set[str]] = {}
    if vis_type == "lnsXY":
        for layer in vis["layers"]:
            ids = set(layer.get("accessors", []))
            ids |= {layer[k] for k in ("xAccessor", "splitAccessor") if layer.get(k)}
            used.setdefault(layer["layerId"], set()).update(ids)
    elif vis_type == "lnsDatatable":
        used[vis["layerId"]] = {c["columnId"] for c in vis["columns"]}
    elif vis_type == "lnsMetric":
        used[vis["layerId"]] = {
            vis[k]
            for k in (
                "metricAccessor",
                "secondaryMetricAccessor",
                "maxAccessor",
                "breakdownByAccessor",
            )
            if vis.get(k)
        }
    else:
        raise AssertionError(f"unchecked visualizationType {vis_type}")
    return used


def check_lens(objects: Objects) -> list[str]:
    problems = []
    for obj in (o for o in objects if o["type"] == "lens"):
        attrs, where = obj["attributes"], obj["id"]
        state = attrs["state"]
        layers = state["datasourceStates"]["formBased"]["layers"]
        layer_refs = {
            r["name"]
            for r in obj["references"]
            if r["name"].startswith("indexpattern-datasource-layer-")
        }
        if layer_refs != {f"indexpattern-datasource-layer-{lid}" for lid in layers}:
            problems.append(
                f"{where}: layer references {sorted(layer_refs)} do not match "
                f"the layers {sorted(layers)}"
            )
        used = _lens_accessors(attrs["visualizationType"], state["visualization"])
        if set(used) != set(layers):
            problems.append(
                f"{where}: visualization layers {sorted(used)} != datasource "
                f"layers {sorted(layers)}"
            )
        for field in _kql_fields(state["query"]["query"]):
            problems.extend(_query_field_problems(objects, obj, layers, field))
        for lid, layer in layers.items():
            view = resolve(objects, obj, f"indexpattern-datasource-layer-{lid}", "index-pattern")
            if view is None:
                problems.append(f"{where}: layer {lid} has no data view")
                continue
            title = view["attributes"]["title"]
            columns = layer["columns"]
            if sorted(layer["columnOrder"]) != sorted(columns):
                problems.append(f"{where}: columnOrder of {lid} does not list its columns")
            for missing in used.get(lid, set()) - set(columns):
                problems.append(
                    f"{where}: the visualization uses column {missing!r}, which layer {lid} lacks"
                )
            for cid, col in columns.items():
                _check_column(problems, f"{where} column {cid}", title, col, columns)
    return problems


def _check_column(
    problems: list[str], at: str, title: str, col: dict[str, Any], columns: dict[str, Any]
) -> None:
    """One Lens column: its field exists in the data view with the right type."""
    op, field = col["operationType"], col.get("sourceField")
    if op == "count":
        if field != "___records___":
            _check_field(problems, at, title, field or "")
    elif op == "date_histogram":
        if field != "@timestamp":
            problems.append(f"{at}: date_histogram on {field!r}, not @timestamp")
    else:
        _check_field(
            problems, at, title, field or "", numeric=op in NUMERIC_OPERATIONS, sortable=True
        )
    order = col.get("params", {}).get("orderBy", {})
    if order.get("type") == "column" and order.get("columnId") not in columns:
        problems.append(f"{at}: orders by a missing column")
    if "filter" in col:
        for kql_field in _kql_fields(col["filter"]["query"]):
            _check_field(problems, f"{at} filter", title, kql_field)


def _query_field_problems(
    objects: Objects, obj: dict[str, Any], layers: dict[str, Any], field: str
) -> list[str]:
    problems: list[str] = []
    for lid in layers:
        view = resolve(objects, obj, f"indexpattern-datasource-layer-{lid}", "index-pattern")
        if view is not None:
            _check_field(problems, f"{obj['id']} query", view["attributes"]["title"], field)
    return problems


def _overlap(a: dict[str, int], b: dict[str, int]) -> bool:
    return (
        a["x"] < b["x"] + b["w"]
        and b["x"] < a["x"] + a["w"]
        and a["y"] < b["y"] + b["h"]
        and b["y"] < a["y"] + a["h"]
    )


def check_dashboards(objects: Objects) -> list[str]:
    problems = []
    for obj in (o for o in objects if o["type"] == "dashboard"):
        where = obj["id"]
        panels = _json_attr(obj, "panelsJSON")
        _json_attr(obj, "optionsJSON")
        source = _json_attr(obj, "kibanaSavedObjectMeta", "searchSourceJSON")
        if source.get("query", {}).get("language") != "kuery":
            problems.append(f"{where}: query language must be kuery")
        indexes = [p["panelIndex"] for p in panels]
        if len(indexes) != len(set(indexes)):
            problems.append(f"{where}: duplicate panelIndex")
        wanted = set()
        for panel in panels:
            idx, grid = panel["panelIndex"], panel["gridData"]
            if grid.get("i") != idx:
                problems.append(f"{where}: panel {idx}: gridData.i must equal panelIndex")
            if (
                grid["x"] < 0
                or grid["y"] < 0
                or grid["w"] < 1
                or grid["h"] < 1
                or grid["x"] + grid["w"] > GRID_COLUMNS
            ):
                problems.append(f"{where}: panel {idx} lies outside the {GRID_COLUMNS}-column grid")
            ref_name = f"{idx}:{panel.get('panelRefName')}"
            if panel.get("panelRefName") != f"panel_{idx}":
                problems.append(f"{where}: panel {idx}: panelRefName must be panel_{idx}")
            wanted.add(ref_name)
            if resolve(objects, obj, ref_name, panel.get("type", "")) is None:
                problems.append(
                    f"{where}: panel {idx} ({panel.get('type')}) does not resolve "
                    f"through reference {ref_name!r}"
                )
        for a in range(len(panels)):
            for b in range(a + 1, len(panels)):
                if _overlap(panels[a]["gridData"], panels[b]["gridData"]):
                    problems.append(
                        f"{where}: panels {panels[a]['panelIndex']} and "
                        f"{panels[b]['panelIndex']} overlap"
                    )
        extra = {r["name"] for r in obj["references"]} - wanted
        if extra:
            problems.append(f"{where}: references no panel uses: {sorted(extra)}")
    return problems


CHECKS = [
    check_objects,
    check_references,
    check_data_views,
    check_searches,
    check_lens,
    check_dashboards,
]


def problems_of(objects: Objects) -> list[str]:
    return [problem for check in CHECKS for problem in check(objects)]


# --- the shipped file ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def objects() -> Objects:
    return load()


def test_every_line_is_a_saved_object(objects: Objects) -> None:
    assert check_objects(objects) == []


@pytest.mark.parametrize("check", CHECKS[1:], ids=lambda c: c.__name__)
def test_shipped_objects_pass(objects: Objects, check: Any) -> None:
    assert check(objects) == []


def test_the_objects_the_readme_promises(objects: Objects) -> None:
    kinds = {(o["type"], o["id"]) for o in objects}
    assert ("index-pattern", "mlwatch-predictions") in kinds
    assert ("index-pattern", "mlwatch-feedback") in kinds
    search = next(o for o in objects if o["type"] == "search")
    assert search["attributes"]["title"] == "mlwatch — failed predictions"
    assert search["attributes"]["columns"] == [
        "service.name",
        "service.version",
        "error.type",
        "mlwatch.latency_ms",
        "http.request.id",
    ]
    assert search["attributes"]["sort"] == [["@timestamp", "desc"]]
    query = _json_attr(search, "kibanaSavedObjectMeta", "searchSourceJSON")["query"]
    assert query == {"query": 'event.outcome : "failure"', "language": "kuery"}
    dashboard = next(o for o in objects if o["type"] == "dashboard")
    on_it = {r["id"] for r in dashboard["references"]}
    assert search["id"] in on_it
    lens = {o["id"]: o for o in objects if o["type"] == "lens"}
    assert set(lens) <= on_it
    fields = {
        (c["operationType"], c.get("sourceField"), c.get("params", {}).get("percentile"))
        for o in lens.values()
        for layer in o["attributes"]["state"]["datasourceStates"]["formBased"]["layers"].values()
        for c in layer["columns"].values()
    }
    assert {
        ("percentile", "mlwatch.latency_ms", 50),
        ("percentile", "mlwatch.latency_ms", 95),
        ("terms", "event.outcome", None),
        ("terms", "error.type", None),
        ("terms", "service.name", None),
        ("terms", "service.version", None),
    } <= fields


def test_layout_is_derived_from_the_documents() -> None:
    predictions = LAYOUT[stream_name(PREDICTIONS, "*")]
    assert predictions["mlwatch.latency_ms"] == "number"
    assert predictions["event.outcome"] == "string"
    assert predictions["@timestamp"] == "date"
    assert field_kind(stream_name(PREDICTIONS, "*"), "mlwatch.features.tenure") == "feature"
    assert field_kind(stream_name(FEEDBACK, "*"), "mlwatch.features.tenure") is None
    assert field_kind(stream_name(PREDICTIONS, "*"), "mlwatch.latency") is None


# --- the checks can fail ---------------------------------------------------------------------


def _find(objects: Objects, id_: str) -> dict[str, Any]:
    return next(o for o in objects if o["id"] == id_)


def _edit_json(obj: dict[str, Any], path: tuple[str, ...], edit: Any) -> None:
    holder = obj["attributes"]
    for key in path[:-1]:
        holder = holder[key]
    value = json.loads(holder[path[-1]])
    edit(value)
    holder[path[-1]] = json.dumps(value)


def _break_panel_ref(o: Objects) -> None:
    _edit_json(
        _find(o, "mlwatch-overview"),
        ("panelsJSON",),
        lambda panels: panels[0].update(panelRefName="panel_nope"),
    )


def _overlap_panels(o: Objects) -> None:
    _edit_json(
        _find(o, "mlwatch-overview"),
        ("panelsJSON",),
        lambda panels: panels[1]["gridData"].update(x=6),
    )


def _unknown_column(o: Objects) -> None:
    _find(o, "mlwatch-failed-predictions")["attributes"]["columns"].append("service.nmae")


def _percentile_on_keyword(o: Objects) -> None:
    layers = _find(o, "mlwatch-latency")["attributes"]["state"]["datasourceStates"]["formBased"]
    layers["layers"]["layer-latency"]["columns"]["col-p95"]["sourceField"] = "service.version"


def _sort_on_unindexed(o: Objects) -> None:
    _find(o, "mlwatch-failed-predictions")["attributes"]["sort"] = [["mlwatch.prediction", "desc"]]


def _wrong_view_title(o: Objects) -> None:
    _find(o, "mlwatch-predictions")["attributes"]["title"] = "logs-mlwatch.prediction-*"


def _dangling_index_ref(o: Objects) -> None:
    _edit_json(
        _find(o, "mlwatch-failed-predictions"),
        ("kibanaSavedObjectMeta", "searchSourceJSON"),
        lambda s: s.update(indexRefName="nope"),
    )


def _layer_without_ref(o: Objects) -> None:
    _find(o, "mlwatch-latency")["references"][0]["name"] = "indexpattern-datasource-layer-x"


def _missing_accessor(o: Objects) -> None:
    vis = _find(o, "mlwatch-latency")["attributes"]["state"]["visualization"]
    vis["layers"][0]["accessors"].append("col-p99")


def _kql_typo(o: Objects) -> None:
    _find(o, "mlwatch-top-error-types")["attributes"]["state"]["query"]["query"] = (
        'event.outcom : "failure"'
    )


def _feature_on_feedback(o: Objects) -> None:
    layers = _find(o, "mlwatch-feedback-total")["attributes"]["state"]["datasourceStates"]
    layers["formBased"]["layers"]["layer-labels"]["columns"]["col-labels"]["sourceField"] = (
        "mlwatch.features.x"
    )


def _duplicate_id(o: Objects) -> None:
    o.append(copy.deepcopy(_find(o, "mlwatch-latency")))


def _wrong_reference_type(o: Objects) -> None:
    _find(o, "mlwatch-overview")["references"][0]["type"] = "visualization"


BREAKAGES = [
    _break_panel_ref,
    _overlap_panels,
    _unknown_column,
    _percentile_on_keyword,
    _sort_on_unindexed,
    _wrong_view_title,
    _dangling_index_ref,
    _layer_without_ref,
    _missing_accessor,
    _kql_typo,
    _feature_on_feedback,
    _duplicate_id,
    _wrong_reference_type,
]


@pytest.mark.parametrize("breakage", BREAKAGES, ids=lambda b: b.__name__.strip("_"))
def test_checks_catch(objects: Objects, breakage: Any) -> None:
    broken = copy.deepcopy(objects)
    breakage(broken)
    assert problems_of(broken), f"{breakage.__name__} went unnoticed"
