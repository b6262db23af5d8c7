"""In-process targets for the retraining tests: each records what it was sent and
answers from a script of outcomes."""

from __future__ import annotations

import threading

from mlwatch.alerting.trigger import Attempt, Outcome, Trigger


class ScriptedTarget:
    """Answers each ``send`` with the next scripted Attempt, then DELIVERED."""

    kind = "test"

    def __init__(self, name: str = "ci", script: list[Attempt] | None = None) -> None:
        self.name = name
        self.script = list(script or [])
        self.sent: list[Trigger] = []
        self.lock = threading.Lock()

    def send(self, trigger: Trigger, *, timeout_s: float) -> Attempt:
        with self.lock:
            self.sent.append(trigger)
            if self.script:
                return self.script.pop(0)
        return Attempt(Outcome.DELIVERED, 204, "ok", reference="run-1")
