"""A restarted sidecar's ``/metrics`` shows what its store holds: prediction counts by
outcome, predicted classes, feedback and model info start from the store, not from zero;
the status shows the configured task."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from prometheus_client import CollectorRegistry

from mlwatch.settings import ModelSpec
from mlwatch.sidecar.service import Sidecar
from mlwatch.wire import validate_event, validate_feedback, validate_registration


def fill_store(sc: Sidecar) -> None:
    events = [
        validate_event(
            {
                "model": "churn",
                "version": "2",
                "latency_ms": 1,
                "request_id": f"r{i}",
                "status": "error" if i % 10 == 0 else "ok",
                "prediction": None if i % 10 == 0 else ("stay", "leave", True)[i % 3],
                "code_version": "abc",
            }
        )
        for i in range(30)
    ]
    sc.store.insert_events(events)
    sc.store.insert_feedback(
        [validate_feedback({"model": "churn", "request_id": f"r{i}", "label": 1}) for i in range(7)]
    )
    sc.store.register_model(
        validate_registration({"model": "churn", "version": "2", "run_id": "run9"})
    )


def test_a_restart_starts_the_counters_from_the_store(sidecar_config: Callable[..., Any]) -> None:
    config = sidecar_config()
    first = Sidecar(config, registry=CollectorRegistry())
    fill_store(first)
    first.stop()
    registry = CollectorRegistry()
    again = Sidecar(config, registry=registry)
    again.start()
    try:
        value = registry.get_sample_value
        labels = {"model": "churn", "environment": "default", "version": "2"}
        assert value("mlwatch_predictions_total", labels | {"status": "ok"}) == 27
        assert value("mlwatch_predictions_total", labels | {"status": "error"}) == 3
        counts = {
            c: value("mlwatch_predicted_class_total", labels | {"class": c})
            for c in ("stay", "leave", "true")
        }
        assert counts == {"stay": 9, "leave": 9, "true": 9}
        assert value("mlwatch_feedback_total", {"model": "churn", "environment": "default"}) == 7
        assert value("mlwatch_model_info", labels | {"code_version": "abc", "run_id": ""}) == 1
        assert value("mlwatch_model_info", labels | {"code_version": "", "run_id": "run9"}) == 1
    finally:
        again.stop()


def test_a_regression_models_numbers_are_not_restored_as_classes(
    sidecar_config: Callable[..., Any],
) -> None:
    config = replace(sidecar_config(), models=(ModelSpec(name="price", task="regression"),))
    first = Sidecar(config, registry=CollectorRegistry())
    first.store.insert_events(
        [validate_event({"model": "price", "latency_ms": 1, "prediction": 3}) for _ in range(4)]
    )
    first.stop()
    registry = CollectorRegistry()
    again = Sidecar(config, registry=registry)
    again.start()
    try:
        assert (
            registry.get_sample_value(
                "mlwatch_predicted_class_total",
                {"model": "price", "environment": "default", "version": "unknown", "class": "3"},
            )
            is None
        )
        assert (
            registry.get_sample_value(
                "mlwatch_predictions_total",
                {"model": "price", "environment": "default", "version": "unknown", "status": "ok"},
            )
            == 4
        )
    finally:
        again.stop()


def test_the_status_shows_the_configured_task(sidecar_config: Callable[..., Any]) -> None:
    config = replace(sidecar_config(), models=(ModelSpec(name="price", task="regression"),))
    sc = Sidecar(config, registry=CollectorRegistry())
    try:
        sc.store.register_model(validate_registration({"model": "price", "version": "1"}))
        status = sc.status("price")
        assert status["task"] == "regression"
        assert [v["task"] for v in status["versions"]] == ["regression"]
    finally:
        sc.stop()


def test_a_large_store_starts_from_zero_and_says_so(
    sidecar_config: Callable[..., Any], monkeypatch: Any, caplog: Any
) -> None:
    import logging

    from mlwatch.sidecar import service

    config = sidecar_config()
    first = Sidecar(config, registry=CollectorRegistry())
    fill_store(first)
    first.stop()
    monkeypatch.setattr(service, "RESTORE_MAX_EVENTS", 10)
    registry = CollectorRegistry()
    again = Sidecar(config, registry=registry)
    with caplog.at_level(logging.INFO, logger="mlwatch.sidecar"):
        again.start()
    try:
        labels = {"model": "churn", "environment": "default", "version": "2", "status": "ok"}
        assert registry.get_sample_value("mlwatch_predictions_total", labels) is None
        assert "counters start at zero: the store holds 30 events" in caplog.text
    finally:
        again.stop()


def test_records_still_in_the_spool_at_restart_are_counted(
    sidecar_config: Callable[..., Any],
) -> None:
    from mlwatch.store.payloads import EVENTS, FEEDBACK

    config = sidecar_config()
    first = Sidecar(config, registry=CollectorRegistry())  # never started: nothing stored
    first.accept(EVENTS, [{"model": "m", "latency_ms": 1, "prediction": "a"} for _ in range(10)])
    first.accept(FEEDBACK, [{"model": "m", "request_id": f"r{i}", "label": 1} for i in range(3)])
    first.stop()
    registry = CollectorRegistry()
    again = Sidecar(config, registry=registry)
    again.start()  # the store sink delivers the spool first, then the counters are read
    try:
        labels = {"model": "m", "environment": "default", "version": "unknown", "status": "ok"}
        assert registry.get_sample_value("mlwatch_predictions_total", labels) == 10
        assert (
            registry.get_sample_value(
                "mlwatch_feedback_total", {"model": "m", "environment": "default"}
            )
            == 3
        )
    finally:
        again.stop()


def test_a_task_registered_as_regression_is_restored_as_regression(
    sidecar_config: Callable[..., Any],
) -> None:
    config = sidecar_config()
    first = Sidecar(config, registry=CollectorRegistry())
    first.store.register_model(validate_registration({"model": "p", "task": "regression"}))
    first.store.insert_events(
        [validate_event({"model": "p", "latency_ms": 1, "prediction": i % 7}) for i in range(20)]
    )
    first.stop()
    registry = CollectorRegistry()
    again = Sidecar(config, registry=registry)
    again.start()
    try:
        labels = {"model": "p", "environment": "default", "version": "unknown", "class": "0"}
        assert registry.get_sample_value("mlwatch_predicted_class_total", labels) is None
    finally:
        again.stop()


def test_a_restart_in_a_new_environment_leaves_the_old_ones_counts_out(
    sidecar_config: Callable[..., Any],
) -> None:
    """A deployment that sets its environment (the overlays' dev and prod) after events
    were stored as 'default': restored, 'default's counters would never move again, and
    MlwatchNoTraffic (by model and environment) would fire for 'default' until retention
    purged those events. The counters start from the sidecar's own environment's rows."""
    config = sidecar_config()
    first = Sidecar(config, registry=CollectorRegistry())
    fill_store(first)
    first.store.insert_events(
        [
            validate_event(
                {"model": "churn", "version": "2", "latency_ms": 1, "request_id": f"p{i}"}
                | {"environment": "prod", "prediction": "stay"}
            )
            for i in range(4)
        ]
    )
    first.stop()
    registry = CollectorRegistry()
    again = Sidecar(replace(config, environment="prod"), registry=registry)
    again.start()
    try:
        value = registry.get_sample_value
        old = {"model": "churn", "environment": "default", "version": "2"}
        assert value("mlwatch_predictions_total", old | {"status": "ok"}) is None
        assert value("mlwatch_predicted_class_total", old | {"class": "stay"}) is None
        assert value("mlwatch_model_info", old | {"code_version": "abc", "run_id": ""}) is None
        prod = old | {"environment": "prod"}
        assert value("mlwatch_predictions_total", prod | {"status": "ok"}) == 4
        assert value("mlwatch_predicted_class_total", prod | {"class": "stay"}) == 4
        assert value("mlwatch_model_info", prod | {"code_version": "", "run_id": "run9"}) == 1
        assert value("mlwatch_feedback_total", {"model": "churn", "environment": "prod"}) == 7
        assert again.store.count_events("churn", environment="default") == 30  # still stored
    finally:
        again.stop()
