"""Retraining: a cause becomes a trigger (or is suppressed, and says why), the trigger is
recorded durably before it is sent, and one worker thread sends due triggers to their
targets, retrying with backoff until they are delivered, refused or past their deadline.

Every trigger and attempt is kept in the store (``GET /v1/models/{model}/triggers``);
``mlwatch_retrain_triggers_total{model,target,result}`` counts how they ended (``delivered``,
``rejected``, ``failed``, ``dry_run``, ``suppressed``) and
``mlwatch_retrain_triggers_pending`` how many wait. After a crash, the worker picks up
the pending ones where they were: the idempotency key sent with every attempt lets the
provider (or the receiving pipeline) keep one effect.

A trigger's evidence names what is being served: ``evidence["served"]`` holds the run
id and the parameters of the version's newest registration (``POST /v1/models``, or
what the sidecar resolved from MLflow), the parameters cut to at most
``MAX_PARAMS_BYTES`` of JSON (:func:`bounded_params`), so that a pipeline retrains from
the production run.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from mlwatch.alerting import conditions
from mlwatch.alerting.policy import backoff_s, decide
from mlwatch.alerting.trigger import Attempt, Outcome, Target, Trigger
from mlwatch.errors import ConfigError, RetrainError, did_you_mean
from mlwatch.ids import event_id
from mlwatch.settings import Config, ModelSpec
from mlwatch.settings.targets import MAX_TIMEOUT_S
from mlwatch.store import EmbeddedStore
from mlwatch.times import format_us

log = logging.getLogger("mlwatch.retrain")
MAX_DETAIL = 500
MAX_PARAMS_BYTES = 8192  # of the served version's parameters, as JSON, in a trigger
CUT = "mlwatch.cut"  # the key that says parameters were left out


def _size(value: Any) -> int:
    return len(json.dumps(value, sort_keys=True, default=str).encode())


def bounded_params(params: Mapping[str, Any], limit: int = MAX_PARAMS_BYTES) -> dict[str, Any]:
    """``params`` whole when its JSON takes at most ``limit`` bytes; else the parameters
    that fit (in key order) and, under ``"mlwatch.cut"``, how many were left out.

    >>> bounded_params({"lr": "0.1", "depth": "6"})
    {'lr': '0.1', 'depth': '6'}
    >>> bounded_params({"a": "x" * 40, "b": "y", "c": "z" * 40}, limit=80)
    {'b': 'y', 'mlwatch.cut': '2 of 3 parameters left out (over 80 bytes)'}
    """
    if _size(params) <= limit:
        return dict(params)
    marker = f"{len(params)} of {len(params)} parameters left out (over {limit} bytes)"
    room = limit - _size({CUT: marker})  # the marker with the longest count it can have
    out: dict[str, Any] = {}
    for key in sorted(params, key=str):
        if _size({**out, key: params[key]}) <= room:
            out[key] = params[key]
    out[CUT] = f"{len(params) - len(out)} of {len(params)} parameters left out (over {limit} bytes)"
    return out


class Retrainer:
    """The retraining policies of one configuration, over one store's outbox."""

    def __init__(
        self,
        config: Config,
        store: EmbeddedStore,
        registry: CollectorRegistry,
        *,
        targets: Mapping[str, Target],
        audit: Callable[[dict[str, Any]], None] | None = None,
        clock: Callable[[], float] = time.time,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.config = config
        self.store = store
        self.targets = dict(targets)
        self.audit = audit  # a copy of each trigger after each change (Elasticsearch)
        self.clock = clock
        self.rng = rng
        self._lock = threading.Lock()  # one decision at a time: read, decide, record
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.results = Counter(
            "mlwatch_retrain_triggers",
            "Retraining triggers by how they ended (delivered, rejected, failed, dry_run, "
            "suppressed)",
            ["model", "target", "result"],
            registry=registry,
        )
        self.pending = Gauge(
            "mlwatch_retrain_triggers_pending",
            "Retraining triggers recorded and not yet delivered, refused or given up",
            registry=registry,
        )
        self.pending.set_function(self.store.pending_triggers)
        self._check_config()

    def _check_config(self) -> None:
        """Each retrain section names a known target and KPIs that exist."""
        from mlwatch.stats.kpi.results import CLASSIFICATION_KPIS, REGRESSION_KPIS

        kpis = (*CLASSIFICATION_KPIS, *REGRESSION_KPIS)
        for i, spec in enumerate(self.config.models):
            if spec.retrain is None:
                continue
            at = f"models[{i}].retrain"
            if spec.retrain.target not in self.targets:
                known = ", ".join(sorted(self.targets)) or "none are configured"
                raise ConfigError(
                    f"{at}.target",
                    f"unknown target {spec.retrain.target!r}"
                    f"{did_you_mean(spec.retrain.target, self.targets)} (targets: {known})",
                    source=self.config.source,
                )
            for j, cond in enumerate(spec.retrain.on):
                if cond.kind == "kpi" and cond.kpi not in kpis:
                    raise ConfigError(
                        f"{at}.on[{j}].kpi",
                        f"unknown KPI {cond.kpi!r}{did_you_mean(str(cond.kpi), kpis)}",
                        source=self.config.source,
                    )

    # -- deciding --------------------------------------------------------------
    def _now_us(self) -> int:
        return int(self.clock() * 1_000_000)

    def spec(self, model: str) -> ModelSpec:
        spec = self.config.model_spec(model)
        if spec is None or spec.retrain is None:
            raise RetrainError(f"model {model!r} has no retrain section in the config")
        return spec

    def request(
        self,
        model: str,
        cause: str,
        reason: str,
        evidence: dict[str, Any],
        *,
        version: str | None = None,
        instance: str = "",
        manual: bool = False,
        key: str | None = None,
    ) -> dict[str, Any]:
        """Trigger retraining of ``model`` for ``cause`` unless its policy says not now
        (a manual request skips the cooldown and the daily bound). ``instance`` is what
        holds the cause (an alert's fingerprint, a version): the cause clears when none
        does. ``key`` (a manual request's idempotency key) makes a repeated request the
        same trigger. Returns ``{"key", "state"}`` or ``{"suppressed": why}``."""
        spec = self.spec(model)
        policy = spec.retrain
        assert policy is not None
        now = self._now_us()

        def check(state: dict[str, Any] | None, recent: int) -> str | None:
            if manual:
                return None
            return decide(
                state,
                now_us=now,
                cooldown_us=int(policy.cooldown_s * 1_000_000),
                recent=recent,
                max_per_day=policy.max_per_day,
            )

        def build() -> tuple[str, dict[str, Any], str]:
            trigger = self._trigger(spec, cause, reason, evidence, version, now, key)
            return trigger.key, asdict(trigger), "dry_run" if trigger.dry_run else "pending"

        with self._lock:
            made, why = self.store.request_trigger(model, cause, instance, now, check, build)
        if made is None:
            self.results.labels(model, policy.target, "suppressed").inc()
            log.info("retrain %s (%s) suppressed: %s", model, cause, why)
            return {"suppressed": why}
        self._audit(made)
        found = self.store.trigger(made)
        state = found["state"] if found else "pending"
        if state == "dry_run":
            self.results.labels(model, policy.target, "dry_run").inc()
        log.info("retrain %s (%s): trigger %s, %s", model, cause, made, reason)
        self._wake.set()
        return {"key": made, "state": state}

    def wants(self, model: str, cause: str) -> bool:
        """Whether ``model``'s retrain policy names ``cause``."""
        spec = self.config.model_spec(model)
        return (
            spec is not None
            and spec.retrain is not None
            and spec.retrain.condition(cause) is not None
        )

    def check_drift(
        self, model: str, version: str, report: dict[str, Any], window: tuple[int, int]
    ) -> None:
        """A drift run's result against the model's drift conditions: trigger, or clear."""
        for condition in self._conditions(model, ("drift_share", "features")):
            breach = conditions.drift(condition, report)
            self._act(model, version, condition.cause, breach, window)

    def check_kpis(
        self, model: str, version: str, windows: list[tuple[int, int, dict[str, Any]]]
    ) -> None:
        """A KPI run's windows (oldest first) against the model's KPI conditions."""
        for condition in self._conditions(model, ("kpi",)):
            breach = conditions.kpi(condition, windows)
            span = (windows[0][0], windows[-1][1]) if windows else (0, 0)
            self._act(model, version, condition.cause, breach, span)

    def _conditions(self, model: str, kinds: tuple[str, ...]) -> list[Any]:
        spec = self.config.model_spec(model)
        if spec is None or spec.retrain is None:
            return []
        return [c for c in spec.retrain.on if c.kind in kinds]

    def _act(
        self,
        model: str,
        version: str,
        cause: str,
        breach: conditions.Breach | conditions.Unknown | None,
        window: tuple[int, int],
    ) -> None:
        if isinstance(breach, conditions.Unknown):  # too little data: neither way
            return
        if breach is None:
            self.clear(model, cause, instance=version)
            return
        reason, evidence = breach
        evidence = evidence | {"window": [format_us(window[0]), format_us(window[1])]}
        self.request(model, cause, reason, evidence, version=version, instance=version)

    def clear(self, model: str, cause: str, *, instance: str | None = None) -> None:
        """``instance`` (an alert's fingerprint, a version; None: all) no longer holds
        ``cause``; once none does, the cause may trigger again when it returns."""
        with self._lock:
            self.store.clear_cause(model, cause, instance, self._now_us())

    def _trigger(
        self,
        spec: ModelSpec,
        cause: str,
        reason: str,
        evidence: dict[str, Any],
        version: str | None,
        now_us: int,
        key: str | None = None,
    ) -> Trigger:
        assert spec.retrain is not None
        regs = self.store.registrations(spec.name)
        current = next((r for r in regs if version is None or r["version"] == version), None)
        base = (self.config.public_url or f"http://{self.config.host}:{self.config.port}").rstrip(
            "/"
        )
        if current is not None and (current.get("run_id") or current.get("params")):
            served = {
                "run_id": current.get("run_id") or None,
                "params": bounded_params(current.get("params") or {}),
            }
            evidence = {**evidence, "served": served}
        return Trigger(
            key=key or event_id(now_us * 1000),
            model=spec.name,
            version=version or (current["version"] if current else spec.version or "unknown"),
            reason=reason,
            cause=cause,
            evidence=evidence,
            created=format_us(now_us),
            code_version=(current or {}).get("code_version") or None,
            run_id=(current or {}).get("run_id") or None,
            status_url=f"{base}/v1/models/{spec.name}/status",
            target=spec.retrain.target,
            dry_run=spec.retrain.dry_run,
        )

    # -- sending ---------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="mlwatch-retrain", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop sending (an attempt under way finishes); returns whether the sender ended
        within ``timeout``."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            due: int | None = None
            try:
                self.send_due()
                due = self.store.next_due_us() if not self._stop.is_set() else None
            except Exception as exc:  # the store is busy or broken: try again shortly
                log.warning("retrain: sending triggers failed: %s", exc)
                due = self._now_us() + 5_000_000
            wait = 60.0 if due is None else max(0.0, due / 1e6 - self.clock())
            self._wake.wait(min(wait, 60.0))
            self._wake.clear()

    def send_due(self) -> int:
        """One attempt for every trigger due now; returns how many were attempted."""
        due = self.store.due_triggers(self._now_us())
        for row in due:
            if self._stop.is_set():
                break
            self._attempt(row)
        return len(due)

    def _attempt(self, row: dict[str, Any]) -> None:
        body = row["body"]
        trigger = Trigger(**body)
        target = self.targets.get(trigger.target)
        if target is None:
            attempt = Attempt(Outcome.REJECTED, None, f"no target named {trigger.target!r}")
        else:
            try:
                attempt = target.send(trigger, timeout_s=MAX_TIMEOUT_S)  # the target's own governs
            except Exception as exc:  # the contract says never; a bug costs one attempt
                attempt = Attempt(Outcome.RETRY, None, f"{type(exc).__name__}: {exc}")
        now = self._now_us()
        state, next_us = self._next(row, attempt, now)
        self.store.record_attempt(
            trigger.key,
            {
                "at_us": now,
                "outcome": attempt.outcome.value,
                "status": attempt.status,
                "detail": attempt.detail[:MAX_DETAIL],
                "reference": attempt.reference,
            },
            state=state,
            next_us=next_us,
        )
        self._audit(trigger.key)
        if state != "pending":
            self.results.labels(trigger.model, trigger.target, state).inc()
        level = logging.INFO if state in ("delivered", "pending") else logging.WARNING
        log.log(
            level,
            "retrain %s to %s: %s (%s)",
            trigger.key,
            trigger.target,
            state,
            attempt.detail[:200],
        )

    def _audit(self, key: str) -> None:
        if self.audit is not None:
            from mlwatch.store.outbox import trigger_view

            found = self.store.trigger(key)
            if found is not None:
                self.audit(trigger_view(found))

    def _next(self, row: dict[str, Any], attempt: Attempt, now_us: int) -> tuple[str, int | None]:
        """The trigger's state after ``attempt``, and when to try again."""
        if attempt.outcome is Outcome.DELIVERED:
            return "delivered", None
        if attempt.outcome is Outcome.REJECTED:
            return "rejected", None
        delay = attempt.retry_after_s
        if delay is None:
            delay = backoff_s(
                int(row["attempts"]), 0.5 + self.rng() / 2, base_s=self.config.retrain_backoff_s
            )
        next_us = now_us + int(delay * 1_000_000)
        if next_us > row["created_us"] + int(self.config.retrain_deadline_s * 1_000_000):
            return "failed", None
        return "pending", next_us


def targets_of(config: Config) -> dict[str, Target]:
    """The configured targets by name, built to their providers' APIs."""
    if not config.targets:
        return {}
    from mlwatch.alerting.targets import build_target

    return {spec.name: build_target(spec) for spec in config.targets}
