"""@monitor: what it records, what it preserves, and that it never hurts the caller."""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pydantic
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

import mlwatch
from mlwatch import wire
from mlwatch.client import decorator, runtime
from mlwatch.client.exporter import Result
from mlwatch.client.memory import MemoryExporter
from mlwatch.logs import failures
from mlwatch.settings import Config, load_config


@pytest.fixture
def sink() -> Iterator[MemoryExporter]:
    """A runtime whose worker exports into memory; batches only on flush()."""
    exporter = MemoryExporter()
    failures.reset()
    runtime.start(
        Config(
            model="m", version="1", code_version="abc", flush_interval_ms=60_000, batch_size=10_000
        ),
        exporter=exporter,
    )
    yield exporter
    assert runtime.shutdown(5.0)


def events(sink: MemoryExporter) -> list[dict[str, Any]]:
    assert mlwatch.flush(5.0)
    return sink.records["events"]


def test_sync_call_is_recorded(sink: MemoryExporter) -> None:
    @mlwatch.monitor(version="2", labels={"region": "eu"}, run_id="run-7")
    def predict(x: dict[str, float]) -> dict[str, Any]:
        return {"label": 1, "proba": np.array([0.25, 0.75])}

    assert predict({"a": 1.0, "b": float("nan")}) == {
        "label": 1,
        "proba": pytest.approx([0.25, 0.75]),
    }
    [ev] = events(sink)
    assert ev["model"] == "m" and ev["version"] == "2" and ev["code_version"] == "abc"
    assert ev["run_id"] == "run-7" and ev["labels"] == {"region": "eu"}
    assert ev["features"] == {"a": 1.0, "b": None}
    assert ev["prediction"] == {"label": 1, "proba": [0.25, 0.75]}
    assert ev["status"] == "ok" and "error" not in ev and ev["latency_ms"] > 0
    assert ev["request_id"] == ev["event_id"] and len(ev["event_id"]) == 36
    assert ev["ts"].endswith("Z") and "environment" not in ev  # the sidecar's
    assert sink.records["models"] == [
        {"model": "m", "version": "2", "code_version": "abc", "run_id": "run-7", "params": {}}
    ]


def test_events_carry_the_environment_setting() -> None:
    exporter = MemoryExporter()
    runtime.start(Config(model="m", environment="qa", flush_interval_ms=60_000), exporter=exporter)
    try:

        @mlwatch.monitor()
        def predict(x: float) -> float:
            return x

        predict(1.0)
        assert [ev["environment"] for ev in events(exporter)] == ["qa"]
    finally:
        assert runtime.shutdown(5.0)


def test_async_call_is_recorded_and_stays_a_coroutine_function(sink: MemoryExporter) -> None:
    @mlwatch.monitor("amodel", prediction="label")
    async def predict(features: dict[str, int]) -> dict[str, int]:
        await asyncio.sleep(0)
        return {"label": features["x"] * 2}

    assert inspect.iscoroutinefunction(predict)
    assert asyncio.run(predict({"x": 4})) == {"label": 8}
    [ev] = events(sink)
    assert (ev["model"], ev["features"], ev["prediction"]) == ("amodel", {"x": 4}, 8)


def test_signature_and_metadata_are_preserved() -> None:
    def predict(x: list[float], *, threshold: float = 0.5) -> int:
        """Docs."""
        return 0

    wrapped = mlwatch.monitor("m")(predict)
    assert inspect.signature(wrapped) == inspect.signature(predict)
    assert (wrapped.__name__, wrapped.__doc__, wrapped.__wrapped__) == ("predict", "Docs.", predict)
    assert not inspect.iscoroutinefunction(wrapped)
    assert mlwatch.monitor(predict).__wrapped__ is predict  # bare @monitor


def test_batch_list_of_dicts(sink: MemoryExporter) -> None:
    @mlwatch.monitor("b", batch=True, request_id="ids")
    def predict(rows: list[dict[str, float]], ids: list[str]) -> list[int]:
        return [int(r["x"] > 1) for r in rows]

    predict([{"x": 1.0}, {"x": 2.0}, {"x": 3.0}], ids=["r1", "r2", "r3"])
    evs = events(sink)
    assert [e["features"] for e in evs] == [{"x": 1.0}, {"x": 2.0}, {"x": 3.0}]
    assert [e["prediction"] for e in evs] == [0, 1, 1]
    assert [e["request_id"] for e in evs] == ["r1", "r2", "r3"]
    assert {e["batch_size"] for e in evs} == {3}
    assert len({e["latency_ms"] for e in evs}) == 1
    assert len({e["event_id"] for e in evs}) == 3


def test_batch_numpy_2d(sink: MemoryExporter) -> None:
    @mlwatch.monitor("b", batch=True, feature_names=["a", "b"], request_id=lambda a, k: "req")
    def predict(x: np.ndarray) -> np.ndarray:
        return x.sum(axis=1)

    predict(np.array([[1.0, 2.0], [3.0, np.nan]]))
    evs = events(sink)
    assert [e["features"] for e in evs] == [{"a": 1.0, "b": 2.0}, {"a": 3.0, "b": None}]
    assert [e["prediction"] for e in evs] == [3.0, None]
    assert [e["request_id"] for e in evs] == ["req:0", "req:1"]


def test_batch_dataframe_with_probabilities(sink: MemoryExporter) -> None:
    @mlwatch.monitor("b", batch=True)
    def predict(df: pd.DataFrame) -> np.ndarray:
        return np.column_stack([1 - df["p"].to_numpy(), df["p"].to_numpy()])

    predict(pd.DataFrame({"p": [0.25, 0.5], "city": ["a", "b"]}))
    evs = events(sink)
    assert [e["features"] for e in evs] == [{"p": 0.25, "city": "a"}, {"p": 0.5, "city": "b"}]
    assert [e["prediction"] for e in evs] == [[0.75, 0.25], [0.5, 0.5]]


def test_the_models_exception_passes_unchanged(sink: MemoryExporter) -> None:
    boom = ValueError("bad input")

    @mlwatch.monitor("m")
    def predict(x: int) -> int:
        raise boom

    with pytest.raises(ValueError, match="bad input") as info:
        predict(1)
    assert info.value is boom
    assert info.traceback[-1].name == "predict"  # the raising frame is still the model's

    @mlwatch.monitor("m")
    async def apredict(x: int) -> int:
        raise KeyError("k")

    with pytest.raises(KeyError, match="k"):
        asyncio.run(apredict(2))
    evs = events(sink)
    assert [(e["status"], e["error"], e["features"]) for e in evs] == [
        ("error", "ValueError", {"f0": 1}),
        ("error", "KeyError", {"f0": 2}),
    ]
    assert all(e["prediction"] is None for e in evs)


def test_exceptions_that_are_not_errors_are_not_recorded(sink: MemoryExporter) -> None:
    @mlwatch.monitor("m")
    def predict(x: int) -> int:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        predict(1)
    assert events(sink) == []


def test_injected_monitoring_failures_never_reach_the_caller(
    sink: MemoryExporter, caplog: pytest.LogCaptureFixture
) -> None:
    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("cannot print")

    def bad_features(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        raise RuntimeError("extractor broke")

    @mlwatch.monitor("m", features=bad_features, request_id=lambda a, k: 1 / 0)
    def predict_a(x: int) -> int:
        return x

    @mlwatch.monitor("m", prediction=lambda r: r["missing"])
    def predict_b(x: int) -> dict[str, int]:
        return {"y": x}

    @mlwatch.monitor("m")
    def predict_c(x: int) -> Unprintable:
        return Unprintable()

    with caplog.at_level(logging.WARNING, logger="mlwatch"):
        assert predict_a(1) == 1
        assert predict_b(2) == {"y": 2}
        assert isinstance(predict_c(3), Unprintable)
        evs = events(sink)
    assert [(e["features"], e["prediction"]) for e in evs] == [
        (None, 1),
        ({"f0": 2}, None),
        ({"f0": 3}, None),
    ]
    assert evs[0]["request_id"] == evs[0]["event_id"]
    text = caplog.text
    assert "extractor broke" in text and "ZeroDivisionError" in text and "missing" in text


def test_a_broken_queue_or_shipper_never_reaches_the_caller(
    sink: MemoryExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    @mlwatch.monitor("m")
    def predict(x: int) -> int:
        return x + 1

    class BrokenQueue:
        def __len__(self) -> int:
            return 0

        def append(self, item: Any) -> None:
            raise MemoryError("queue broke")

    shipper = runtime._current.shipper  # type: ignore[union-attr]
    assert shipper is not None
    monkeypatch.setattr(shipper, "queue", BrokenQueue())
    assert predict(1) == 2

    def broken_record(*args: Any) -> None:
        raise RuntimeError("shipper broke")

    monkeypatch.setattr(shipper, "record", broken_record)
    assert predict(2) == 3
    monkeypatch.setattr(decorator, "_random", lambda: 1 / 0)  # even sampling may fail
    assert predict(3) == 4


def test_exporter_failures_stay_on_the_worker() -> None:
    class Exploding(MemoryExporter):
        def export(self, batch: Any) -> Result:
            raise OSError("disk on fire")

    runtime.start(Config(model="m", flush_interval_ms=60_000), exporter=Exploding())

    @mlwatch.monitor()
    def predict(x: int) -> int:
        return x

    assert [predict(i) for i in range(5)] == [0, 1, 2, 3, 4]
    assert not mlwatch.flush(5.0)  # handled in time, but nothing was delivered
    shipper = runtime._current.shipper  # type: ignore[union-attr]
    assert shipper is not None
    assert shipper.drops.snapshot() == {(("m", "unknown"), "send_failed"): 5}
    assert not runtime.shutdown(5.0)  # its registration, retried until now, is lost too


def test_dict_inputs_are_copied_before_the_caller_can_mutate_them(sink: MemoryExporter) -> None:
    @mlwatch.monitor("m")
    def predict(x: dict[str, int]) -> int:
        return 0

    data = {"a": 1}
    predict(data)
    data["a"] = 999
    data["b"] = 2
    assert events(sink)[0]["features"] == {"a": 1}


def test_inputs_by_parameter_name_and_methods(sink: MemoryExporter) -> None:
    class Model:
        @mlwatch.monitor("m")
        def predict(self, x: list[float]) -> float:
            return sum(x)

    @mlwatch.monitor("m", features="row", request_id="rid")
    def score(model_name: str, row: dict[str, int], *, rid: str) -> int:
        return 1

    Model().predict([1.0, 2.0])
    score("x", {"k": 5}, rid="R-1")
    score("x", row={"k": 6}, rid="R-2")
    evs = events(sink)
    assert [e["features"] for e in evs] == [{"f0": 1.0, "f1": 2.0}, {"k": 5}, {"k": 6}]
    assert [e["request_id"] for e in evs][1:] == ["R-1", "R-2"]


def test_capture_off_records_counts_and_latency_only(sink: MemoryExporter) -> None:
    @mlwatch.monitor("m", capture=False)
    def predict(x: dict[str, int]) -> int:
        return 1

    for i in range(3):
        predict({"a": i})
    evs = events(sink)
    assert len(evs) == 3
    assert all(
        e["features"] is None and e["prediction"] is None and e["latency_ms"] >= 0 for e in evs
    )


def test_sampling_keeps_counts_exact_and_feature_share_near_rate(
    sink: MemoryExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(decorator, "_random", random.Random(1234).random)

    @mlwatch.monitor("m", sample_rate=0.3, request_id="rid")
    def predict(x: dict[str, int], rid: str) -> dict[str, int]:
        return {"label": x["i"] % 3}

    n = 4000
    for i in range(n):
        predict({"i": i}, rid=f"r{i}")
    evs = events(sink)
    assert len(evs) == n
    kept = sum(e["features"] is not None for e in evs)
    assert abs(kept / n - 0.3) < 0.03
    # sampling drops the features only: predicted-class counts stay exact
    assert [e["prediction"] for e in evs] == [{"label": i % 3} for i in range(n)]
    assert [e["request_id"] for e in evs] == [f"r{i}" for i in range(n)]


def test_sampled_out_batch_keeps_its_predictions(sink: MemoryExporter) -> None:
    @mlwatch.monitor("b", batch=True, sample_rate=0.0)
    def predict(rows: list[dict[str, int]]) -> list[int]:
        return [r["x"] * 2 for r in rows]

    predict([{"x": 1}, {"x": 2}])
    evs = events(sink)
    assert [(e["features"], e["prediction"]) for e in evs] == [(None, 2), (None, 4)]


def test_config_sample_rate_applies_when_the_monitor_has_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    exporter = MemoryExporter()
    runtime.start(load_config(env={}, model="m", sample_rate=0.0), exporter=exporter)

    @mlwatch.monitor()
    def predict(x: int) -> int:
        return x

    predict(1)
    assert events(exporter)[0]["features"] is None
    assert runtime.shutdown(5.0)


@pytest.mark.parametrize("settings", [{"sidecar_url": "off"}, {"enabled": False}])
def test_off_means_a_plain_call(settings: dict[str, Any]) -> None:
    runtime.start(Config(model="m", **settings), exporter=MemoryExporter())
    before = threading.active_count()

    @mlwatch.monitor()
    def predict(x: int) -> int:
        return x * 2

    assert predict(4) == 8
    assert runtime._current is not None and runtime._current.sink is None
    assert threading.active_count() == before


def test_after_shutdown_calls_still_work(sink: MemoryExporter) -> None:
    @mlwatch.monitor("m")
    def predict(x: int) -> int:
        return x

    predict(1)
    assert runtime.shutdown(5.0) and runtime.shutdown(5.0)  # idempotent
    assert predict(2) == 2
    assert len(sink.records["events"]) == 1


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"model": "bad name!"}, "model"),
        ({"sample_rate": 1.5}, "sample_rate"),
        ({"labels": {"a": 1}}, "labels"),
        ({"features": "nope"}, "features"),
        ({"request_id": "nope"}, "request_id"),
        ({"feature_names": "abc"}, "feature_names"),
        ({"version": "1\n"}, "version"),
        ({"run_id": 12345}, "run_id"),
        ({"run_id": "run\x00"}, "run_id"),
        ({"run_id": "r" * 129}, "run_id"),
        ({"params": [("lr", 0.1)]}, "params"),
        ({"params": "lr=0.1"}, "params"),
        ({"labels": {1: "eu"}}, "labels"),
        ({"labels": {"9region": "eu"}}, "labels"),
        ({"labels": {"region-code": "eu"}}, "labels"),
        ({"labels": {"r" * 65: "eu"}}, "labels"),
        ({"labels": {"region": "e\tu"}}, "labels"),
    ],
)
def test_bad_monitor_arguments_raise_at_decoration(kwargs: dict[str, Any], key: str) -> None:
    with pytest.raises(mlwatch.ConfigError) as info:
        mlwatch.monitor(**kwargs)(lambda x: x)
    assert info.value.key == key


class Item(pydantic.BaseModel):
    sepal_length: float
    species_hint: str = "a"


def _app() -> FastAPI:
    app = FastAPI()

    @app.get("/predict")
    @mlwatch.monitor("api", request_id="request_id")
    def predict(x: float, request_id: str = "none") -> dict[str, float]:
        return {"y": x * 2}

    @app.post("/score")
    @mlwatch.monitor("api", prediction="score")
    async def score(item: Item) -> dict[str, float]:
        return {"score": item.sepal_length / 10}

    return app


def test_fastapi_still_validates_decorated_endpoints(sink: MemoryExporter) -> None:
    with TestClient(_app()) as client:
        assert client.get("/predict", params={"x": "1.5", "request_id": "q1"}).json() == {"y": 3.0}
        assert client.get("/predict", params={"x": "abc"}).status_code == 422
        assert client.get("/predict").status_code == 422
        assert client.post("/score", json={"sepal_length": 5.0}).json() == {"score": 0.5}
        assert client.post("/score", json={"sepal_length": "long"}).status_code == 422
        assert "Item" in str(client.get("/openapi.json").json()["components"]["schemas"])
    evs = events(sink)
    assert [
        (e["request_id"] if e["request_id"] == "q1" else None, e["features"], e["prediction"])
        for e in evs
    ] == [("q1", {"f0": 1.5}, {"y": 3.0}), (None, {"sepal_length": 5.0, "species_hint": "a"}, 0.5)]


def test_model_spec_says_where_prediction_and_label_live(tmp_path: Any) -> None:
    config = tmp_path / "mlwatch.yaml"
    config.write_text(
        "models:\n  - name: churn\n    prediction_field: out.label\n"
        "    label_field: truth.churned\n"
    )
    sink = MemoryExporter()
    runtime.start(load_config(config, env={}, model="churn"), exporter=sink)

    @mlwatch.monitor(request_id="rid")
    def predict(x: dict[str, float], rid: str) -> dict[str, Any]:
        return {"out": {"label": 1, "score": 0.93}}

    predict({"a": 1.0}, rid="r1")
    mlwatch.log_feedback("r1", {"truth": {"churned": 0}, "source": "crm"})
    with pytest.raises(mlwatch.ValidationError, match=r"label_field 'truth\.churned'"):
        mlwatch.log_feedback("r1", {"other": 1})
    assert runtime.flush()
    assert sink.records["events"][0]["prediction"] == 1
    assert sink.records["feedback"][0]["label"] == 0
    runtime.shutdown()


def test_good_monitor_arguments_are_accepted(sink: MemoryExporter) -> None:
    @mlwatch.monitor(
        "m", labels={"region": "eu", "_Tier2": "gold", "r" * 64: ""}, run_id="", params={"lr": 0.1}
    )
    def predict(x: int) -> int:
        return x

    predict(1)
    [ev] = events(sink)
    assert ev["labels"] == {"region": "eu", "_Tier2": "gold", "r" * 64: ""}
    assert "run_id" not in ev  # an empty run id means none


def test_values_orjson_cannot_encode_are_converted(sink: MemoryExporter) -> None:
    import orjson

    @mlwatch.monitor("m")
    def predict(x: Any) -> Any:
        return x["out"]

    predict({"out": 10**20, "h": 2**70, "neg": -(2**64)})
    predict({"out": [2**64, 10**400], "h": np.uint64(2**64 - 1)})
    evs = events(sink)
    assert evs[0]["prediction"] == 1e20
    assert evs[0]["features"]["h"] == float(2**70) and evs[0]["features"]["neg"] == -float(2**64)
    assert evs[1]["prediction"][0] == float(2**64)
    assert evs[1]["prediction"][1].startswith("1000")  # too large even for a float
    assert evs[1]["features"]["h"] == float(2**64 - 1)
    orjson.dumps(evs)
    for i, ev in enumerate(evs, 1):
        wire.validate_event(ev, line=i)


def test_ids_and_error_names_never_carry_control_characters(sink: MemoryExporter) -> None:
    bad = type("BadError", (Exception,), {})
    bad.__name__ = "Bad\nError"  # type() refuses NUL, but a name can be set to anything

    @mlwatch.monitor("m", request_id="rid")
    def predict(x: int, rid: str) -> int:
        if x:
            raise bad()
        return x

    predict(0, rid="req\x00-1\n")
    with pytest.raises(bad):
        predict(1, rid="r2")
    mlwatch.log_feedback("req\x00-1\n", 1)
    evs = events(sink)
    assert evs[0]["request_id"] == "req\\x00-1\\n"
    assert evs[1]["error"] == "Bad\\nError"
    assert sink.records["feedback"][0]["request_id"] == evs[0]["request_id"]  # still joins
    for i, ev in enumerate(evs, 1):
        wire.validate_event(ev, line=i)


def test_deep_predictions_and_params_are_cut_at_the_wire_depth(sink: MemoryExporter) -> None:
    def nest(levels: int) -> Any:
        value: Any = 1
        for _ in range(levels):
            value = [value]
        return value

    @mlwatch.monitor("deep", params={"tree": nest(wire.MAX_DEPTH + 5)})
    def predict(x: int) -> Any:
        return nest(x)

    predict(wire.MAX_DEPTH)
    predict(wire.MAX_DEPTH + 1)
    evs = events(sink)
    assert evs[0]["prediction"] == nest(wire.MAX_DEPTH)  # 32 levels are kept as they are
    inner = evs[1]["prediction"]
    for _ in range(wire.MAX_DEPTH):
        inner = inner[0]
    assert inner == "[1]"  # the 33rd level is its string form
    for i, ev in enumerate(evs, 1):
        wire.validate_event(ev, line=i)
    wire.validate_registration(sink.records["models"][0])


def test_the_bound_counts_rows_of_batch_calls() -> None:
    exporter = MemoryExporter()
    runtime.start(
        Config(
            model="m",
            version="1",
            code_version="c",
            flush_interval_ms=60_000,
            batch_size=10_000,
            queue_size=100,
        ),
        exporter=exporter,
    )

    @mlwatch.monitor("b", batch=True)
    def predict_batch(rows: list[int]) -> list[int]:
        return rows

    @mlwatch.monitor("s")
    def predict(x: int) -> int:
        return x

    shipper = runtime._current.shipper  # type: ignore[union-attr]
    assert shipper is not None
    predict_batch(list(range(60)))  # 60 slots
    predict_batch(list(range(60)))  # would make 120: dropped whole
    predict_batch(list(range(150)))  # larger than the bound by itself: dropped
    for i in range(50):  # 40 fit
        predict(i)
    assert (len(shipper.queue), shipper.extra_rows) == (41, 59)
    assert not mlwatch.flush(5.0)  # 210 rows were dropped
    assert shipper.extra_rows == 0
    assert len(exporter.records["events"]) == 100
    [report] = exporter.dropped  # sent with the events
    assert {(d["model"], d["reason"], d["count"]) for d in report} == {
        ("b", "queue_full", 210),
        ("s", "queue_full", 10),
    }
    predict_batch(list(range(100)))  # the room came back
    assert mlwatch.flush(5.0)
    assert len(exporter.records["events"]) == 200
    assert runtime.shutdown(5.0)
