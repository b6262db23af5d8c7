"""The demo's retraining: a local stand-in for a CI/CD pipeline that takes mlwatch's
signed CloudEvents webhook, and the policy that sends it there when the drift job finds
the injected shift.

The stand-in checks each delivery as a real receiver would (the Standard Webhooks
signature over ``webhook-id.webhook-timestamp.body``, one run per ``webhook-id``) and
"starts" a run; nothing is trained. The configuration the demo leaves behind keeps the
policy as a dry run, since the stand-in is gone once the demo ends.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

SECRET_FILE = "webhook.secret"


def new_secret(root: Path) -> Path:
    """A ``whsec_`` secret in a file only its owner reads (the target reads it from there)."""
    path = root / SECRET_FILE
    path.unlink(missing_ok=True)  # created anew, so never readable by others for a moment
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write("whsec_" + base64.b64encode(os.urandom(32)).decode() + "\n")
    return path


def target_and_policy(
    root: Path, url: str, *, drift_share: float
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The config entries: the webhook target, and the model's retrain section."""
    target = {
        "name": "demo-pipeline",
        "kind": "webhook",
        "url": url,
        "secret_file": str(root / SECRET_FILE),
        "source": "//mlwatch-demo/sidecar",
    }
    # served again after the demo, triggers are recorded, not sent: the pipeline is gone
    policy = {"target": "demo-pipeline", "on": [{"drift_share": drift_share}], "dry_run": True}
    return target, policy


class Pipeline:
    """An HTTP server that accepts signed retraining events and starts one run per event."""

    def __init__(self, secret_file: Path) -> None:
        self.key = base64.b64decode(secret_file.read_text().strip().removeprefix("whsec_"))
        self.runs: list[dict[str, Any]] = []
        self.refused = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/retrain"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def verified(self, headers: Any, body: bytes) -> bool:
        msg_id, stamp = headers.get("webhook-id", ""), headers.get("webhook-timestamp", "")
        signed = f"{msg_id}.{stamp}.".encode() + body
        expected = base64.b64encode(hmac.new(self.key, signed, hashlib.sha256).digest()).decode()
        given = [
            s.split(",", 1)[1] for s in headers.get("webhook-signature", "").split() if "," in s
        ]
        return any(hmac.compare_digest(expected, g) for g in given)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        pipeline = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if not pipeline.verified(self.headers, body):
                    pipeline.refused += 1
                    self.send_response(401)
                else:
                    event = json.loads(body)
                    if all(r["id"] != event["id"] for r in pipeline.runs):  # one run a key
                        pipeline.runs.append(event)
                    self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


def print_run(pipeline: Pipeline, triggers: list[dict[str, Any]]) -> None:
    """What the policy did and what the pipeline received."""
    print("Retraining (the model's retrain policy: drift share at or above its bound)")
    if not triggers:
        print("  no trigger")
        return
    trig = triggers[0]
    body, evidence = trig["body"], trig["body"]["evidence"]
    drifted = ", ".join(_why(f) for f in evidence.get("drifted", []))
    print(f"  trigger          {trig['key']}: {body['reason']}")
    print(f"  evidence         window {evidence['window'][0]} .. {evidence['window'][1]}")
    print(f"                   {drifted}")
    print(
        f"  delivery         {trig['state']} after {len(trig['attempts'])} attempt(s), signed webhook"
    )
    for run in pipeline.runs:
        print(
            f"  pipeline         run started for {run['subject']} (event {run['id']}, source {run['source']})"
        )


def _why(feature: dict[str, Any]) -> str:
    """A drifted feature's statistic against its threshold (a p-value below it, or a
    distance above it)."""
    name, method = feature["name"], feature["method"]
    if feature.get("p_value") is not None:
        return f"{name} ({method} p={feature['p_value']:.2g} < {feature['threshold']:.2g})"
    return f"{name} ({method} {feature['score']:.3f} > {feature['threshold']:.3f})"
