"""The Alertmanager receiver under a storm, beside event ingest.

Starts ``mlwatch sidecar`` with one model whose retrain policy names an alert, and a
local receiver standing in for the CI/CD webhook. Two rounds of ``--seconds`` each, in
the same run: event ingest alone (2 connections posting 500-event batches: the baseline),
then the same ingest while another connection posts Alertmanager notifications as fast
as the sidecar answers (each with 10 firing alerts for the same cause, as a flapping
rule sends them). Reported: events/s in both rounds and their ratio, notifications and
alerts per second absorbed, the answer's p50/p99, and how many triggers reached the
webhook (the storm guard makes it one).

    python bench/alert_receiver.py [--seconds 20]
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

TOKEN = "bench-token-123456"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Hook:
    """The webhook: counts what arrives, answers 202."""

    def __init__(self) -> None:
        self.received = 0
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                hook.received += 1
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def start_sidecar(root: Path, hook_url: str) -> tuple[subprocess.Popen[bytes], int]:
    secret = root / "hook.secret"
    secret.write_text("whsec_" + base64.b64encode(os.urandom(32)).decode())
    config = {
        "models": [
            {"name": "churn", "retrain": {"target": "hook", "on": [{"alert": "MlwatchDrift"}]}}
        ],
        "targets": [
            {"name": "hook", "kind": "webhook", "url": hook_url, "secret_file": str(secret)}
        ],
    }
    (root / "mlwatch.yaml").write_text(json.dumps(config))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLWATCH_")}
    env.update(MLWATCH_TOKEN=TOKEN, MLWATCH_CONFIG=str(root / "mlwatch.yaml"))
    cmd = [
        sys.executable,
        "-m",
        "mlwatch",
        "sidecar",
        "--port",
        str(port),
        "--data-dir",
        str(root / "d"),
    ]
    proc = subprocess.Popen(
        cmd, env=env, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    for _ in range(300):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return proc, port
        except OSError:
            time.sleep(0.1)
    raise SystemExit("the sidecar did not start")


def events_body(n: int) -> bytes:
    event = {
        "model": "churn",
        "latency_ms": 1.2,
        "prediction": 1,
        "features": {f"f{j}": j * 0.5 for j in range(20)},
    }
    return json.dumps([event] * n).encode()


def notification() -> bytes:
    alert = {
        "status": "firing",
        "labels": {"alertname": "MlwatchDrift", "model": "churn"},
        "annotations": {"summary": "drift"},
        "startsAt": "2026-12-05T10:00:00Z",
        "fingerprint": "f1",
    }
    return json.dumps(
        {"version": "4", "status": "firing", "receiver": "r", "alerts": [alert] * 10}
    ).encode()


def post_loop(port: int, path: str, body: bytes, stop: threading.Event, out: list[float]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    while not stop.is_set():
        start = time.perf_counter()
        conn.request("POST", path, body, headers)
        resp = conn.getresponse()
        resp.read()
        if resp.status >= 300:
            raise SystemExit(f"{path}: {resp.status}")
        out.append(time.perf_counter() - start)


def round_(port: int, seconds: float, storm: bool) -> tuple[float, list[float]]:
    stop, ingest, alerts = threading.Event(), [[], []], []
    threads = [
        threading.Thread(target=post_loop, args=(port, "/v1/events", events_body(500), stop, t))
        for t in ingest
    ]
    if storm:
        threads.append(
            threading.Thread(
                target=post_loop,
                args=(port, "/v1/alerts/alertmanager", notification(), stop, alerts),
            )
        )
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    return sum(len(t) for t in ingest) * 500 / seconds, alerts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    hook = Hook()
    with tempfile.TemporaryDirectory() as tmp:
        proc, port = start_sidecar(Path(tmp), hook.url)
        try:
            alone, _ = round_(port, args.seconds, storm=False)
            beside, alerts = round_(port, args.seconds, storm=True)
            time.sleep(2)  # the outbox sends within its loop
        finally:
            proc.terminate()
            proc.wait(30)
    alerts.sort()
    n = len(alerts)
    print(f"alert receiver beside ingest, {args.seconds:g} s a round")
    print(f"  ingest alone          {alone:10,.0f} events/s")
    print(f"  ingest during storm   {beside:10,.0f} events/s  (ratio {beside / alone:.2f})")
    print(
        f"  notifications         {n / args.seconds:10,.0f} /s, {10 * n / args.seconds:,.0f} alerts/s; "
        f"answer p50 {alerts[n // 2] * 1000:.1f} ms, p99 {alerts[int(n * 0.99)] * 1000:.1f} ms"
    )
    print(f"  webhook deliveries    {hook.received} (one cause, one trigger)")


if __name__ == "__main__":
    main()
