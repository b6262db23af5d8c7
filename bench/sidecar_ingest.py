"""Sidecar ingest throughput: batches of 500 events x 20 features, sustained.

Starts ``mlwatch sidecar`` (spool policy ``interval`` by default) as a subprocess,
posts from several keep-alive connections for ``--seconds``, and prints the
acknowledged rate, request latency p50/p99, whether the store kept up (sink lag
at the start and the end), and the sidecar's CPU use. As the baseline, the same
events are inserted straight into an embedded store in this process (no HTTP, no
spool), and the ratio is printed.

    python bench/sidecar_ingest.py --seconds 60
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mlwatch.store import EmbeddedStore
from mlwatch.wire import validate_event

PLACEHOLDER = b"@@@@@@@@@@"


def make_template(batch: int, features: int) -> bytes:
    rng = random.Random(1)
    events = [
        {
            "event_id": f"{PLACEHOLDER.decode()}-{i:05d}",
            "ts": "2026-11-21T12:00:00.000000Z",
            "model": "bench",
            "version": "1",
            "request_id": f"{PLACEHOLDER.decode()}-{i:05d}",
            "features": {f"f{j:02d}": round(rng.gauss(0, 1), 6) for j in range(features)},
            "prediction": rng.randint(0, 2),
            "latency_ms": round(rng.uniform(0.5, 5), 3),
            "status": "ok",
            "code_version": "abc1234",
        }
        for i in range(batch)
    ]
    return json.dumps(events).encode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def baseline(template: bytes, batches: int) -> float:
    """Events/s inserting validated events straight into a store (no HTTP, no spool)."""
    with tempfile.TemporaryDirectory() as tmp:
        store = EmbeddedStore(Path(tmp) / "store.db")
        start = time.perf_counter()
        n = 0
        for b in range(batches):
            body = template.replace(PLACEHOLDER, f"{b:010d}".encode())
            events = [validate_event(e, line=i) for i, e in enumerate(json.loads(body), 1)]
            n += store.insert_events(events)
        elapsed = time.perf_counter() - start
        store.close()
    return n / elapsed


def start_sidecar(fsync: str) -> tuple[subprocess.Popen[bytes], int]:
    """``mlwatch sidecar`` on a free port and a fresh data directory, once it is ready."""
    port = free_port()
    tmp = tempfile.mkdtemp(prefix="mlwatch-bench-")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLWATCH_")}
    env["MLWATCH_SPOOL_FSYNC"] = fsync
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlwatch", "sidecar", "--port", str(port), "--data-dir", tmp],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            if get_json(f"http://127.0.0.1:{port}/readyz")["ready"]:
                return proc, port
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                raise
            time.sleep(0.1)


class Load:
    """``connections`` keep-alive clients posting batches until ``stop_at``."""

    def __init__(self, port: int, template: bytes, batch: int, seconds: float) -> None:
        self.port, self.template, self.batch = port, template, batch
        self.stop_at = time.monotonic() + seconds
        self.counter = iter(range(10**9))
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.accepted = 0
        self.failures = 0

    def worker(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        local_lat: list[float] = []
        local_n = local_fail = 0
        while time.monotonic() < self.stop_at:
            with self.lock:
                b = next(self.counter)
            body = self.template.replace(PLACEHOLDER, f"{b:010d}".encode())
            t0 = time.perf_counter()
            conn.request("POST", "/v1/events", body, {"content-type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            local_lat.append(time.perf_counter() - t0)
            if resp.status == 202:
                local_n += self.batch
            else:
                local_fail += 1
        with self.lock:
            self.latencies.extend(local_lat)
            self.accepted += local_n
            self.failures += local_fail


def run_load(
    proc: subprocess.Popen[bytes], port: int, load: Load, connections: int
) -> dict[str, Any]:
    """Post for the load's duration, sampling the store's backlog; then wait for it to drain."""
    url = f"http://127.0.0.1:{port}"
    cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
    threads = [threading.Thread(target=load.worker) for _ in range(connections)]
    for t in threads:
        t.start()
    lags = []
    while any(t.is_alive() for t in threads):
        time.sleep(min(5.0, max(0.1, load.stop_at - time.monotonic())))
        status = get_json(url + "/v1/models/bench/status")
        lags.append(
            (
                round(time.monotonic() - t0),
                status["sinks"]["store"]["lag_bytes"],
                status["events_stored"],
            )
        )
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    cpu = cpu_seconds(proc.pid) - cpu0
    drain_start = time.monotonic()
    while get_json(url + "/v1/models/bench/status")["sinks"]["store"]["lag_bytes"] > 0:
        time.sleep(0.2)
    return {
        "elapsed": elapsed,
        "cpu": cpu,
        "lags": lags,
        "drain": time.monotonic() - drain_start,
        "stored": get_json(url + "/v1/models/bench/status")["events_stored"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--fsync", choices=("interval", "always"), default="interval")
    args = parser.parse_args()

    template = make_template(args.batch, args.features)
    proc, port = start_sidecar(args.fsync)
    load = Load(port, template, args.batch, args.seconds)
    try:
        got = run_load(proc, port, load, args.connections)
    finally:
        proc.terminate()
        proc.wait(30)
    elapsed = got["elapsed"]
    rate = load.accepted / elapsed
    base = baseline(template, 40)
    latencies = sorted(load.latencies)
    print(
        f"sidecar ingest, {args.batch} events x {args.features} features per request, "
        f"{args.connections} connections, spool fsync={args.fsync}, {elapsed:.0f} s"
    )
    print(
        f"  acknowledged     {load.accepted} events, {rate:,.0f} events/s "
        f"({rate / args.batch:,.0f} requests/s), {load.failures} non-202"
    )
    print(
        f"  request latency  p50 {statistics.median(latencies) * 1000:.1f} ms, "
        f"p99 {latencies[int(0.99 * (len(latencies) - 1))] * 1000:.1f} ms"
    )
    print("  store backlog    (t s, lag bytes, stored): " + ", ".join(map(str, got["lags"])))
    print(
        f"  drained in       {got['drain']:.1f} s after the load stopped; stored "
        f"{got['stored']} events"
    )
    print(
        f"  sidecar CPU      {got['cpu'] / elapsed:.2f} cores "
        f"({got['cpu'] / max(load.accepted, 1) * 1e6:.1f} us/event)"
    )
    print(
        f"  baseline         direct validate+insert in this process: {base:,.0f} events/s; "
        f"sidecar/baseline = {rate / base:.2f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
