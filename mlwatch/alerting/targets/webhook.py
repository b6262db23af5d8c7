"""A generic webhook: a CloudEvents 1.0 event in structured JSON, signed per Standard
Webhooks. It reaches Argo Events, Tekton Triggers, Jenkins Generic Webhook Trigger and
anything that takes an HTTP POST.

``POST {url}`` with ``Content-Type: application/cloudevents+json`` and the body::

    {"specversion": "1.0", "type": "io.mlwatch.retrain.requested",
     "source": "<the target's source>", "id": "<the trigger's key>",
     "time": "<when the trigger was made, RFC 3339>", "subject": "<model>",
     "datacontenttype": "application/json", "data": <Trigger.payload()>}

Standard Webhooks headers: ``webhook-id`` (the trigger's key: the same on every retry,
so the receiver can drop duplicates), ``webhook-timestamp`` (Unix seconds of this
attempt) and ``webhook-signature``: ``v1,`` and the base64 of HMAC-SHA256 over
``{webhook-id}.{webhook-timestamp}.{body}`` with the key the ``whsec_`` secret encodes.
Any 2xx is delivered.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

from mlwatch.alerting.targets.request import HttpTarget, jsonable
from mlwatch.alerting.trigger import Attempt, Trigger
from mlwatch.settings.targets import TargetSpec
from mlwatch.times import now_ts

EVENT_TYPE = "io.mlwatch.retrain.requested"
CONTENT_TYPE = "application/cloudevents+json"


def cloud_event(trigger: Trigger, source: str) -> dict[str, Any]:
    """The CloudEvent of a trigger.

    >>> from mlwatch.alerting.trigger import Trigger
    >>> t = Trigger(key="k1", model="m", version="1", reason="r", cause="c",
    ...             created="2026-01-02T03:04:05Z")
    >>> e = cloud_event(t, "/mlwatch")
    >>> e["id"], e["type"], e["time"], e["data"]["model"]
    ('k1', 'io.mlwatch.retrain.requested', '2026-01-02T03:04:05Z', 'm')
    """
    return {
        "specversion": "1.0",
        "type": EVENT_TYPE,
        "source": source,
        "id": trigger.key,
        "time": trigger.created or now_ts(),
        "subject": trigger.model,
        "datacontenttype": "application/json",
        "data": jsonable(trigger.payload()),
    }


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` of a message (Standard Webhooks, ``v1``).

    >>> signature("whsec_" + base64.b64encode(b"k" * 24).decode(), "id", 1, b"{}")[:3]
    'v1,'
    """
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


class WebhookTarget(HttpTarget):
    """A signed CloudEvent to any URL."""

    kind = "webhook"

    def __init__(self, spec: TargetSpec) -> None:
        super().__init__(spec)
        assert spec.secret is not None
        self.source = spec.source
        self._secret = spec.secret
        self.hide(spec.secret, spec.secret.removeprefix("whsec_"))

    def request(self, trigger: Trigger, now: float | None = None) -> tuple[dict[str, str], bytes]:
        """The headers and body of one attempt (signed at ``now``, Unix seconds)."""
        body = json.dumps(
            cloud_event(trigger, self.source), separators=(",", ":"), ensure_ascii=False
        ).encode()
        timestamp = int(time.time() if now is None else now)
        headers = {
            "Content-Type": CONTENT_TYPE,
            "webhook-id": trigger.key,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature(self._secret, trigger.key, timestamp, body),
        }
        return headers, body

    def attempt(self, trigger: Trigger, deadline: float, budget: float) -> Attempt:
        headers, body = self.request(trigger)
        answer = self.call("POST", self.url, headers, body, deadline, budget)
        if isinstance(answer, Attempt):
            return answer
        return self.judged("POST", self.url, answer)
