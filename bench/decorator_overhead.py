"""What ``@mlwatch.monitor`` costs the calling thread, and the process in total.

A prediction function takes a dict of 20 numeric features. Each call is timed on
the calling thread with ``perf_counter_ns`` (the timer's own ~50-100 ns is in
every figure, the bare call included). Reported: median and p99 for the bare
call, a prometheus_client ``Histogram.observe`` around the call (own registry; the
cheapest instrumentation most services already have), and ``@monitor`` with
payload capture on and off; then the total process CPU per event, worker thread
included (``time.process_time`` over N calls + flush, minus the bare loop).

The sink is the sidecar at ``$MLWATCH_SIDECAR_URL`` if set, else one started
here (``python -m mlwatch sidecar``), else — if that CLI is missing — a minimal
HTTP server answering 202 (said so in the output). A last run points at a closed
port ("sidecar down") and reports the added time and the RSS before/after 1M calls.

    python bench/decorator_overhead.py [--calls 200000] [--down-calls 1000000]
"""

from __future__ import annotations

import argparse
import array
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import mlwatch
from mlwatch.client import runtime
from mlwatch.settings import load_config

CHUNK = 2_000  # calls between (untimed) flushes, so the queue never fills in the timed runs
FEATURES = {f"f{i:02d}": float(i) * 0.5 for i in range(20)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


@contextmanager
def sink() -> Iterator[tuple[str, str]]:
    """(url, description) of a running sidecar, or of a stand-in answering 202."""
    if os.environ.get("MLWATCH_SIDECAR_URL"):
        yield os.environ["MLWATCH_SIDECAR_URL"], "sidecar at $MLWATCH_SIDECAR_URL"
        return
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlwatch", "sidecar", "--port", str(port), "--data-dir", tmp],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        up = False
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=1) as r:
                    up = r.status == 200
                    break
            except OSError:
                time.sleep(0.1)
        if up:
            try:
                yield url, f"mlwatch sidecar started here (port {port}, data dir {tmp})"
            finally:
                proc.terminate()
                proc.wait(30)
            return
        proc.kill()
        err = (proc.communicate()[1] or b"").decode(errors="replace").strip().splitlines()
        reason = err[-1] if err else "did not answer /healthz"
        with stub_server() as stub:
            yield stub, f"STAND-IN HTTP server answering 202 (the sidecar failed: {reason})"


@contextmanager
def stub_server() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(202)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def timed(fn: Callable[[dict[str, float]], Any], calls: int, flush: bool) -> array.array[int]:
    """Per-call ns on this thread; optional untimed flushes every CHUNK calls."""
    out = array.array("q", bytes(8 * calls))
    clock = time.perf_counter_ns
    x = FEATURES
    for start in range(0, calls, CHUNK):
        for i in range(start, min(start + CHUNK, calls)):
            t = clock()
            fn(x)
            out[i] = clock() - t
        if flush:
            mlwatch.flush(60)
    return out


def cpu_per_call(fn: Callable[[dict[str, float]], Any], calls: int, flush: bool) -> float:
    """Process CPU (all threads) per call in ns, flushes included."""
    x = FEATURES
    t0 = time.process_time_ns()
    for start in range(0, calls, CHUNK):
        for _ in range(min(CHUNK, calls - start)):
            fn(x)
        if flush:
            mlwatch.flush(60)
    return (time.process_time_ns() - t0) / calls


def stats(xs: array.array[int]) -> tuple[float, float]:
    s = sorted(xs)
    return statistics.median(s), s[min(len(s) - 1, int(len(s) * 0.99))]


def dropped() -> int:
    rt = runtime._current
    if rt is None or rt.shipper is None:
        return 0
    return sum(rt.shipper.drops.snapshot().values())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=200_000)
    ap.add_argument("--down-calls", type=int, default=1_000_000)
    args = ap.parse_args()

    from prometheus_client import CollectorRegistry, Histogram

    def predict(features: dict[str, float]) -> float:
        return features["f00"] + 1.0

    hist = Histogram("bench_latency_seconds", "latency", registry=CollectorRegistry())
    perf = time.perf_counter

    def with_prometheus(features: dict[str, float]) -> float:
        t = perf()
        try:
            return predict(features)
        finally:
            hist.observe(perf() - t)

    on = mlwatch.monitor("bench", "1")(predict)
    off = mlwatch.monitor("bench", "1", capture=False)(predict)

    with sink() as (url, what):
        print(f"sink: {what}")
        print(f"python {sys.version.split()[0]}, {args.calls} calls per run, 20 numeric features")
        runtime.start(load_config(env={}, sidecar_url=url, code_version="bench"))
        rows = []
        for name, fn, flush in [
            ("bare call", predict, False),
            ("prometheus Histogram.observe", with_prometheus, False),
            ("@monitor capture on", on, True),
            ("@monitor capture off", off, True),
        ]:
            timed(fn, min(args.calls, 20_000), flush)  # warm-up (starts the worker)
            med, p99 = stats(timed(fn, args.calls, flush))
            cpu = cpu_per_call(fn, args.calls, flush)
            rows.append((name, med, p99, cpu))
        assert mlwatch.flush(60)
        lost = dropped()
        bare_med, bare_cpu = rows[0][1], rows[0][3]
        print(
            f"\n{'per call (calling thread)':32} {'median':>9} {'p99':>9} {'added':>9} "
            f"{'ratio':>7} | {'CPU/event':>10} {'added':>9}"
        )
        for name, med, p99, cpu in rows:
            print(
                f"{name:32} {med / 1e3:8.3f}µs {p99 / 1e3:8.3f}µs "
                f"{(med - bare_med) / 1e3:8.3f}µs {med / bare_med:6.1f}x | "
                f"{cpu / 1e3:9.2f}µs {(cpu - bare_cpu) / 1e3:8.2f}µs"
            )
        print(
            f"(events dropped during the timed runs: {lost}; CPU/event counts every thread, "
            "the worker's serialisation, gzip and HTTP included)"
        )
        assert mlwatch.shutdown(30)

    port = free_port()  # nothing listens there: the sidecar is down
    runtime.start(load_config(env={}, sidecar_url=f"http://127.0.0.1:{port}", code_version="bench"))
    n = args.down_calls
    out = array.array("q", bytes(8 * n))  # allocated before the RSS baseline
    on(FEATURES)
    before = rss_kib()
    clock = time.perf_counter_ns
    x = FEATURES
    for i in range(n):
        t = clock()
        on(x)
        out[i] = clock() - t
    after = rss_kib()
    med, p99 = stats(out)
    print(
        f"\nsidecar down ({n} calls, capture on, queue_size 10000): median {med / 1e3:.3f}µs, "
        f"p99 {p99 / 1e3:.3f}µs, added {(med - bare_med) / 1e3:.3f}µs over the bare call"
    )
    print(
        f"RSS before {before / 1024:.1f} MiB, after {after / 1024:.1f} MiB "
        f"(+{(after - before) / 1024:.1f} MiB); events dropped and counted: {dropped()}"
    )
    t0 = time.monotonic()
    ok = mlwatch.shutdown(5)
    print(f"shutdown with the sidecar down: {time.monotonic() - t0:.2f}s (clean: {ok})")


if __name__ == "__main__":
    main()
