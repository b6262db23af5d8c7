"""Nothing acknowledged is lost on the way to Elasticsearch: outage, sidecar crash, node loss.

Each test streams events with known ids into a real sidecar at a steady rate, breaks
something in the middle, and then requires that Elasticsearch holds exactly the
acknowledged ids, each once.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from unittest.mock import ANY

import pytest

from mlwatch.elastic.documents import stream_name
from tests.helpers import wait_until
from tests.integration import elastic
from tests.integration.elastic import Cluster
from tests.integration.servers import get_json, get_json_any
from tests.integration.test_elasticsearch import (
    Stream,
    all_ids,
    count,
    duplicate_ids,
    sidecar,
    start_cluster,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def cluster_dir() -> Path:
    return elastic.ROOT / "nodes" / uuid.uuid4().hex[:8]


def assert_exactly_acknowledged(url: str, index: str, stream: Stream, timeout: float) -> None:
    assert stream.done.wait(timeout), "the event stream did not finish"
    assert len(stream.acked) == stream.total
    wait_until(
        lambda: count(url, index) >= stream.total,
        timeout=timeout,
        interval=0.5,
        what=f"{stream.total} documents in {index}",
    )
    assert count(url, index) == stream.total
    assert duplicate_ids(url, index) == []
    assert all_ids(url, index) == set(stream.acked)


def test_outage_of_30_seconds_mid_stream(cluster_dir: Path, tmp_path: Path) -> None:
    cluster = start_cluster(cluster_dir)
    ns = uuid.uuid4().hex[:10]
    side = sidecar(tmp_path, cluster.url, ns).start()
    try:
        stream = Stream(side.port, 50_000, rate=1_000, prefix="outage")
        stream.start()
        index = stream_name("mlwatch.predictions", ns)
        wait_until(
            lambda: count(cluster.url, index) >= 5_000,
            timeout=60,
            interval=0.5,
            what="the first documents",
        )
        node = cluster.nodes[0]
        node.stop()
        down_at = time.monotonic()
        acked_at_stop = len(stream.acked)
        wait_until(
            lambda: (
                get_json_any(side.url + "/readyz")
                == (
                    503,
                    {
                        "ready": False,
                        "spool": {"healthy": True, "last_error": None},
                        "sinks": {
                            "store": {"healthy": True, "alive": True, "last_error": None},
                            "elasticsearch": {"healthy": False, "alive": True, "last_error": ANY},
                        },
                    },
                )
            ),
            timeout=30,
            what="/readyz to report the outage",
        )
        time.sleep(max(0.0, 30 - (time.monotonic() - down_at)))
        assert len(stream.acked) > acked_at_stop + 20_000  # ingest went on during the outage
        node.start().wait_http()
        cluster.wait_health("yellow")
        assert_exactly_acknowledged(cluster.url, index, stream, timeout=180)
        assert get_json(side.url + "/readyz")["sinks"]["elasticsearch"]["healthy"] is True
    finally:
        side.stop()
        cluster.stop()


def test_sidecar_killed_while_shipping(cluster_dir: Path, tmp_path: Path) -> None:
    cluster = start_cluster(cluster_dir)
    ns = uuid.uuid4().hex[:10]
    side = sidecar(tmp_path, cluster.url, ns).start()
    try:
        stream = Stream(side.port, 30_000, rate=3_000, prefix="crash")
        stream.start()
        index = stream_name("mlwatch.predictions", ns)
        for threshold in (3_000, 12_000):  # two crashes, each while documents are in flight
            wait_until(
                lambda t=threshold: count(cluster.url, index) >= t,
                timeout=60,
                interval=0.2,
                what=f"{threshold} documents",
            )
            side.kill9()
            time.sleep(0.5)
            side.start()
        assert_exactly_acknowledged(cluster.url, index, stream, timeout=180)
    finally:
        side.stop()
        cluster.stop()


def test_node_failure_in_a_three_node_cluster(cluster_dir: Path, tmp_path: Path) -> None:
    cluster: Cluster = start_cluster(cluster_dir, n=3)
    ns = uuid.uuid4().hex[:10]
    side = sidecar(tmp_path, cluster.urls, ns, MLWATCH_ELASTICSEARCH_REPLICAS="1").start()
    try:
        stream = Stream(side.port, 30_000, rate=2_000, prefix="node")
        stream.start()
        index = stream_name("mlwatch.predictions", ns)
        wait_until(
            lambda: count(cluster.url, index) >= 5_000,
            timeout=60,
            interval=0.5,
            what="the first documents",
        )
        cluster.nodes[1].stop()  # a clean close of one node while documents flow
        assert_exactly_acknowledged(cluster.url, index, stream, timeout=240)
        health = elastic.request(cluster.url, "GET", "/_cluster/health")
        assert health["number_of_nodes"] == 2
    finally:
        side.stop()
        cluster.stop()
