"""Retraining triggers: the policy (cooldown, hysteresis, daily bound, dry run), the
outbox (recorded before sent, resumed after a restart, one effect per key), retries
with backoff until delivered, refused or past the deadline, and the scheduler's own
results as causes — on a real store with an injected clock."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from mlwatch.alerting.retrain import Retrainer
from mlwatch.alerting.trigger import Attempt, Outcome, Trigger
from mlwatch.errors import ConfigError, RetrainError
from mlwatch.settings import Config, ModelSpec
from mlwatch.settings.retrain import Condition, RetrainSpec
from mlwatch.store import EmbeddedStore
from tests.alerting.fakes import ScriptedTarget

T0 = 1_790_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def config(**retrain: Any) -> Config:
    policy = RetrainSpec(
        target="ci",
        on=(
            Condition("alert", alert="MlwatchDatasetDrift"),
            Condition("drift_share", drift_share=0.3),
            Condition("kpi", kpi="accuracy", below=0.8, windows=2, min_samples=50),
        ),
    )
    spec = ModelSpec(name="churn", retrain=replace(policy, **retrain))
    return Config(models=(spec,), retrain_deadline_s=3600)


@pytest.fixture
def store(tmp_path: Path) -> EmbeddedStore:
    return EmbeddedStore(tmp_path / "store.db")


def retrainer(
    store: EmbeddedStore, target: ScriptedTarget, clock: Clock, **retrain: Any
) -> tuple[Retrainer, CollectorRegistry]:
    registry = CollectorRegistry()
    r = Retrainer(
        config(**retrain), store, registry, targets={"ci": target}, clock=clock, rng=lambda: 0.0
    )
    return r, registry


def fire(r: Retrainer, cause: str = "alert:MlwatchDatasetDrift") -> dict[str, Any]:
    return r.request("churn", cause, "drift", {"alert": "MlwatchDatasetDrift"})


def test_a_storm_for_one_cause_is_one_trigger(store: EmbeddedStore) -> None:
    target, clock = ScriptedTarget(), Clock()
    r, registry = retrainer(store, target, clock)
    done = [fire(r) for _ in range(100)]
    assert sum("key" in d for d in done) == 1
    assert sum("suppressed" in d for d in done) == 99
    assert r.send_due() == 1 and r.send_due() == 0
    assert len(target.sent) == 1
    [trig] = store.triggers("churn")
    assert trig["state"] == "delivered" and [a["outcome"] for a in trig["attempts"]] == [
        "delivered"
    ]

    def ended(result: str) -> float | None:
        labels = {"model": "churn", "target": "ci", "result": result}
        return registry.get_sample_value("mlwatch_retrain_triggers_total", labels)

    assert ended("delivered") == 1 and ended("suppressed") == 99


def test_a_cause_triggers_again_once_cleared_or_after_its_cooldown(
    store: EmbeddedStore,
) -> None:
    clock = Clock()
    r, _ = retrainer(store, ScriptedTarget(), clock, cooldown_s=3600.0)
    assert "key" in fire(r)
    clock.now += 60
    assert "still active" in fire(r)["suppressed"]
    r.clear("churn", "alert:MlwatchDatasetDrift")  # resolved
    assert "key" in fire(r)  # fired again after it cleared
    clock.now += 3601
    assert "key" in fire(r)  # still active, but the cooldown has passed


def test_at_most_max_per_day(store: EmbeddedStore) -> None:
    clock = Clock()
    r, _ = retrainer(store, ScriptedTarget(), clock, cooldown_s=1.0, max_per_day=2)
    assert "key" in fire(r)
    clock.now += 2
    assert "key" in fire(r, "drift_share")
    clock.now += 2
    assert fire(r)["suppressed"] == "max_per_day (2) reached"
    clock.now += 86_400
    assert "key" in fire(r)


def test_a_dry_run_is_recorded_never_sent(store: EmbeddedStore) -> None:
    target = ScriptedTarget()
    r, registry = retrainer(store, target, Clock(), dry_run=True)
    assert fire(r)["state"] == "dry_run"
    assert r.send_due() == 0 and target.sent == []
    assert store.triggers("churn")[0]["state"] == "dry_run"
    labels = {"model": "churn", "target": "ci", "result": "dry_run"}
    assert registry.get_sample_value("mlwatch_retrain_triggers_total", labels) == 1


def test_retries_follow_retry_after_then_backoff_until_delivered(store: EmbeddedStore) -> None:
    clock = Clock()
    target = ScriptedTarget(
        script=[
            Attempt(Outcome.RETRY, 429, "slow down", retry_after_s=30.0),
            Attempt(Outcome.RETRY, 503, "unavailable"),
        ]
    )
    r, _ = retrainer(store, target, clock)
    fire(r)
    assert r.send_due() == 1
    assert r.send_due() == 0  # Retry-After: not before 30 s
    clock.now += 30
    assert r.send_due() == 1  # 503: backoff of the second attempt (5 s * 2 * 0.5 jitter)
    clock.now += 4
    assert r.send_due() == 0
    clock.now += 2
    assert r.send_due() == 1
    [trig] = store.triggers("churn")
    assert trig["state"] == "delivered"
    assert [a["status"] for a in trig["attempts"]] == [429, 503, 204]
    assert len({t.key for t in target.sent}) == 1  # one idempotency key for every attempt


def test_a_refusal_is_not_retried_and_keeps_the_providers_words(store: EmbeddedStore) -> None:
    target = ScriptedTarget(script=[Attempt(Outcome.REJECTED, 422, "Unexpected inputs provided")])
    r, registry = retrainer(store, target, Clock())
    fire(r)
    r.send_due()
    [trig] = store.triggers("churn")
    assert trig["state"] == "rejected" and trig["detail"] == "Unexpected inputs provided"
    assert r.send_due() == 0 and len(target.sent) == 1
    labels = {"model": "churn", "target": "ci", "result": "rejected"}
    assert registry.get_sample_value("mlwatch_retrain_triggers_total", labels) == 1


def test_past_its_deadline_a_trigger_is_given_up(store: EmbeddedStore) -> None:
    clock = Clock()
    target = ScriptedTarget(script=[Attempt(Outcome.RETRY, None, "refused")] * 100)
    r, _ = retrainer(store, target, clock)
    fire(r)
    for _ in range(100):
        r.send_due()
        clock.now += 601  # past every backoff
    [trig] = store.triggers("churn")
    assert trig["state"] == "failed"
    assert len(trig["attempts"]) < 20  # the deadline (1 h) ended it


def test_a_restart_resumes_pending_triggers_with_the_same_key(store: EmbeddedStore) -> None:
    clock = Clock()
    first = ScriptedTarget(script=[Attempt(Outcome.RETRY, None, "connection refused")])
    r, _ = retrainer(store, first, clock)
    fire(r)
    r.send_due()  # failed once: pending, as when the process is killed now
    second = ScriptedTarget()
    again, _ = retrainer(store, second, clock)  # a new process on the same store
    clock.now += 600
    assert again.send_due() == 1
    assert [t.key for t in second.sent] == [first.sent[0].key]
    assert store.triggers("churn")[0]["state"] == "delivered"


def test_a_trigger_carries_identity_evidence_and_a_status_link(store: EmbeddedStore) -> None:
    from mlwatch.wire import validate_registration

    store.register_model(
        validate_registration(
            {"model": "churn", "version": "7", "code_version": "abc1234", "run_id": "r42"}
        )
    )
    target = ScriptedTarget()
    r, _ = retrainer(store, target, Clock())
    fire(r)
    r.send_due()
    [sent] = target.sent
    payload = sent.payload()
    assert (payload["version"], payload["code_version"], payload["run_id"]) == (
        "7",
        "abc1234",
        "r42",
    )
    assert payload["status_url"] == "http://127.0.0.1:8765/v1/models/churn/status"
    assert payload["evidence"] == {
        "alert": "MlwatchDatasetDrift",
        "served": {"run_id": "r42", "params": {}},
    }
    assert payload["created"] == "2026-09-21T14:13:20.000000Z"


def test_a_trigger_carries_the_served_versions_run_and_parameters(
    store: EmbeddedStore,
) -> None:
    from mlwatch.wire import validate_registration

    params = {"lr": "0.1", "depth": "6", "mlflow": {"uri": "models:/churn@champion"}}
    for version, run_id, p in (("7", "r7", params), ("8", "r8", {"lr": "0.5"})):
        store.register_model(
            validate_registration(
                {"model": "churn", "version": version, "run_id": run_id, "params": p}
            ),
            now_us=int(T0 * 1e6) + int(version),
        )
    target = ScriptedTarget()
    r, _ = retrainer(store, target, Clock())
    r.check_drift("churn", "7", {"drift_share": 0.5, "features": []}, (0, 3_600_000_000))
    r.send_due()
    [sent] = target.sent
    payload = sent.payload()
    assert (payload["version"], payload["run_id"]) == ("7", "r7")  # the drifting version's
    assert payload["evidence"]["served"] == {"run_id": "r7", "params": params}


def test_the_served_parameters_are_bounded_with_a_marker(store: EmbeddedStore) -> None:
    import json

    from mlwatch.alerting.retrain import MAX_PARAMS_BYTES
    from mlwatch.wire import validate_registration

    params = {f"p{i:03d}": "v" * 90 for i in range(200)}  # about 20 KiB of JSON
    store.register_model(
        validate_registration({"model": "churn", "version": "7", "run_id": "r7", "params": params})
    )
    target = ScriptedTarget()
    r, _ = retrainer(store, target, Clock())
    fire(r)
    r.send_due()
    served = target.sent[0].payload()["evidence"]["served"]
    kept = served["params"]
    assert len(json.dumps(kept).encode()) <= MAX_PARAMS_BYTES
    cut = kept.pop("mlwatch.cut")
    assert 50 < len(kept) < 200
    assert cut == f"{200 - len(kept)} of 200 parameters left out (over 8192 bytes)"
    assert kept == {k: params[k] for k in sorted(params)[: len(kept)]}  # whole, in key order
    assert served["run_id"] == "r7"


def test_drift_results_trigger_and_clear(store: EmbeddedStore) -> None:
    target, clock = ScriptedTarget(), Clock()
    r, _ = retrainer(store, target, clock)
    high = {"drift_share": 0.5, "features": [{"name": "x", "drifted": True, "score": 0.4}]}
    r.check_drift("churn", "1", high, (0, 3_600_000_000))
    [trig] = store.triggers("churn")
    assert trig["cause"] == "drift_share"
    assert trig["body"]["reason"] == "dataset drift share 0.50 >= 0.30 (drifted: x)"
    assert trig["body"]["evidence"]["window"] == [
        "1970-01-01T00:00:00.000000Z",
        "1970-01-01T01:00:00.000000Z",
    ]
    r.check_drift("churn", "1", {"drift_share": 0.0, "features": []}, (0, 1))
    assert store.cause("churn", "drift_share")["active"] == 0  # type: ignore[index]


def test_a_kpi_below_its_bound_for_n_windows_with_enough_samples(store: EmbeddedStore) -> None:
    r, _ = retrainer(store, ScriptedTarget(), Clock())

    def window(value: float, n: int) -> tuple[int, int, dict[str, Any]]:
        return (0, 1, {"kpis": {"accuracy": {"value": value, "n": n}}})

    r.check_kpis("churn", "1", [window(0.9, 100), window(0.7, 100)])  # one window only
    r.check_kpis("churn", "1", [window(0.7, 100), window(0.7, 10)])  # too few samples
    assert store.triggers("churn") == []
    r.check_kpis("churn", "1", [window(0.9, 100), window(0.75, 100), window(0.7, 100)])
    [trig] = store.triggers("churn")
    assert trig["body"]["reason"] == "accuracy 0.7 < 0.8 for 2 window(s)"


def test_a_manual_request_skips_the_policy(store: EmbeddedStore) -> None:
    r, _ = retrainer(store, ScriptedTarget(), Clock(), max_per_day=1)
    assert "key" in fire(r)
    assert "key" in r.request("churn", "manual", "new data", {}, manual=True)
    with pytest.raises(RetrainError, match="model 'other' has no retrain section"):
        r.request("other", "manual", "x", {}, manual=True)


def test_a_policy_naming_an_unknown_target_or_kpi_is_a_config_error(store: EmbeddedStore) -> None:
    with pytest.raises(ConfigError, match=r"models\[0\]\.retrain\.target: unknown target 'cj'"):
        Retrainer(config(target="cj"), store, CollectorRegistry(), targets={"ci": ScriptedTarget()})
    bad = (Condition("kpi", kpi="acurracy", below=0.5),)
    with pytest.raises(
        ConfigError, match=r"on\[0\]\.kpi: unknown KPI 'acurracy'; did you mean 'accuracy'"
    ):
        Retrainer(config(on=bad), store, CollectorRegistry(), targets={"ci": ScriptedTarget()})


def test_a_cause_clears_only_when_every_instance_has(store: EmbeddedStore) -> None:
    """One alert name, one instance per feature: feature a resolving while b still fires
    re-arms nothing."""
    r, _ = retrainer(store, ScriptedTarget(), Clock())
    cause = "alert:MlwatchFeatureDrift"
    assert "key" in r.request("churn", cause, "a", {}, instance="fp-a")
    assert "suppressed" in r.request("churn", cause, "b", {}, instance="fp-b")
    r.clear("churn", cause, instance="fp-a")
    assert "suppressed" in r.request("churn", cause, "b", {}, instance="fp-b")  # b never stopped
    r.clear("churn", cause, instance="fp-b")
    assert store.cause("churn", cause)["active"] == 0  # type: ignore[index]
    assert "key" in r.request("churn", cause, "a again", {}, instance="fp-a")


def test_one_version_drifting_and_another_not_is_one_trigger(store: EmbeddedStore) -> None:
    clock = Clock()
    r, _ = retrainer(store, ScriptedTarget(), clock)
    high = {"drift_share": 0.5, "features": [{"name": "x", "drifted": True, "score": 0.4}]}
    calm = {"drift_share": 0.0, "features": []}
    for _ in range(15):  # a run a minute, two versions served
        r.check_drift("churn", "1", high, (0, 1))
        r.check_drift("churn", "2", calm, (0, 1))
        clock.now += 60
    assert len(store.triggers("churn")) == 1


def test_too_few_samples_neither_triggers_nor_clears(store: EmbeddedStore) -> None:
    r, _ = retrainer(store, ScriptedTarget(), Clock())

    def window(value: float, n: int) -> tuple[int, int, dict[str, Any]]:
        return (0, 1, {"kpis": {"accuracy": {"value": value, "n": n}}})

    r.check_kpis("churn", "1", [window(0.7, 100), window(0.7, 100)])
    assert store.cause("churn", "kpi:accuracy")["active"] == 1  # type: ignore[index]
    r.check_kpis("churn", "1", [window(0.7, 100), window(0.9, 5)])  # unknown: still active
    assert store.cause("churn", "kpi:accuracy")["active"] == 1  # type: ignore[index]
    r.check_kpis("churn", "1", [window(0.9, 100), window(0.9, 100)])
    assert store.cause("churn", "kpi:accuracy")["active"] == 0  # type: ignore[index]


def test_two_processes_on_one_store_decide_one_at_a_time(tmp_path: Path) -> None:
    """Two retrainers (as a sidecar and a standalone scheduler would have), each with its
    own lock and connection, racing on one cause: one trigger."""
    import threading

    a = EmbeddedStore(tmp_path / "store.db")
    b = EmbeddedStore(tmp_path / "store.db")
    clock = Clock()
    first, _ = retrainer(a, ScriptedTarget(), clock)
    second, _ = retrainer(b, ScriptedTarget(), clock)
    barrier = threading.Barrier(8)

    def fire_from(r: Retrainer) -> None:
        barrier.wait()
        for _ in range(20):
            r.request("churn", "drift_share", "drift", {}, instance="1")

    threads = [threading.Thread(target=fire_from, args=(r,)) for r in (first, second) * 4]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(a.triggers("churn")) == 1


def test_a_manual_request_with_a_key_is_one_trigger(store: EmbeddedStore) -> None:
    r, _ = retrainer(store, ScriptedTarget(), Clock())
    key = "01a24582-b073-7c48-9a31-aedb4e5c0306"
    first = r.request("churn", "manual", "x", {}, manual=True, key=key)
    again = r.request("churn", "manual", "x", {}, manual=True, key=key)
    assert first["key"] == again["key"] == key and len(store.triggers("churn")) == 1


class SlowTarget(ScriptedTarget):
    """Holds each attempt until released, and remembers the budget it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.entered, self.release = threading.Event(), threading.Event()
        self.budgets: list[float] = []

    def send(self, trigger: Trigger, *, timeout_s: float) -> Attempt:
        self.budgets.append(timeout_s)
        self.entered.set()
        self.release.wait(10)
        return super().send(trigger, timeout_s=timeout_s)


def test_stopping_lets_an_attempt_under_way_finish_and_record(store: EmbeddedStore) -> None:
    target = SlowTarget()
    r = Retrainer(config(), store, CollectorRegistry(), targets={"ci": target})
    r.start()
    fire(r)
    assert target.entered.wait(10)
    assert r.stop(0.05) is False  # still inside the attempt: the store must stay open
    target.release.set()
    assert r.stop(10) is True
    [trig] = store.triggers("churn")
    assert trig["state"] == "delivered"
    assert target.budgets == [300.0]  # the target's own timeout_s governs, up to 300 s
