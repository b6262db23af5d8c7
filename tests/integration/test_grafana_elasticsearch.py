"""Every Elasticsearch query of the events dashboards, sent as Grafana sends it to a real
Elasticsearch node holding events written by mlwatch's own sink, answers with what its
panel draws; the same query on a renamed field does not."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from mlwatch.elastic.sink import ElasticsearchSink
from mlwatch.grafana.build import EsQuery, build_dashboards, es_queries
from mlwatch.grafana.common import Options
from mlwatch.grafana.event_panels import COLUMNS
from mlwatch.grafana.render import dashboard_json, datasource_yaml
from mlwatch.settings import load_config
from mlwatch.sinks.base import Batch
from mlwatch.store.payloads import EVENTS, encode
from mlwatch.wire import validate_event
from tests.grafana.helpers import EXAMPLE
from tests.helpers import REPO
from tests.integration import grafana_es
from tests.integration.elastic import Cluster, request
from tests.integration.test_elasticsearch import start_cluster

pytestmark = pytest.mark.integration

HOUR_MS = 3_600_000


@dataclass(frozen=True)
class Stream:
    """The indexed events and what the dashboards of the example config query."""

    url: str
    index: str
    end: int  # epoch ms; the time range is the hour before
    boards: dict[str, dict[str, Any]]  # uid -> dashboard JSON
    queries: list[EsQuery]


def events(model: str, versions: list[str], slow_ms: float, n: int) -> list[dict[str, Any]]:
    """``n`` events over the last 50 minutes: a failure in ten, a slow call in eight,
    environments prod, staging or none (the default), some with a trace id."""
    now = datetime.now(UTC)
    out = []
    for i in range(n):
        environment = ["prod", "staging"][i % 2] if i % 3 else None
        labels = {"environment": "not-this-one"} if i % 5 == 0 else {}  # a label, not it
        if i % 4 == 0:
            labels["trace_id"] = f"t{i}"
        failed = i % 10 == 0
        out.append(
            validate_event(
                {
                    "model": model,
                    "version": versions[i % len(versions)],
                    "request_id": f"{model}-r{i}",
                    "ts": (now - timedelta(seconds=3000 * i / n)).isoformat(),
                    "latency_ms": slow_ms * (1.5 if i % 8 == 0 else (i % 50) / 100),
                    "status": "error" if failed else "ok",
                    "error": ["ValueError", "TimeoutError"][i % 20 // 10] if failed else None,
                    "features": {"x": float(i)},
                    "labels": labels or None,
                    "environment": environment,
                }
            )
        )
    return out


@pytest.fixture(scope="module")
def stream() -> Iterator[Stream]:
    from tests.integration import elastic

    cluster: Cluster = start_cluster(elastic.ROOT / "nodes" / uuid.uuid4().hex[:8])
    try:
        ns = uuid.uuid4().hex[:10]
        config = load_config(
            REPO / EXAMPLE, env={}, elasticsearch_url=cluster.url, elasticsearch_namespace=ns
        )
        sink = ElasticsearchSink(config, registry=CollectorRegistry())
        batch = Batch()
        batch.add(encode(EVENTS, events("churn", ["1", "2"], 500, 400)))
        batch.add(encode(EVENTS, events("eta", ["7"], 1000, 200)))
        try:
            assert sink.export(batch).ok
        finally:
            sink.shutdown()
        [source] = [
            s
            for s in yaml.safe_load(datasource_yaml(config, Options()))["datasources"]
            if s["type"] == "elasticsearch"
        ]
        index = source["jsonData"]["index"]
        request(cluster.url, "POST", f"/{index}/_refresh")
        built = build_dashboards(config, Options())
        queries = es_queries(built)
        assert {q.time_field for q in queries} == {source["jsonData"]["timeField"]}
        boards = {b.uid or "": json.loads(dashboard_json(b)) for b in built.values()}
        end = int(datetime.now(UTC).timestamp() * 1000) + 60_000
        yield Stream(cluster.url, index, end, boards, queries)
    finally:
        cluster.stop()


def run(s: Stream, q: EsQuery, values: dict[str, str]) -> Any:
    body = grafana_es.search(q, values, s.end - HOUR_MS, s.end, "1m")
    return request(s.url, "POST", f"/{s.index}/_search", body)


def variable_values(s: Stream, uid: str, choose: bool) -> dict[str, str]:
    """The dashboard's variables in Lucene: All, or the first value each variable's own
    terms query finds (run on the node, as Grafana fills the drop-down)."""
    values: dict[str, str] = {}
    for var in s.boards[uid]["templating"]["list"]:
        name = var["name"]
        if var["type"] in ("constant", "textbox"):
            values[name] = grafana_es.lucene_value(var["query"])
        elif var["type"] == "query":
            found = terms(s, json.loads(var["query"]), values)
            assert found, f"{uid}: variable {name} lists nothing"
            values[name] = grafana_es.lucene_value([found[0]]) if choose else var["allValue"]
    return values


def terms(s: Stream, query: dict[str, Any], values: dict[str, str]) -> list[str]:
    body = {
        "size": 0,
        "query": {"query_string": {"query": grafana_es.interpolate(query["query"], values)}},
        "aggs": {"v": {"terms": {"field": query["field"], "size": 500, "order": {"_key": "asc"}}}},
    }
    answer = request(s.url, "POST", f"/{s.index}/_search", body)
    return [str(b["key"]) for b in answer["aggregations"]["v"]["buckets"]]


def flat(doc: dict[str, Any], prefix: str = "") -> set[str]:
    out = set()
    for key, value in doc.items():
        out |= flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {prefix + key}
    return out


@pytest.mark.parametrize("choose", [False, True], ids=["all", "chosen"])
def test_every_events_query_answers_with_what_its_panel_draws(stream: Stream, choose: bool) -> None:
    assert len(stream.queries) == 8
    columns: set[str] = set()
    for q in stream.queries:
        answer = run(stream, q, variable_values(stream, q.dashboard, choose))
        grafana_es.check(q, answer)
        for hit in answer.get("hits", {}).get("hits", []):
            columns |= flat(hit["_source"])
            assert hit["_source"]["mlwatch"]["model"] == q.dashboard.split("-")[-1]
    assert set(COLUMNS) <= columns


def test_the_filters_select_what_they_say(stream: Stream) -> None:
    [latest] = [
        q
        for q in stream.queries
        if q.dashboard == "mlwatch-events-churn" and q.panel == "Latest errors"
    ]
    values = variable_values(stream, latest.dashboard, choose=False)
    every = run(stream, latest, values)["hits"]["hits"]
    assert {h["_source"]["event"]["outcome"] for h in every} == {"failure"}
    assert {h["_source"]["service"]["environment"] for h in every} == {"prod", "default"}
    values["environment"] = grafana_es.lucene_value(["prod"])
    prod = run(stream, latest, values)["hits"]["hits"]
    assert prod and {h["_source"]["service"]["environment"] for h in prod} == {"prod"}
    slow = [q for q in stream.queries if q.panel == "Slow requests"]
    for q in slow:
        hits = run(stream, q, variable_values(stream, q.dashboard, False))["hits"]["hits"]
        threshold = float(variable_values(stream, q.dashboard, False)["slow_ms"])
        assert min(h["_source"]["mlwatch"]["latency_ms"] for h in hits) >= threshold


@pytest.mark.parametrize(
    ("field", "renamed"),
    [
        ("error.type", "error.kind"),
        ("mlwatch.latency_ms", "mlwatch.latency"),
        ("event.outcome", "event.result"),
        ("mlwatch.version", "service.ver"),
        ("@timestamp", "timestamp"),
    ],
)
def test_a_query_on_a_renamed_field_fails_the_check(
    stream: Stream, field: str, renamed: str
) -> None:
    named = [q for q in stream.queries if field in json.dumps(q.__dict__)]
    assert named
    for q in named:
        text = json.dumps([q.query, q.metrics, q.bucket_aggs]).replace(field, renamed)
        query, metrics, buckets = json.loads(text)
        broken = replace(
            q,
            query=query,
            metrics=tuple(metrics),
            bucket_aggs=tuple(buckets),
            time_field=q.time_field.replace(field, renamed),
        )
        with pytest.raises(AssertionError):
            grafana_es.check(
                broken, run(stream, broken, variable_values(stream, q.dashboard, False))
            )
