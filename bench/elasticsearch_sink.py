"""Elasticsearch sink throughput and lag against one real local node.

1. Baseline: the node's own indexing rate for the very documents the sink writes —
   pre-built bulk bodies (``create`` with ids, same batch size and concurrency) sent
   by a plain script, no mlwatch code on the path.
2. Sink: ``--events`` events (20 features) are put in a spool first; then the
   sidecar's consumer and Elasticsearch sink drain it into a fresh data stream. The
   rate is documents per second from spool to acknowledged by Elasticsearch.
3. Lag: a real ``mlwatch sidecar`` receives events at half the sink's rate for
   ``--seconds``; probe events are timed from the 202 to the moment a search finds
   them (this includes Elasticsearch's 1 s refresh interval). p50/p99 printed.

    python bench/elasticsearch_sink.py --events 200000 --seconds 30
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.sidecar_ingest import PLACEHOLDER, make_template
from mlwatch.elastic.client import install_templates, make_client
from mlwatch.elastic.documents import Origin, event_document, stream_name
from mlwatch.elastic.sink import ElasticsearchSink
from mlwatch.settings import load_config
from mlwatch.sinks.consumer import Consumer
from mlwatch.store import event_row
from mlwatch.store.payloads import EVENTS, encode
from mlwatch.store.spool import Spool
from mlwatch.wire import validate_event
from tests.integration import elastic
from tests.integration.servers import SidecarProcess

BATCH = 500


def events(n: int, tag: str) -> list[list[dict]]:
    """``n`` validated events in batches of 500, ids unique per run."""
    template = make_template(BATCH, 20)
    out = []
    for b in range(n // BATCH):
        body = template.replace(PLACEHOLDER, f"{tag}{b:07d}".encode()[:10])
        out.append([validate_event(e) for e in json.loads(body)])
    return out


def baseline(
    url: str, batches: list[list[dict]], index: str, batch_size: int, concurrency: int
) -> float:
    origin = Origin()
    docs = [
        (e["event_id"], json.dumps(event_document(event_row(e), origin)).encode())
        for batch in batches
        for e in batch
    ]
    bodies = []
    for i in range(0, len(docs), batch_size):
        lines = []
        for doc_id, src in docs[i : i + batch_size]:
            lines.append(json.dumps({"create": {"_index": index, "_id": doc_id}}).encode())
            lines.append(src)
        bodies.append(b"\n".join(lines) + b"\n")
    host, port = url.split("//")[1].split(":")

    def send(body: bytes) -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=120)
        conn.request(
            "POST", "/_bulk?filter_path=errors", body, {"Content-Type": "application/x-ndjson"}
        )
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        assert resp.status == 200 and b'"errors":false' in data, data[:300]

    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(send, bodies))
    return len(docs) / (time.perf_counter() - t0)


def sink_rate(url: str, batches: list[list[dict]], namespace: str, workdir: Path) -> float:
    config = load_config(
        env={}, elasticsearch_url=url, elasticsearch_namespace=namespace, data_dir=str(workdir)
    )
    spool = Spool(workdir / "spool", consumers=["elasticsearch"], fsync="interval")
    spool.append([encode(EVENTS, batch) for batch in batches])
    sink = ElasticsearchSink(config)
    total = spool.lag_bytes("elasticsearch")
    errors: list[BaseException] = []
    consumer = Consumer(spool, sink, on_error=lambda _n, exc: errors.append(exc))  # as the
    # sidecar runs it: the sink's own consumer options
    t0 = time.perf_counter()
    consumer.start()
    while spool.lag_bytes("elasticsearch") > 0:
        time.sleep(0.01)
    elapsed = time.perf_counter() - t0
    consumer.stop()
    consumer.join()
    spool.close()
    sink.shutdown()
    assert not errors, errors[:3]
    print(f"  spool held {total / 1e6:.0f} MB")
    return sum(len(b) for b in batches) / elapsed


def lag(url: str, rate: float, seconds: float, workdir: Path) -> list[float]:
    ns = uuid.uuid4().hex[:8]
    side = SidecarProcess(
        workdir / "side", MLWATCH_ELASTICSEARCH_URL=url, MLWATCH_ELASTICSEARCH_NAMESPACE=ns
    ).start()
    index = stream_name("mlwatch.predictions", ns)
    template = make_template(BATCH, 20)
    pending: dict[str, float] = {}
    lags: list[float] = []
    lock = threading.Lock()
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set() or pending:
            with lock:
                ids = list(pending)
            if ids:
                try:
                    hits = elastic.request(
                        url,
                        "POST",
                        f"/{index}/_search",
                        {"size": len(ids), "_source": False, "query": {"ids": {"values": ids}}},
                    )["hits"]["hits"]
                except OSError:
                    hits = []
                now = time.perf_counter()
                with lock:
                    for hit in hits:
                        if hit["_id"] in pending:
                            lags.append(now - pending.pop(hit["_id"]))
            time.sleep(0.02)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    conn = http.client.HTTPConnection("127.0.0.1", side.port, timeout=30)
    interval = BATCH / rate
    t0 = time.perf_counter()
    n = 0
    while time.perf_counter() - t0 < seconds:
        if (pause := t0 + n * interval - time.perf_counter()) > 0:
            time.sleep(pause)
        tag = f"l{n:09d}".encode()
        conn.request(
            "POST",
            "/v1/events",
            template.replace(PLACEHOLDER, tag),
            {"Content-Type": "application/json"},
        )
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 202
        with lock:  # probe: the first event of every batch
            pending[f"{tag.decode()}-00000"] = time.perf_counter()
        n += 1
    stop.set()
    poller.join(60)
    side.stop()
    print(f"  lag run: {n * BATCH} events at {n * BATCH / seconds:.0f}/s, {len(lags)} probes")
    return lags


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--heap", default="1g", help="Elasticsearch heap")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mlwatch-bench-es-"))
    elastic.HEAP, elastic.FAST_START_OPTS = args.heap, ""  # a node tuned as in production
    cluster = elastic.Cluster(elastic.ROOT / "nodes" / uuid.uuid4().hex[:8], 1, settings={}).start()
    try:
        url = cluster.url
        config = load_config(env={}, elasticsearch_url=url)
        client = make_client(config)
        install_templates(client, config)
        client.close()
        print(
            f"Elasticsearch {elastic.VERSION}, one node, heap {elastic.HEAP}; "
            f"{args.events} events x 20 features; batch {config.elasticsearch_batch_size}, "
            f"concurrency {config.elasticsearch_concurrency}"
        )
        base = baseline(
            url,
            events(args.events, "b"),
            stream_name("mlwatch.predictions", "baseline"),
            config.elasticsearch_batch_size,
            config.elasticsearch_concurrency,
        )
        print(f"baseline (plain bulk of the same documents): {base:,.0f} docs/s")
        rate = sink_rate(url, events(args.events, "s"), "sink", work / "sink")
        print(
            f"sink (spool -> Elasticsearch):               {rate:,.0f} docs/s  "
            f"ratio {rate / base:.2f} of the node's own rate"
        )
        lags = sorted(lag(url, min(rate, base) / 2, args.seconds, work))
        if lags:
            p99 = lags[min(len(lags) - 1, int(len(lags) * 0.99))]
            print(
                f"lag at half load, 202 -> searchable: p50 {statistics.median(lags):.2f} s, "
                f"p99 {p99:.2f} s (refresh interval 1 s)"
            )
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
