"""The Elasticsearch sink against a node that misbehaves: answers that are not bulk
answers, items of odd shapes, odd statuses, silence, trickles and bodies without end.

The sink talks to :class:`tests.elastic.badnode.BadNode` through the real client
(``make_client``: the elasticsearch and elastic_transport packages, urllib3). The
promises: no document counts as delivered that the node did not confirm in its own
shape, ``export`` returns (never raises, never hangs) with a reason that says what was
wrong, memory stays bounded, and the sink delivers once the node behaves again.
"""

from __future__ import annotations

import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry

from mlwatch.elastic.sink import ElasticsearchSink
from mlwatch.settings import load_config
from mlwatch.sidecar.service import Sidecar
from mlwatch.sinks.base import ExportResult
from mlwatch.store.payloads import EVENTS
from tests.elastic.badnode import Answer, BadNode, Request, created, items
from tests.elastic.test_sink import batch, count
from tests.helpers import event, wait_until


@pytest.fixture
def node() -> Iterator[Callable[..., BadNode]]:
    nodes: list[BadNode] = []

    def make(answer: Callable[[Request], Answer] = created) -> BadNode:
        nodes.append(BadNode(answer))
        return nodes[-1]

    yield make
    for n in nodes:
        n.stop()


@pytest.fixture
def sink() -> Iterator[Callable[..., ElasticsearchSink]]:
    sinks: list[ElasticsearchSink] = []

    def make(node: BadNode, **settings: Any) -> ElasticsearchSink:
        settings.setdefault("elasticsearch_install_templates", False)
        config = load_config(env={}, elasticsearch_url=node.url, **settings)
        sinks.append(ElasticsearchSink(config, registry=CollectorRegistry(), sleep=lambda s: None))
        return sinks[-1]

    yield make
    for s in sinks:
        s.shutdown()


def body(data: bytes, **kwargs: Any) -> Callable[[Request], Answer]:
    return lambda request: Answer(body=data, **kwargs)


def each(item: Callable[[str, str], Any]) -> Callable[[Request], Answer]:
    return lambda request: items(request, item)


def delivered(s: ElasticsearchSink) -> float:
    return count(s, "documents", result="created") + count(s, "documents", result="duplicate")


def export_within(s: ElasticsearchSink, seconds: float) -> ExportResult:
    """``export`` on a thread: its result, or a failure when it is still running."""
    result: list[ExportResult] = []
    worker = threading.Thread(target=lambda: result.append(s.export(batch(3))), daemon=True)
    worker.start()
    worker.join(seconds)
    assert result, f"export still running after {seconds}s"
    return result[0]


# -- answers that confirm nothing ---------------------------------------------------------
MALFORMED = {
    "not-json": (body(b"<html>502 Bad Gateway</html>"), "Unable to deserialize as JSON"),
    "text": (body(b"all good", content_type=b"text/plain"), "got a string"),
    "array": (body(b"[1, 2, 3]"), "got an array"),
    "no-items": (body(b'{"errors": false}'), "items"),
    "items-null": (body(b'{"errors": false, "items": null}'), "with an items array"),
    "items-string": (body(b'{"items": "201,201,201"}'), "with an items array"),
    "too-few": (
        lambda r: Answer(body=orjson.dumps({"items": [{"create": {"status": 201}}]})),
        "1 items for 3 documents",
    ),
    "too-many": (
        lambda r: Answer(body=orjson.dumps({"items": [{"create": {"status": 201}}] * 5})),
        "5 items for 3 documents",
    ),
    "empty-item": (each(lambda i, d: {}), "expected {'create'"),
    "number-item": (each(lambda i, d: 201), "expected {'create'"),
    "create-string": (each(lambda i, d: {"create": "created"}), "expected {'create'"),
    "other-operation": (each(lambda i, d: {"index": {"status": 201}}), "keys ['index']"),
    "two-operations": (
        each(lambda i, d: {"create": {"status": 201}, "index": {"status": 201}}),
        "expected {'create'",
    ),
    "status-string": (each(lambda i, d: {"create": {"status": "201"}}), "integer status"),
    "status-float": (each(lambda i, d: {"create": {"status": 201.0}}), "integer status"),
    "status-null": (each(lambda i, d: {"create": {"status": None}}), "integer status"),
    "status-bool": (each(lambda i, d: {"create": {"status": True}}), "integer status"),
    "no-status": (each(lambda i, d: {"create": {"_id": d}}), "integer status"),
    "other-id": (
        each(lambda i, d: {"create": {"_id": "not-" + d, "status": 201}}),
        "another document",
    ),
    "success-with-error": (
        each(lambda i, d: {"create": {"status": 201, "error": {"type": "x"}}}),
        "together with an error",
    ),
    "error-string": (
        each(lambda i, d: {"create": {"status": 400, "error": "mapper_parsing_exception"}}),
        "HTTP 400",
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_an_answer_that_is_not_elasticsearchs_confirms_nothing(
    node: Callable[..., BadNode], sink: Callable[..., ElasticsearchSink], case: str
) -> None:
    """Some of these raised out of export (AttributeError, TypeError, RuntimeError from a
    StopIteration), and some counted documents as delivered: a status "201" or 201.0, an
    ``index`` item, another document's id, a 201 with an error."""
    answer, reason = MALFORMED[case]
    bad = node(answer)
    s = sink(bad)
    result = s.export(batch(3))
    assert not result.ok
    assert result.error is not None and reason in result.error, result.error
    assert delivered(s) == 0
    assert count(s, "dead_letters", data_stream="logs-mlwatch.predictions-default") == 0
    bad.answer = created  # the node behaves again: the same batch goes through
    assert s.export(batch(3)).ok
    assert count(s, "documents", result="created") == 3


@pytest.mark.parametrize("status", [0, 100, 204, 302, 404, 999, -1])
def test_odd_item_statuses_are_retried_not_delivered(
    node: Callable[..., BadNode], sink: Callable[..., ElasticsearchSink], status: int
) -> None:
    """``errors: true`` with statuses Elasticsearch does not give for a create: only 200,
    201 and 409 confirm a document."""
    bad = node(each(lambda i, d: {"create": {"_id": d, "status": status}}))
    s = sink(bad)
    result = s.export(batch(3))
    assert not result.ok and result.error is not None and f"HTTP {status}" in result.error
    assert delivered(s) == 0
    assert len(bad.bulk_requests()) == 4  # the attempts of one export, then the consumer's


@pytest.mark.parametrize("status", [429, 500, 502, 503])
def test_refused_requests_are_retried_and_reported(
    node: Callable[..., BadNode], sink: Callable[..., ElasticsearchSink], status: int
) -> None:
    """Held: 429 and 5xx are retried (the client's own retries, then the sink's), nothing
    is delivered, and the reason names the status."""
    bad = node(body(b'{"error": {"type": "es_rejected_execution_exception"}}', status=status))
    s = sink(bad)
    result = s.export(batch(3))
    assert not result.ok and result.error is not None and f"HTTP {status}" in result.error
    assert delivered(s) == 0
    assert len(bad.bulk_requests()) >= 4


# -- silence, trickles, bodies without end ---------------------------------------------
def test_a_node_that_never_answers_costs_a_bounded_time(
    node: Callable[..., BadNode], sink: Callable[..., ElasticsearchSink]
) -> None:
    """Held: 3 tries of the client times 4 attempts of the sink, each ending at the
    request timeout."""
    s = sink(node(lambda r: Answer(mode="hang")), elasticsearch_timeout_s=0.2)
    started = time.monotonic()
    result = export_within(s, 20)
    assert not result.ok and result.error is not None and "ConnectionTimeout" in result.error
    assert time.monotonic() - started < 12 * 0.2 + 5
    assert delivered(s) == 0


def test_a_trickled_answer_ends_at_the_request_timeout(
    node: Callable[..., BadNode], sink: Callable[..., ElasticsearchSink]
) -> None:
    """The timeout applied to each read of the socket, so an answer sent a byte at a time
    (here 200 bytes, one every 0.1 s: 20 s a request, 4 minutes an export) was waited
    for; now a request ends at its timeout, whatever it waits for."""
    answer = Answer(mode="trickle", body=b'{"items": []}' + b" " * 190, every=0.1)
    s = sink(node(lambda r: answer), elasticsearch_timeout_s=0.3)
    result = export_within(s, 15)
    assert not result.ok and result.error is not None and "ConnectionTimeout" in result.error
    assert delivered(s) == 0


def test_an_endless_answer_is_abandoned_at_a_bound(
    node: Callable[..., BadNode], sink: Callable[..., ElasticsearchSink]
) -> None:
    """The client read an answer whole: a body streamed without end grew the process until
    the node stopped (here at 512 MiB, twice that in memory); now an answer over 64 MiB is
    abandoned and its connection closed."""
    bad = node(lambda r: Answer(mode="endless"))
    s = sink(bad, elasticsearch_timeout_s=10)
    tracemalloc.start()
    try:
        result = export_within(s, 60)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 160 << 20, f"{peak >> 20} MiB at the peak"
    assert not result.ok and result.error is not None and "larger than" in result.error
    assert delivered(s) == 0
    bad.answer = created  # the connection pool is not left short of connections
    assert export_within(s, 10).ok


def test_template_installation_against_a_silent_node_is_bounded(
    node: Callable[..., BadNode], sink: Callable[..., ElasticsearchSink]
) -> None:
    """Held: templates go in before the first bulk request; a node that does not answer
    those requests fails the export, within the same bounds, and they are tried again."""
    bad = node(lambda r: Answer(mode="trickle", body=b"{}" * 100, every=0.1))
    s = sink(bad, elasticsearch_install_templates=True, elasticsearch_timeout_s=0.3)
    result = export_within(s, 15)
    assert not result.ok and result.error is not None and "ConnectionTimeout" in result.error
    assert bad.bulk_requests() == []
    bad.answer = created
    assert export_within(s, 10).ok
    assert any(r.path.startswith("/_index_template/") for r in bad.requests)


# -- through the spool, end to end -------------------------------------------------------
def test_the_sidecar_keeps_every_event_until_the_node_confirms_it(
    node: Callable[..., BadNode], tmp_path: Path
) -> None:
    """A node that answers 200 with items it does not mean: the sink turns unhealthy with
    the reason, the spool keeps the events (nothing is committed past them), the store
    sink is unaffected; once the node behaves, each event is sent and confirmed."""
    bad = node(each(lambda i, d: {"create": {"_id": d, "status": "201"}}))
    config = load_config(
        env={},
        data_dir=str(tmp_path / "data"),
        elasticsearch_url=bad.url,
        retention_days=0,
    )
    sc = Sidecar(config, registry=CollectorRegistry())
    sc.start()
    try:
        records = [event(i, event_id=f"0190c1de-0000-7000-8000-{i:012d}") for i in range(20)]
        assert sc.accept(EVENTS, records) == 20

        def es_state() -> dict[str, Any]:
            state: dict[str, Any] = sc.readiness()[1]["sinks"]["elasticsearch"]
            return state

        wait_until(lambda: not es_state()["healthy"], what="the sink reported unhealthy")
        assert "integer status" in (es_state()["last_error"] or "")
        assert sc.spool.lag_bytes("elasticsearch") > 0
        wait_until(lambda: sc.spool.lag_bytes("store") == 0, what="the store sink delivered")
        bad.answer = created
        wait_until(lambda: sc.spool.lag_bytes("elasticsearch") == 0, what="delivered")
        wait_until(lambda: es_state()["healthy"], what="healthy again")
        last = {d for _, d in bad.bulk_requests()[-1].documents()}
        assert last == {r["event_id"] for r in records}  # the whole batch, again
    finally:
        sc.stop()
