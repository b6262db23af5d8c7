"""The sidecar under unauthenticated huge request heads: its memory and the latency of
``/healthz`` while the attack runs.

A sidecar process (token set, default limits) is started from ``--tree``; first
``/healthz`` is probed alone (the baseline of the same run), then again while
``--attackers`` connections each send one ``X-Pad`` header of up to ``--mib`` MiB (64 KiB
writes, no token, each stops when the sidecar closes it or after 60 s). Reported: the
sidecar's RSS and peak (VmHWM) before and after, how many bytes the attackers got in,
what they were answered, and ``/healthz`` p50/p90/max alone and under attack.

``--tree PATH`` measures another checkout (e.g. a ``git worktree`` of an older commit).

    python bench/sidecar_header_attack.py [--attackers 3] [--mib 300] [--tree PATH]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

HEAD = b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Pad: "


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def status_mib(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return -1.0


def attack(port: int, total: int, out: list[tuple[int, bytes]]) -> None:
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    sent, block, end = 0, b"a" * 65536, time.monotonic() + 60
    try:
        s.sendall(HEAD)
        while sent < total and time.monotonic() < end:
            s.sendall(block)
            sent += len(block)
        s.sendall(b"\r\nContent-Length: 2\r\n\r\n[]")
    except OSError:
        pass  # closed by the sidecar
    try:
        answer = s.recv(200)
    except OSError:
        answer = b""
    s.close()
    out.append((sent, answer.split(b"\r\n", 1)[0]))


def probe(url: str, n: int, pause: float) -> list[float]:
    took = []
    for _ in range(n):
        start = time.monotonic()
        with urllib.request.urlopen(url, timeout=60) as r:
            r.read()
        took.append(time.monotonic() - start)
        time.sleep(pause)
    return sorted(took)


def show(took: list[float]) -> str:
    n = len(took)
    return f"p50 {took[n // 2] * 1000:7.1f} ms  p90 {took[int(n * 0.9)] * 1000:7.1f} ms  max {took[-1] * 1000:7.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--attackers", type=int, default=3)
    parser.add_argument("--mib", type=int, default=300)
    parser.add_argument("--tree", type=Path, default=Path(__file__).resolve().parent.parent)
    args = parser.parse_args()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLWATCH_")}
    env.update(PYTHONPATH=str(args.tree), MLWATCH_TOKEN="bench-token-123456")
    with tempfile.TemporaryDirectory() as data:
        cmd = [sys.executable, "-m", "mlwatch", "sidecar", "--port", str(port), "--data-dir", data]
        proc = subprocess.Popen(  # cwd: ``-m`` would import the package found there first
            cmd, env=env, cwd=data, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        url = f"http://127.0.0.1:{port}/healthz"
        try:
            for _ in range(300):
                try:
                    probe(url, 1, 0)
                    break
                except OSError:
                    time.sleep(0.1)
            alone = probe(url, 40, 0.05)
            before = (status_mib(proc.pid, "VmRSS"), status_mib(proc.pid, "VmHWM"))
            results: list[tuple[int, bytes]] = []
            threads = [
                threading.Thread(target=attack, args=(port, args.mib << 20, results))
                for _ in range(args.attackers)
            ]
            for t in threads:
                t.start()
            under = probe(url, 40, 0.25)
            for t in threads:
                t.join()
            after = (status_mib(proc.pid, "VmRSS"), status_mib(proc.pid, "VmHWM"))
        finally:
            proc.terminate()
            proc.wait(30)
    print(
        f"sidecar from {args.tree}: {args.attackers} attackers, up to {args.mib} MiB of header each"
    )
    print(f"  RSS {before[0]:.0f} → {after[0]:.0f} MiB, peak {before[1]:.0f} → {after[1]:.0f} MiB")
    for sent, answer in results:
        print(
            f"  attacker got {sent / (1 << 20):7.1f} MiB in, answered {answer.decode(errors='replace')!r}"
        )
    print(f"  /healthz alone        {show(alone)}")
    print(f"  /healthz under attack {show(under)}")


if __name__ == "__main__":
    main()
