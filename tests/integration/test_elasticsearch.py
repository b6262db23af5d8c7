"""The sidecar's Elasticsearch sink against a real Elasticsearch 8 node."""

from __future__ import annotations

import http.client
import json
import statistics
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlwatch.elastic.documents import stream_name
from tests.helpers import event, wait_until
from tests.integration import elastic
from tests.integration.elastic import Cluster, request
from tests.integration.servers import SidecarProcess, get_json, get_text

pytestmark = pytest.mark.integration


def start_cluster(base: Path, n: int = 1) -> Cluster:
    try:
        elastic.distribution()
        elastic.java_home()
    except elastic.Unavailable as exc:
        elastic.skip_or_fail(str(exc))
    return Cluster(base, n).start()


@pytest.fixture(scope="module")
def es(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    cluster = start_cluster(elastic.ROOT / "nodes" / uuid.uuid4().hex[:8])
    yield cluster
    cluster.stop()


def namespace() -> str:
    return uuid.uuid4().hex[:10]


def sidecar(tmp_path: Path, url: str, ns: str, **env: str) -> SidecarProcess:
    return SidecarProcess(
        tmp_path / "data", MLWATCH_ELASTICSEARCH_URL=url, MLWATCH_ELASTICSEARCH_NAMESPACE=ns, **env
    )


def post(port: int, records: list[dict[str, Any]]) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(
            "POST", "/v1/events", json.dumps(records).encode(), {"content-type": "application/json"}
        )
        return conn.getresponse().status
    finally:
        conn.close()


def count(url: str, index: str) -> int:
    request(url, "POST", f"/{index}/_refresh")
    return int(request(url, "GET", f"/{index}/_count")["count"])


def duplicate_ids(url: str, index: str) -> list[Any]:
    """Ids present more than once (there must be none)."""
    body = {
        "size": 0,
        "aggs": {"dups": {"terms": {"field": "event.id", "min_doc_count": 2, "size": 10}}},
    }
    return list(request(url, "POST", f"/{index}/_search", body)["aggregations"]["dups"]["buckets"])


def all_ids(url: str, index: str) -> set[str]:
    request(url, "POST", f"/{index}/_refresh")
    ids: set[str] = set()
    body: dict[str, Any] = {"size": 10_000, "_source": False, "sort": [{"event.id": "asc"}]}
    while True:
        hits = request(url, "POST", f"/{index}/_search", body)["hits"]["hits"]
        if not hits:
            return ids
        ids.update(h["_id"] for h in hits)
        body["search_after"] = hits[-1]["sort"]


def test_decorator_to_sidecar_to_elasticsearch(es: Cluster, tmp_path: Path) -> None:
    import mlwatch

    ns = namespace()
    side = sidecar(tmp_path, es.url, ns).start()
    try:
        mlwatch.configure(sidecar_url=side.url, model="credit", version="3", code_version="abc")

        @mlwatch.monitor()
        def predict(row: dict[str, Any]) -> float:
            if row["amount"] < 0:
                raise ValueError("negative amount")
            return float(row["amount"]) * 0.01

        amounts = [10.0 + (i % 97) * 1.25 for i in range(600)]
        for i, amount in enumerate(amounts):
            predict({"amount": amount, "country": ["fr", "de", "us"][i % 3], "n": i})
        with pytest.raises(ValueError, match="negative"):
            predict({"amount": -1.0, "country": "fr", "n": 0})
        mlwatch.flush(10)
        index = stream_name("mlwatch.predictions", ns)
        wait_until(lambda: count(es.url, index) == 601, timeout=60, what="601 documents")

        stored = get_json(side.url + "/v1/models/credit/events?limit=1000")["events"]
        assert len(stored) == 601
        assert all_ids(es.url, index) == {e["event_id"] for e in stored}
        one = stored[5]
        hit = request(
            es.url, "POST", f"/{index}/_search", {"query": {"term": {"event.id": one["event_id"]}}}
        )["hits"]["hits"]
        assert len(hit) == 1 and hit[0]["_id"] == one["event_id"]
        doc = hit[0]["_source"]
        assert doc["@timestamp"] == one["ts"]
        assert doc["service"] == {"name": "credit", "version": "3", "environment": "default"}
        assert doc["mlwatch"]["features"] == one["features"]
        assert doc["mlwatch"]["code_version"] == "abc"
        assert doc["event"]["outcome"] == "success"
        assert doc["http"]["request"]["id"] == one["request_id"]

        failed = request(
            es.url, "POST", f"/{index}/_search", {"query": {"term": {"event.outcome": "failure"}}}
        )["hits"]["hits"]
        assert [h["_source"]["error"]["type"] for h in failed] == ["ValueError"]

        mapping = request(es.url, "GET", f"/{index}/_mapping/field/mlwatch.features.*")
        fields = next(iter(mapping.values()))["mappings"]
        types = {k: next(iter(v["mapping"].values()))["type"] for k, v in fields.items()}
        assert types == {
            "mlwatch.features.amount": "double",
            "mlwatch.features.n": "double",
            "mlwatch.features.country": "keyword",
        }

        aggs = request(
            es.url,
            "POST",
            f"/{index}/_search",
            {
                "size": 0,
                "query": {"term": {"event.outcome": "success"}},
                "aggs": {
                    "amount": {"stats": {"field": "mlwatch.features.amount"}},
                    "country": {"terms": {"field": "mlwatch.features.country"}},
                },
            },
        )["aggregations"]
        assert aggs["amount"]["count"] == 600
        assert aggs["amount"]["avg"] == pytest.approx(statistics.fmean(amounts), rel=1e-12)
        assert aggs["amount"]["max"] == max(amounts)
        assert {b["key"]: b["doc_count"] for b in aggs["country"]["buckets"]} == {
            "fr": 200,
            "de": 200,
            "us": 200,
        }
    finally:
        mlwatch.shutdown(5)
        side.stop()


def test_the_environment_names_the_data_streams_unless_a_namespace_is_set(
    es: Cluster, tmp_path: Path
) -> None:
    env = "qa_" + namespace()
    side = SidecarProcess(
        tmp_path / "data", MLWATCH_ELASTICSEARCH_URL=es.url, MLWATCH_ENVIRONMENT=env
    ).start()
    try:
        records = [event(0), event(1, environment="prod")]  # the second names its own
        assert post(side.port, records) == 202
        index = stream_name("mlwatch.predictions", env)
        wait_until(lambda: count(es.url, index) == 2, timeout=60, what="two documents")
        hits = request(es.url, "POST", f"/{index}/_search", {"sort": [{"event.id": "asc"}]})
        by_request = {
            h["_source"]["http"]["request"]["id"]: h["_source"]["service"]["environment"]
            for h in hits["hits"]["hits"]
        }
        assert by_request == {"r0": env, "r1": "prod"}
    finally:
        side.stop()
    pinned = "pinned" + namespace()
    side = sidecar(tmp_path, es.url, pinned, MLWATCH_ENVIRONMENT=env).start()
    try:
        assert post(side.port, [event(2)]) == 202
        index = stream_name("mlwatch.predictions", pinned)
        wait_until(lambda: count(es.url, index) == 1, timeout=60, what="one pinned document")
    finally:
        side.stop()


def test_mapping_conflict_goes_to_the_dead_letter_stream(es: Cluster, tmp_path: Path) -> None:
    ns = namespace()
    side = sidecar(tmp_path, es.url, ns).start()
    try:
        good = [event(i, features={"amount": float(i)}) for i in range(50)]
        assert post(side.port, good[:10]) == 202
        index = stream_name("mlwatch.predictions", ns)
        wait_until(lambda: count(es.url, index) == 10, timeout=60, what="first documents")
        bad = event(999, features={"amount": "a lot"}, request_id="the-bad-one")
        assert post(side.port, [*good[10:30], bad, *good[30:]]) == 202
        wait_until(lambda: count(es.url, index) == 50, timeout=60, what="the good documents")
        dead_index = stream_name("mlwatch.deadletter", ns)
        wait_until(lambda: count(es.url, dead_index) == 1, timeout=60, what="one dead letter")
        dead = request(es.url, "POST", f"/{dead_index}/_search", {})["hits"]["hits"][0]["_source"]
        assert dead["error"]["type"] in ("document_parsing_exception", "mapper_parsing_exception")
        assert "amount" in dead["error"]["message"]
        assert dead["mlwatch"]["dead_letter"]["data_stream"] == index
        assert dead["mlwatch"]["dead_letter"]["status"] == 400
        original = json.loads(dead["mlwatch"]["dead_letter"]["document"])
        assert original["http"]["request"]["id"] == "the-bad-one"
        # the stream flowed on: a later batch arrives too, and the sink is healthy
        assert post(side.port, [event(i, features={"amount": 1.0}) for i in range(7)]) == 202
        wait_until(lambda: count(es.url, index) == 57, timeout=60, what="later documents")
        metrics = get_text(side.url + "/metrics")
        line = f'mlwatch_sink_dead_letters_total{{data_stream="{index}",sink="elasticsearch"}} 1.0'
        assert line in metrics
        assert get_json(side.url + "/readyz")["sinks"]["elasticsearch"]["healthy"] is True
    finally:
        side.stop()


def test_templates_are_installed_once_and_idempotently(es: Cluster, tmp_path: Path) -> None:
    ns = namespace()
    for _ in range(2):  # a second sidecar start re-installs without error
        side = sidecar(tmp_path, es.url, ns).start()
        try:
            assert post(side.port, [event(1)]) == 202
            wait_until(
                lambda: count(es.url, stream_name("mlwatch.predictions", ns)) >= 1,
                timeout=60,
                what="a document",
            )
        finally:
            side.stop()
    template = request(es.url, "GET", "/_index_template/logs-mlwatch.predictions")
    [tpl] = template["index_templates"]
    assert tpl["index_template"]["data_stream"] is not None
    assert tpl["index_template"]["priority"] == 200
    assert "mlwatch@mappings" in tpl["index_template"]["composed_of"]
    settings = request(es.url, "GET", f"/{stream_name('mlwatch.predictions', ns)}/_settings")
    index_settings = next(iter(settings.values()))["settings"]["index"]
    assert index_settings["auto_expand_replicas"] == "0-1"


class Stream(threading.Thread):
    """Posts ``total`` events in batches with known ids, retrying each batch until 202."""

    def __init__(
        self, port: int, total: int, batch: int = 500, prefix: str = "ev", rate: float | None = None
    ) -> None:
        super().__init__(daemon=True)
        self.port, self.total, self.batch, self.prefix = port, total, batch, prefix
        self.interval = batch / rate if rate else 0.0
        self.acked: list[str] = []
        self.done = threading.Event()

    def run(self) -> None:
        t0 = time.monotonic()
        for n, start in enumerate(range(0, self.total, self.batch)):
            if (pause := t0 + n * self.interval - time.monotonic()) > 0:
                time.sleep(pause)
            ids = [
                f"{self.prefix}-{i:08d}" for i in range(start, min(start + self.batch, self.total))
            ]
            body = [event(int(i[-8:]), event_id=i) for i in ids]
            while True:
                try:
                    if post(self.port, body) == 202:
                        self.acked.extend(ids)
                        break
                except OSError:
                    pass
                self.done.wait(0.05)
        self.done.set()


@pytest.mark.parametrize("mode", ["Message", "Forward", "PackedForward", "CompressedPackedForward"])
def test_forward_protocol_into_elasticsearch(es: Cluster, tmp_path: Path, mode: str) -> None:
    """A forward-protocol peer → the sidecar's forward input (acked) → Elasticsearch.

    Message, PackedForward and CompressedPackedForward come from Node's fluent-logger
    (it waits for each chunk's ack); Forward mode, which it does not send, is a chunk
    built to the protocol specification with msgpack.
    """
    import msgpack

    from tests.helpers import free_port
    from tests.inputs.test_forward import Peer, run_node

    ns = namespace()
    port = free_port()
    side = sidecar(tmp_path, es.url, ns, MLWATCH_FORWARD_PORT=str(port)).start()
    try:
        wait_until(lambda: socket_open(port), what="the forward port")
        records = [event(i, request_id=f"{mode}-{i}", features={"x": float(i)}) for i in range(40)]
        for r in records:  # as a Fluentd pipeline would send them: no ids, no timestamps
            r.pop("event_id", None)
        t0 = 1_763_700_000
        if mode == "Forward":
            peer = Peer(port)
            entries = [
                [msgpack.ExtType(0, (t0 + i).to_bytes(4, "big") + (0).to_bytes(4, "big")), r]
                for i, r in enumerate(records)
            ]
            peer.send(["mlwatch.fwd", entries, {"chunk": "c-1", "size": len(entries)}])
            assert peer.read(timeout=10) == {"ack": "c-1"}
            peer.close()
        else:
            result = run_node(
                port,
                [{"label": "fwd", "time": t0 + i, "record": r} for i, r in enumerate(records)],
                mode=mode,
                key=None,
            )
            assert result == {"acked": 40, "errors": []}
        index = stream_name("mlwatch.predictions", ns)
        wait_until(lambda: count(es.url, index) == 40, timeout=60, what="40 forwarded documents")
        hits = request(
            es.url, "POST", f"/{index}/_search", {"size": 100, "sort": [{"@timestamp": "asc"}]}
        )["hits"]["hits"]
        assert [h["_source"]["http"]["request"]["id"] for h in hits] == [
            f"{mode}-{i}" for i in range(40)
        ]
        assert hits[3]["_source"]["@timestamp"].startswith("2025-11-21T04:40:03")
        assert hits[3]["_source"]["service"]["name"] == "iris"
        assert duplicate_ids(es.url, index) == []
    finally:
        side.stop()


def socket_open(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_drift_windows_from_elasticsearch_aggregations_equal_the_raw_data(
    es: Cluster, tmp_path: Path
) -> None:
    """The scale path: a window's profile from aggregations on the reference's bins holds
    the same counts as one built from the raw events, so the statistics agree."""
    import numpy as np
    from prometheus_client import CollectorRegistry

    from mlwatch.elastic import aggregations
    from mlwatch.elastic.client import make_client
    from mlwatch.scheduler import Jobs
    from mlwatch.scheduler.reference import reference_tag
    from mlwatch.settings import FeatureSpec, ModelSpec, Monitoring, load_config
    from mlwatch.stats.drift import compare_profiles
    from mlwatch.stats.profile import DatasetProfile
    from mlwatch.store import EmbeddedStore
    from mlwatch.wire import format_ts

    rng = np.random.default_rng(5)
    reference = DatasetProfile.from_reference(
        {
            "amount": rng.lognormal(3, 1, 20_000),
            "score": rng.normal(0, 1, 20_000),
            "country": rng.choice(["fr", "de", "us", "it"], 20_000, p=[0.4, 0.3, 0.2, 0.1]),
        },
        {"amount": "numeric", "score": "numeric", "country": "categorical"},
        seed=1,
    )
    ns = namespace()
    side = sidecar(tmp_path, es.url, ns).start()
    t0 = 1_790_000_000
    try:
        events = []
        for i in range(3000):
            features: dict[str, Any] = {
                "amount": float(rng.lognormal(3.6, 1)),
                "score": float(rng.normal(0.05, 1)),
                "country": str(rng.choice(["fr", "de", "us", "es"])),
            }
            if i % 50 == 0:
                features["score"] = None  # missing
            events.append(
                event(
                    i,
                    model="credit",
                    version="2",
                    features=features,
                    ts=format_ts((t0 + i) * 1_000_000_000),
                )
            )
        for k in range(0, len(events), 500):
            assert post(side.port, events[k : k + 500]) == 202
        index = stream_name("mlwatch.predictions", ns)
        wait_until(lambda: count(es.url, index) == 3000, timeout=60, what="3000 documents")
        side.stop()
        window = ((t0 + 100) * 1_000_000, (t0 + 2600) * 1_000_000)

        config = load_config(env={}, elasticsearch_url=es.url, elasticsearch_namespace=ns)
        client = make_client(config)
        assert aggregations.versions(client, ns, "credit", *window) == ["2"]
        from_es = aggregations.window_profile(
            client,
            reference,
            namespace=ns,
            model="credit",
            version="2",
            start_us=window[0],
            end_us=window[1],
            sample=500,
            seed=3,
        )
        store = EmbeddedStore(tmp_path / "data" / "store.db")
        raw = reference.new_window(seed=3)
        raw.update(
            store.feature_columns(
                "credit", ["amount", "score", "country"], since_us=window[0], until_us=window[1]
            )
        )
        assert from_es.rows == raw.rows == 2500
        for name in ("amount", "score"):
            a, b = from_es.columns[name], raw.columns[name]
            assert a.counts.tolist() == b.counts.tolist()
            assert (a.count, a.missing, a.n) == (b.count, b.missing, b.n)
            assert a.mean == pytest.approx(b.mean, rel=1e-12)
            assert a.m2 == pytest.approx(b.m2, rel=1e-9)
            assert (a.min, a.max) == (b.min, b.max)
        assert from_es.columns["score"].missing == 50
        assert from_es.columns["country"].as_counts() == raw.columns["country"].as_counts()
        binned = {"amount": "psi", "score": "js", "country": "chisquare"}
        r_es = compare_profiles(reference, from_es, method=binned).to_dict()
        r_raw = compare_profiles(reference, raw, method=binned).to_dict()
        for f_es, f_raw in zip(r_es["features"], r_raw["features"], strict=True):
            assert f_es["score"] == pytest.approx(f_raw["score"], rel=1e-12, abs=1e-15)
            assert f_es["drifted"] == f_raw["drifted"]
        by_name = {f["name"]: f for f in r_es["features"]}
        assert by_name["amount"]["drifted"] and by_name["country"]["drifted"]
        assert "es" in str(by_name["country"])  # the unseen category, by name

        # the job itself, reading windows from Elasticsearch
        mon = Monitoring(window_s=2500, sliding=True)
        spec = ModelSpec(
            name="credit",
            monitoring=mon,
            features=(
                FeatureSpec("amount"),
                FeatureSpec("score"),
                FeatureSpec("country", "categorical"),
            ),
        )
        store.put_profile(
            "credit", "*", "reference", 0, 0, reference.to_json(), tag=reference_tag(spec)
        )
        for source in ("elasticsearch", "store"):
            cfg = type(config)(**{**config.__dict__, "models": (spec,), "window_source": source})
            jobs = Jobs(cfg, store, CollectorRegistry(), clock=lambda: t0 + 2600)
            report = jobs.drift("credit")["2"]
            jobs.close()
            assert report["rows"] == 2500, source
            assert {f["name"]: f["drifted"] for f in report["features"]} == {
                "amount": True,
                "score": report["features"][1]["drifted"],
                "country": True,
            }
        client.close()
    finally:
        side.stop()


def test_drift_windows_from_elasticsearch_are_the_schedulers_environment_only(
    es: Cluster, tmp_path: Path
) -> None:
    """A namespace that is set may be shared (and a sidecar stores events that name another
    environment in its own stream): the drift job reading Elasticsearch counts only its
    environment's events, as the store's windows do; documents indexed before
    environments (no ``service.environment``) are the default environment's."""
    from prometheus_client import CollectorRegistry

    from mlwatch.elastic import aggregations
    from mlwatch.elastic.client import make_client
    from mlwatch.scheduler import Jobs
    from mlwatch.scheduler.reference import reference_tag
    from mlwatch.settings import FeatureSpec, ModelSpec, Monitoring, load_config
    from mlwatch.stats.profile import DatasetProfile
    from mlwatch.store import EmbeddedStore
    from mlwatch.wire import format_ts

    ns = "shared" + namespace()
    side = sidecar(tmp_path, es.url, ns, MLWATCH_ENVIRONMENT="prod").start()
    t0 = 1_790_000_000
    try:
        events = [
            event(
                i,
                model="credit",
                version="2",
                features={"score": float(i % 7)},
                ts=format_ts((t0 + i) * 1_000_000_000),
            )
            for i in range(300)
        ]  # prod's: the sidecar's environment
        events += [
            event(
                1000 + i,
                model="credit",
                version="2" if i < 150 else "9",
                features={"score": 100.0 + i},
                environment="dev",
                ts=format_ts((t0 + i) * 1_000_000_000),
            )
            for i in range(200)
        ]
        assert post(side.port, events) == 202
        index = stream_name("mlwatch.predictions", ns)
        wait_until(lambda: count(es.url, index) == 500, timeout=60, what="500 documents")
        side.stop()
        legacy = {
            "@timestamp": format_ts(t0 * 1_000_000_000),
            "mlwatch": {"model": "credit", "version": "2", "features": {"score": 1.0}},
        }
        request(es.url, "POST", f"/{index}/_doc?refresh=true", legacy)  # no environment
        window = (t0 * 1_000_000, (t0 + 400) * 1_000_000)
        config = load_config(env={}, elasticsearch_url=es.url, elasticsearch_namespace=ns)
        client = make_client(config)
        try:
            assert aggregations.versions(client, ns, "credit", *window) == ["2", "9"]
            assert aggregations.versions(client, ns, "credit", *window, environment="prod") == ["2"]
            reference = DatasetProfile.from_reference(
                {"score": [float(i % 7) for i in range(1000)]}, {"score": "numeric"}, seed=1
            )
            rows = {
                env: aggregations.window_profile(
                    client,
                    reference,
                    namespace=ns,
                    model="credit",
                    version="2",
                    start_us=window[0],
                    end_us=window[1],
                    sample=0,
                    environment=env,
                ).rows
                for env in ("prod", "dev", "default", None)
            }
            assert rows == {"prod": 300, "dev": 150, "default": 1, None: 451}
        finally:
            client.close()

        store = EmbeddedStore(tmp_path / "data" / "store.db")
        spec = ModelSpec(
            name="credit",
            monitoring=Monitoring(window_s=400, sliding=True),
            features=(FeatureSpec("score"),),
        )
        store.put_profile(
            "credit", "*", "reference", 0, 0, reference.to_json(), tag=reference_tag(spec)
        )
        reports = {}
        for source in ("elasticsearch", "store"):
            cfg = type(config)(
                **{
                    **config.__dict__,
                    "models": (spec,),
                    "window_source": source,
                    "environment": "prod",
                }
            )
            jobs = Jobs(cfg, store, CollectorRegistry(), clock=lambda: t0 + 400)
            reports[source] = jobs.drift("credit")
            jobs.close()
        assert sorted(reports["store"]) == sorted(reports["elasticsearch"]) == ["2"]
        assert reports["elasticsearch"]["2"]["rows"] == reports["store"]["2"]["rows"] == 300
        assert reports["elasticsearch"]["2"]["dataset_drift"] is False
        store.close()
    finally:
        side.stop()


def test_retraining_triggers_are_audited_in_elasticsearch(es: Cluster, tmp_path: Path) -> None:
    """Each trigger is a document (its _id the idempotency key) written again after each
    attempt: the audit is searchable beside the events."""
    from tests.alerting.providers import FakeWebhookReceiver, new_whsec
    from tests.alerting.test_alertmanager import alert, notification

    ns, secret = namespace(), new_whsec()
    (tmp_path / "hook.secret").write_text(secret)
    with FakeWebhookReceiver(secret=secret) as receiver:
        receiver.fail_next(1, 503)
        config = {
            "models": [
                {
                    "name": "churn",
                    "retrain": {"target": "hook", "on": [{"alert": "MlwatchDatasetDrift"}]},
                }
            ],
            "targets": [
                {
                    "name": "hook",
                    "kind": "webhook",
                    "url": receiver.url,
                    "secret_file": str(tmp_path / "hook.secret"),
                }
            ],
            "retrain_backoff_s": 0.2,
        }
        (tmp_path / "m.yaml").write_text(json.dumps(config))
        sc = sidecar(tmp_path, es.url, ns, MLWATCH_CONFIG=str(tmp_path / "m.yaml")).start()
        try:
            conn = http.client.HTTPConnection("127.0.0.1", sc.port, timeout=10)
            conn.request(
                "POST",
                "/v1/alerts/alertmanager",
                json.dumps(notification(alert())),
                {"content-type": "application/json"},
            )
            answer = conn.getresponse()
            answer.read()
            conn.close()
            assert answer.status == 200
            [key] = wait_until(lambda: receiver.effect_keys(), what="delivered")
            index = f"mlwatch-triggers-{ns}"

            def audited() -> dict[str, Any] | None:
                request(es.url, "POST", f"/{index}/_refresh")
                doc = request(es.url, "GET", f"/{index}/_doc/{key}")["_source"]
                return doc if doc["state"] == "delivered" else None

            doc = wait_until(audited, what="the delivered trigger in Elasticsearch")
            assert [a["status"] for a in doc["attempts"]] == [503, 204]
            assert doc["body"]["evidence"]["alert"] == "MlwatchDatasetDrift"
        finally:
            sc.stop()
