"""One contract suite over every spool sink: the embedded store, the profiles,
Elasticsearch (a bulk peer that keeps state and answers as Elasticsearch documents:
201 created, 409 for an ``_id`` it has; the real node is in tests/integration).

Each case says how to count what its destination holds, and how to break it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry

from mlwatch.settings import load_config
from mlwatch.sinks.base import Batch, ConsumerOptions, ExportResult, Sink
from mlwatch.sinks.consumer import Consumer
from mlwatch.sinks.profiles import ProfileSink
from mlwatch.sinks.store import StoreSink
from mlwatch.store import EmbeddedStore
from mlwatch.store.payloads import EVENTS, FEEDBACK, MODELS, encode
from mlwatch.store.spool import Spool
from mlwatch.wire import validate_event, validate_feedback, validate_registration
from tests.helpers import wait_until

START_US = 1_790_000_000_000_000 - 1_790_000_000_000_000 % 60_000_000


class BulkPeer:
    """Elasticsearch's bulk ``create`` semantics with state: each ``_id`` once per stream."""

    def __init__(self) -> None:
        self.docs: dict[tuple[str, str], dict[str, Any]] = {}
        self.down = False

    def bulk(self, *, operations: bytes, filter_path: str) -> dict[str, Any]:
        if self.down:
            from elasticsearch import ConnectionError as ESConnectionError

            raise ESConnectionError("connection refused")
        lines = operations.splitlines()
        items = []
        for action, source in zip(lines[::2], lines[1::2], strict=True):
            meta = orjson.loads(action)["create"]
            key = (meta["_index"], meta["_id"])
            status = 409 if key in self.docs else 201
            self.docs.setdefault(key, orjson.loads(source))
            items.append({"create": {"status": status}})
        return {"errors": any(i["create"]["status"] >= 300 for i in items), "items": items}

    def close(self) -> None:
        pass

    def events(self) -> int:
        return sum(1 for index, _ in self.docs if ".predictions-" in index)


@dataclass
class Case:
    sink: Sink
    events: Callable[[], int]  # events the destination holds
    break_it: Callable[[], None]
    idempotent: bool = True  # a replayed batch changes nothing


def event_batch(n: int, offset: int = 0) -> Batch:
    evs = [
        validate_event(
            {
                "model": "m",
                "version": "1",
                "latency_ms": 1.0,
                "event_id": f"e{i:06d}",
                "request_id": f"r{i}",
                "ts": _ts(START_US + i * 1000),
                "features": {"x": float(i), "c": "ab"[i % 2]},
                "prediction": i % 2,
            }
        )
        for i in range(offset, offset + n)
    ]
    batch = Batch()
    batch.add(encode(EVENTS, evs))
    batch.add(
        encode(
            FEEDBACK,
            [
                validate_feedback(
                    {"model": "m", "request_id": "r0", "feedback_id": "f0", "label": 1}
                )
            ],
        )
    )
    batch.add(encode(MODELS, [validate_registration({"model": "m", "version": "1"})]))
    return batch


def _ts(us: int) -> str:
    from mlwatch.times import format_us

    return format_us(us)


def _store_case(tmp_path: Path) -> Case:
    store = EmbeddedStore(tmp_path / "store.db")
    return Case(StoreSink(store), lambda: store.count_events("m"), store.close)


def _profile_case(tmp_path: Path) -> Case:
    from mlwatch.stats.profile import DatasetProfile

    store = EmbeddedStore(tmp_path / "store.db")
    reference = DatasetProfile.from_reference(
        {"x": [float(i) for i in range(500)], "c": ["a", "b"] * 250}
    )
    store.put_profile("m", "*", "reference", 0, 0, reference.to_json())
    sink = ProfileSink(store, slice_s=60.0)

    def rows() -> int:
        return sum(orjson.loads(body)["rows"] for _, _, body in store.profiles("m", "1", "slice"))

    return Case(sink, rows, store.close, idempotent=False)  # a cache: the job checks coverage


def _elastic_case(tmp_path: Path) -> Case:
    from mlwatch.elastic.sink import ElasticsearchSink

    peer = BulkPeer()
    config = load_config(
        env={},
        elasticsearch_url="http://127.0.0.1:9",
        elasticsearch_install_templates=False,
        data_dir=str(tmp_path),
    )
    sink = ElasticsearchSink(
        config, client=peer, registry=CollectorRegistry(), sleep=lambda s: None
    )
    return Case(sink, peer.events, lambda: setattr(peer, "down", True))


@pytest.fixture(params=["store", "profiles", "elasticsearch"])
def case(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Case]:
    made = {"store": _store_case, "profiles": _profile_case, "elasticsearch": _elastic_case}[
        request.param
    ](tmp_path)
    yield made
    made.sink.shutdown(5.0)


def delivered(case: Case) -> int:
    case.sink.force_flush(5.0)  # a buffering sink writes what it holds
    return case.events()


def test_name_and_options(case: Case) -> None:
    assert re.match(r"^[A-Za-z0-9_-]{1,64}$", case.sink.name)  # a spool consumer name
    assert isinstance(case.sink.options, ConsumerOptions)


def test_a_batch_is_delivered(case: Case) -> None:
    assert case.sink.export(event_batch(40)) == ExportResult.SUCCESS
    assert delivered(case) == 40


def test_an_empty_batch_and_an_unknown_record_kind_are_fine(case: Case) -> None:
    assert case.sink.export(Batch()).ok
    future = Batch()
    future.add(b"X9[1,2,3]")  # a record written by a newer mlwatch
    assert future.unknown_records == 1 and case.sink.export(future).ok
    assert delivered(case) == 0


def test_a_replayed_batch(case: Case) -> None:
    """After a crash the consumer replays the batch in flight: delivered once."""
    assert case.sink.export(event_batch(30)).ok
    assert case.sink.export(event_batch(30)).ok
    assert delivered(case) == (30 if case.idempotent else 60)


def test_force_flush_and_an_idempotent_shutdown(case: Case) -> None:
    assert case.sink.export(event_batch(5)).ok
    assert case.sink.force_flush(5.0) is True
    assert case.events() == 5
    assert case.sink.shutdown(5.0) is True
    assert case.sink.shutdown(5.0) is True


def test_the_consumer_drains_the_spool_into_it(case: Case, tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", consumers=[case.sink.name])
    errors: list[BaseException] = []
    for k in range(5):
        spool.append(
            [
                encode(
                    EVENTS,
                    [
                        validate_event(
                            {
                                "model": "m",
                                "version": "1",
                                "latency_ms": 1.0,
                                "request_id": f"s{k}-{i}",
                                "ts": _ts(START_US + k * 1000 + i),
                                "features": {"x": 1.0, "c": "a"},
                            }
                        )
                        for i in range(20)
                    ],
                )
            ]
        )
    consumer = Consumer(spool, case.sink, on_error=lambda _n, exc: errors.append(exc))
    consumer.start()
    try:
        wait_until(
            lambda: spool.lag_bytes(case.sink.name) == 0, timeout=20, what="the spool drained"
        )
        wait_until(lambda: delivered(case) == 100, timeout=20, what="100 events delivered")
        assert errors == [] and consumer.state()["healthy"]
    finally:
        consumer.stop()
        consumer.join(10)
        spool.close()


def test_a_broken_destination_keeps_the_batch_in_the_spool(case: Case, tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", consumers=[case.sink.name])
    case.break_it()
    spool.append(
        [
            encode(
                EVENTS,
                [
                    validate_event(
                        {"model": "m", "latency_ms": 1.0, "features": {"x": 1.0, "c": "a"}}
                    )
                ],
            )
        ]
    )
    errors: list[BaseException] = []
    consumer = Consumer(spool, case.sink, on_error=lambda _n, exc: errors.append(exc))
    consumer.start()
    try:
        wait_until(lambda: errors, timeout=20, what="the failure to be reported")
        state = consumer.state()
        assert not state["healthy"] and state["last_error"]
        assert spool.lag_bytes(case.sink.name) > 0  # nothing was committed
    finally:
        consumer.stop()
        consumer.join(10)
        spool.close()


def test_an_unreadable_reference_never_wedges_the_profile_sink(tmp_path: Path) -> None:
    """A stored reference that does not decode (damaged, or from another version): the
    batch is delivered (no slices for that model), so the spool keeps draining."""
    store = EmbeddedStore(tmp_path / "store.db")
    store.put_profile("m", "*", "reference", 0, 0, '{"format": "something else"}')
    sink = ProfileSink(store, slice_s=60.0)
    try:
        for _ in range(3):
            assert sink.export(event_batch(10)).ok
        assert store.profiles("m", "1", "slice") == []
    finally:
        sink.shutdown()
        store.close()


def test_a_store_error_during_the_reference_lookup_is_retried(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "store.db")
    sink = ProfileSink(store, slice_s=60.0)
    store.close()
    for _ in range(2):  # each export fails again: the batch stays in the spool
        with pytest.raises(Exception, match="closed"):
            sink.export(event_batch(5))
