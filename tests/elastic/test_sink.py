"""The Elasticsearch sink's decisions, item by item, against a scripted client.

The real node (tests/integration) shows the happy path, outages and crashes; here each
kind of answer Elasticsearch can give is produced on purpose, including ones a healthy
node rarely gives (403 on an item, 413 for a request, a refused dead letter).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest
from elastic_transport import ApiResponseMeta, HttpHeaders, NodeConfig
from elastic_transport import ConnectionError as TransportConnectionError
from elasticsearch import ApiError
from prometheus_client import CollectorRegistry

from mlwatch.elastic.sink import ATTEMPTS, ElasticsearchSink
from mlwatch.settings import load_config
from mlwatch.sinks.base import Batch
from mlwatch.store.payloads import EVENTS, encode
from mlwatch.wire import validate_event

Item = dict[str, Any]


def api_error(status: int) -> ApiError:
    meta = ApiResponseMeta(
        status=status,
        http_version="1.1",
        headers=HttpHeaders(),
        duration=0.0,
        node=NodeConfig("http", "localhost", 9200),
    )
    return ApiError(f"HTTP {status}", meta, {"error": {"type": "x"}})


class ScriptedClient:
    """Answers each bulk request through ``answer(index, doc_id, source) -> item``, or
    raises what ``fail_request(n_docs, body_bytes)`` returns."""

    def __init__(
        self,
        answer: Callable[[str, str, dict[str, Any]], Item] | None = None,
        fail_request: Callable[[int, int], BaseException | None] | None = None,
    ) -> None:
        self.answer = answer or (lambda index, doc_id, src: {"status": 201})
        self.fail_request = fail_request or (lambda n, size: None)
        self.requests: list[list[tuple[str, str, dict[str, Any]]]] = []

    def bulk(self, *, operations: bytes, filter_path: str) -> dict[str, Any]:
        lines = operations.splitlines()
        docs = [
            (
                orjson.loads(a)["create"]["_index"],
                orjson.loads(a)["create"]["_id"],
                orjson.loads(src),
            )
            for a, src in zip(lines[::2], lines[1::2], strict=True)
        ]
        if (exc := self.fail_request(len(docs), len(operations))) is not None:
            raise exc
        self.requests.append(docs)
        items = [{"create": self.answer(*d)} for d in docs]
        return {"errors": any(i["create"]["status"] >= 300 for i in items), "items": items}

    def stored(self, index_part: str) -> list[str]:
        return [doc_id for req in self.requests for index, doc_id, _ in req if index_part in index]

    def close(self) -> None:
        pass


def sink(client: ScriptedClient, **settings: Any) -> ElasticsearchSink:
    config = load_config(
        env={},
        elasticsearch_url="http://127.0.0.1:9",
        elasticsearch_install_templates=False,
        **settings,
    )
    return ElasticsearchSink(
        config, client=client, registry=CollectorRegistry(), sleep=lambda s: None
    )


def batch(n: int, **overrides: Any) -> Batch:
    b = Batch()
    b.add(
        encode(
            EVENTS,
            [
                validate_event(
                    {
                        "model": "m",
                        "latency_ms": 1.0,
                        "request_id": f"r{i}",
                        "event_id": f"e{i:04d}",
                        "features": {"x": i},
                        **overrides,
                    }
                )
                for i in range(n)
            ],
        )
    )
    return b


def count(s: ElasticsearchSink, name: str, **labels: str) -> float:
    value = s.documents if name == "documents" else getattr(s, name)
    return float(value.labels(sink="elasticsearch", **labels)._value.get())


def test_created_and_duplicates_are_both_delivered() -> None:
    client = ScriptedClient(lambda i, d, s: {"status": 409 if d < "e0003" else 201})
    s = sink(client)
    assert s.export(batch(10)).ok
    assert count(s, "documents", result="created") == 7
    assert count(s, "documents", result="duplicate") == 3
    assert len(client.requests) == 1


def test_a_mapping_conflict_is_dead_lettered_and_the_rest_delivered() -> None:
    def answer(index: str, doc_id: str, src: dict[str, Any]) -> Item:
        if doc_id == "e0004" and "predictions" in index:
            return {
                "status": 400,
                "error": {
                    "type": "document_parsing_exception",
                    "reason": "failed to parse field [mlwatch.features.x]. Preview of field's "
                    "value: 'secret-ish value'",
                },
            }
        return {"status": 201}

    client = ScriptedClient(answer)
    s = sink(client)
    assert s.export(batch(8)).ok
    assert client.stored("deadletter") == ["e0004"]
    [dead] = [src for req in client.requests for i, _, src in req if "deadletter" in i]
    assert dead["error"]["type"] == "document_parsing_exception"
    assert orjson.loads(dead["mlwatch"]["dead_letter"]["document"])["event"]["id"] == "e0004"
    assert count(s, "dead_letters", data_stream="logs-mlwatch.predictions-default") == 1


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (403, "security_exception"),
        (404, "index_not_found_exception"),
        (400, "invalid_index_name_exception"),
        (429, "es_rejected_execution_exception"),
        (503, "cluster_block_exception"),
    ],
)
def test_cluster_side_refusals_are_retried_never_skipped(status: int, error: str) -> None:
    client = ScriptedClient(lambda i, d, s: {"status": status, "error": {"type": error}})
    s = sink(client)
    result = s.export(batch(3))
    assert not result.ok and f"HTTP {status} {error}" in (result.error or "")
    assert len(client.requests) == ATTEMPTS  # retried, then left to the consumer's replay
    assert client.stored("deadletter") == []


def test_transient_refusals_recover_within_one_export() -> None:
    calls = {"n": 0}

    def answer(index: str, doc_id: str, src: dict[str, Any]) -> Item:
        calls["n"] += 1
        return {"status": 429 if calls["n"] <= 2 else 201}

    client = ScriptedClient(answer)
    s = sink(client)
    assert s.export(batch(5)).ok
    assert count(s, "documents", result="created") == 5
    assert [len(r) for r in client.requests] == [5, 2]  # only the refused items again


def test_connection_errors_are_retried() -> None:
    failures = iter([TransportConnectionError("refused"), None, None])
    client = ScriptedClient(fail_request=lambda n, size: next(failures))
    s = sink(client)
    assert s.export(batch(4)).ok
    assert count(s, "documents", result="created") == 4


def test_a_refused_dead_letter_is_counted_not_looped() -> None:
    def answer(index: str, doc_id: str, src: dict[str, Any]) -> Item:
        return {"status": 400, "error": {"type": "mapper_parsing_exception", "reason": "no"}}

    client = ScriptedClient(answer)
    s = sink(client)
    assert s.export(batch(2)).ok  # returns: the documents and their dead letters were both refused
    assert float(s.lost.labels(sink="elasticsearch")._value.get()) == 2


def test_too_large_requests_are_split_and_a_single_huge_document_dead_lettered() -> None:
    def fail(n_docs: int, size: int) -> BaseException | None:
        return api_error(413) if size > 80_000 else None

    big = {"blob": "y" * 2_000, **{f"f{i}": "z" * 2_000 for i in range(50)}}
    client = ScriptedClient(fail_request=fail)
    s = sink(client)
    b = batch(6)
    b.add(
        encode(
            EVENTS,
            [
                validate_event(
                    {"model": "m", "latency_ms": 1.0, "event_id": "huge", "features": big}
                )
            ],
        )
    )
    assert s.export(b).ok
    assert sorted(client.stored("predictions")) == [f"e{i:04d}" for i in range(6)]
    assert client.stored("deadletter") == ["huge"]
    [dead] = [src for req in client.requests for i, _, src in req if "deadletter" in i]
    assert dead["mlwatch"]["dead_letter"]["truncated_from"] > 100_000
    assert len(dead["mlwatch"]["dead_letter"]["document"]) == 64 << 10


def test_a_document_that_cannot_be_built_is_dead_lettered() -> None:
    b = Batch()
    row = [
        "bad-1",
        "2026-01-01T00:00:00Z",
        0,
        "m",
        "1",
        None,
        "ok",
        None,
        1.0,
        "{not json",
        None,
        None,
        None,
        None,
        None,
    ]
    b.add(EVENTS + orjson.dumps([row]))
    client = ScriptedClient()
    s = sink(client)
    assert s.export(b).ok
    [dead] = [src for req in client.requests for i, _, src in req if "deadletter" in i]
    assert dead["error"]["type"] == "unencodable"
    assert "bad-1" in dead["mlwatch"]["dead_letter"]["document"]


def test_documents_are_built_and_sent_a_bounded_group_at_a_time() -> None:
    client = ScriptedClient()
    s = sink(client, elasticsearch_batch_size=100, elasticsearch_concurrency=2)
    assert s.export(batch(1_000)).ok
    assert max(len(r) for r in client.requests) == 100
    assert sum(len(r) for r in client.requests) == 1_000


def test_installing_templates_without_the_privilege_is_not_fatal(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class NoPrivilege(ScriptedClient):
        def perform_request(self, *args: Any, **kwargs: Any) -> None:
            raise api_error(403)

    client = NoPrivilege()
    config = load_config(env={}, elasticsearch_url="http://127.0.0.1:9")
    s = ElasticsearchSink(config, client=client, registry=CollectorRegistry(), sleep=lambda x: None)
    assert s.export(batch(2)).ok
    assert len(client.stored("predictions")) == 2
    assert "cannot install the index templates" in caplog.text
