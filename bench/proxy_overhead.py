"""What proxy mode adds to a call: latency at a fixed request rate, errors, memory.

A real model server (tests/proxy/model_server.py: scikit-learn on iris, Open Inference
Protocol v2, under uvicorn) and ``mlwatch sidecar --proxy-to`` in front of it run as
subprocesses. An open-loop load (requests sent on a fixed schedule over keep-alive
connections, whatever the answers take) calls the model server directly, then through
the proxy, at each rate, in the same run; each call is timed from its write to its last
byte. Reported per rate: p50 and p99 of both and the difference (what the proxy adds),
non-200 answers and answers that differ from the direct one, the events the sidecar
recorded, the CPU per call of the proxy's worker process (forwarding) and of the sidecar
(recording) over their idle use (figures other load on the machine barely moves), and
their RSS before and after.

    python bench/proxy_overhead.py [--seconds 20] [--rates 500,2000] [--rows 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
CONNECTIONS = 32


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return -1


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def worker_pid(sidecar: int) -> int:
    """The proxy's worker process: the sidecar's child."""
    tasks = Path(f"/proc/{sidecar}/task").iterdir()
    return int(next(pid for task in tasks for pid in (task / "children").read_text().split()))


def wait_http(url: str, what: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"{what} did not start") from None
            time.sleep(0.1)


def start(rows: int) -> tuple[list[subprocess.Popen[bytes]], int, int, int]:
    """The model server and the sidecar in proxy mode; their ports and the sidecar's pid."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLWATCH_")}
    env["PYTHONPATH"] = str(REPO)
    model, sidecar, proxy = free_port(), free_port(), free_port()
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "env": env, "cwd": REPO}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "tests.proxy.model_server:app",
                "--port",
                str(model),
                "--log-level",
                "warning",
                "--no-access-log",
                "--lifespan",
                "off",
            ],
            **quiet,
        ),
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mlwatch",
                "sidecar",
                "--port",
                str(sidecar),
                "--data-dir",
                tempfile.mkdtemp(prefix="mlwatch-bench-"),
                "--proxy-to",
                f"http://127.0.0.1:{model}",
                "--proxy-listen",
                f"127.0.0.1:{proxy}",
            ],
            **quiet,
        ),
    ]
    wait_http(f"http://127.0.0.1:{model}/v2/health/ready", "the model server")
    wait_http(f"http://127.0.0.1:{proxy}/v2/health/ready", "the proxy")
    return procs, model, proxy, sidecar


def request_bytes(rows: int) -> bytes:
    data = [5.1, 3.5, 1.4, 0.2] * rows
    body = json.dumps(
        {"inputs": [{"name": "x", "shape": [rows, 4], "datatype": "FP64", "data": data}]}
    ).encode()
    return (
        b"POST /v2/models/iris/infer HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\n"
        + f"content-length: {len(body)}\r\n\r\n".encode()
        + body
    )


async def _call(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, req: bytes
) -> tuple[float, bytes]:
    t0 = time.perf_counter()
    writer.write(req)
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    body = await reader.readexactly(length)
    return time.perf_counter() - t0, head.split(b" ", 2)[1] + b" " + body


async def load(
    port: int, req: bytes, rate: float, seconds: float
) -> tuple[list[float], list[bytes]]:
    """Open loop: call ``rate`` times a second on a schedule, on up to CONNECTIONS connections."""
    pool: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(CONNECTIONS):
        pool.put_nowait(await asyncio.open_connection("127.0.0.1", port))
    latencies: list[float] = []
    answers: list[bytes] = []

    async def one() -> None:
        conn = await pool.get()
        lat, answer = await _call(*conn, req)
        latencies.append(lat)
        answers.append(answer)
        pool.put_nowait(conn)

    tasks = []
    start, n, total = time.perf_counter(), 0, int(rate * seconds)
    while n < total:
        due = start + n / rate
        now = time.perf_counter()
        if due > now:  # at least a millisecond: uvloop's timers would spin on less
            await asyncio.sleep(max(due - now, 0.001))
        while n < total and start + n / rate <= time.perf_counter():
            tasks.append(asyncio.ensure_future(one()))
            n += 1
    await asyncio.gather(*tasks)
    while not pool.empty():
        pool.get_nowait()[1].close()
    return latencies, answers


def run(coro: Any) -> Any:
    """The load generator on uvloop where it is installed (it is, with the sidecar extra):
    its own CPU per call is less than half asyncio's, which leaves the two cores to the
    model server and the proxy being measured."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000.0


def recorded(sidecar: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{sidecar}/metrics", timeout=10) as r:
        text = r.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("mlwatch_predictions_total{") and 'model="iris"' in line
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rates", default="500,2000")
    parser.add_argument("--rows", type=int, default=1, help="rows per inference request")
    args = parser.parse_args()
    procs, model, proxy, sidecar = start(args.rows)
    req = request_bytes(args.rows)
    try:
        run(load(model, req, 200, 2))  # warm both paths up (imports, pools, caches)
        run(load(proxy, req, 200, 2))
        sidecar_pid = procs[1].pid
        worker = worker_pid(sidecar_pid)
        rss0 = rss_kib(sidecar_pid), rss_kib(worker)

        def cpu() -> tuple[float, float]:
            return cpu_seconds(worker), cpu_seconds(sidecar_pid)

        print(
            f"proxy overhead: OIP v2 infer, {args.rows} row(s) a request, {args.seconds:.0f} s "
            f"per run, open loop on up to {CONNECTIONS} connections, {os.cpu_count()} CPUs"
        )
        for rate in (float(r) for r in args.rates.split(",")):
            idle0, t_idle = cpu(), time.monotonic()
            direct, want = run(load(model, req, rate, args.seconds))
            spent = time.monotonic() - t_idle
            idle = [(b - a) / spent for a, b in zip(idle0, cpu(), strict=True)]
            before, cpu0, t0 = recorded(sidecar), cpu(), time.monotonic()
            own0, model0 = time.process_time(), cpu_seconds(procs[0].pid)
            proxied, got = run(load(proxy, req, rate, args.seconds))
            own, model_cpu = time.process_time() - own0, cpu_seconds(procs[0].pid) - model0
            time.sleep(1.0)  # the recorder's group commit
            took = time.monotonic() - t0
            used = [b - a - i * took for a, b, i in zip(cpu0, cpu(), idle, strict=True)]
            errors = sum(not a.startswith(b"200 ") for a in got)
            differ = sum(a != want[0] for a in got)
            events = recorded(sidecar) - before
            print(f"  {rate:,.0f} requests/s ({len(proxied)} calls each way)")
            for name, lats in (("direct", direct), ("proxy", proxied)):
                print(
                    f"    {name:<7} p50 {pct(lats, 0.5):6.3f} ms   p99 {pct(lats, 0.99):6.3f} ms   mean {statistics.fmean(lats) * 1000:6.3f} ms"
                )
            print(
                f"    added   p50 {pct(proxied, 0.5) - pct(direct, 0.5):+6.3f} ms   "
                f"p99 {pct(proxied, 0.99) - pct(direct, 0.99):+6.3f} ms   "
                f"ratio p50 {pct(proxied, 0.5) / pct(direct, 0.5):.2f}x"
            )
            print(
                f"    non-200 through the proxy: {errors}; answers unlike the direct one: {differ}; events recorded: {events:.0f}"
            )
            for name, spent_s in zip(
                ("forwarding (worker)", "recording (sidecar)"), used, strict=True
            ):
                print(
                    f"    {name:<20} CPU {spent_s / len(proxied) * 1e6:4.0f} us a call, "
                    f"{spent_s / args.seconds:.2f} cores over idle"
                )
            print(
                f"    other CPU on the machine meanwhile: the model server {model_cpu / args.seconds:.2f} "
                f"cores, this load generator {own / args.seconds:.2f} cores"
            )
        rss1 = rss_kib(sidecar_pid), rss_kib(worker)
        for name, a, b in zip(("sidecar", "worker"), rss0, rss1, strict=True):
            print(
                f"  {name:<8} RSS {a / 1024:.1f} MiB before the timed runs, {b / 1024:.1f} MiB after"
            )
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
