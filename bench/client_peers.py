"""The client against a misbehaving peer at ``sidecar_url``: what a monitored call costs
the calling thread, and what the serving process's memory does, in each mode.

Modes (a raw socket server in this process, one thread a connection): ``ok`` answers
202 at once (the baseline of the same run), ``hang`` reads the request and never
answers, ``500`` always answers 500, ``reset`` closes with a TCP reset, ``slow``
answers 202 after 5 s, ``trickle`` sends a 202 head one byte every 0.5 s, ``endless``
streams a chunked 202 body (1 MiB chunks, up to 3 GiB or 60 s), ``down`` is a closed
port. Each mode runs in a fresh process: ``--calls`` monitored calls back to back (a
20-feature dict, each timed with ``perf_counter_ns``), the same number of bare calls,
then ``mlwatch.shutdown(5)``. Reported per mode: the call's p50/p99/p99.9/max, the added
p50 over the bare call and its ratio to the ``ok`` baseline, RSS before and after
and the peak (VmHWM), the shutdown's result and time, drops by reason, and exceptions
raised into the caller.

``--tree PATH`` measures another checkout of mlwatch (e.g. a ``git worktree`` of an
older commit) with the same peers, for before/after figures.

    python bench/client_peers.py [--calls 200000] [--modes ok,hang,...] [--tree PATH]
"""

from __future__ import annotations

import argparse
import array
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

MiB = 1 << 20
HEAD_202 = b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\n"
OK = HEAD_202 + b'Content-Length: 14\r\n\r\n{"accepted":1}'
ERROR = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 5\r\n\r\noops!"
BLOCK = b"100000\r\n" + b"x" * MiB + b"\r\n"
MODES = ("ok", "hang", "500", "reset", "slow", "trickle", "endless", "down")


class Peer:
    """Reads each request's head (and drains what follows), then answers as ``answer``."""

    def __init__(self, answer: Callable[[socket.socket, threading.Event], None]) -> None:
        self.answer = answer
        self.stop = threading.Event()
        self.srv = socket.create_server(("127.0.0.1", 0))
        self.srv.settimeout(0.2)
        self.port = self.srv.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.srv.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(70)
            try:
                while not self.stop.is_set():
                    buf = b""
                    while b"\r\n\r\n" not in buf:
                        chunk = conn.recv(1 << 20)
                        if not chunk:
                            return
                        buf += chunk
                    length = _content_length(buf)
                    body = len(buf.split(b"\r\n\r\n", 1)[1])
                    while body < length:
                        body += len(conn.recv(1 << 20))
                    self.answer(conn, self.stop)
            except OSError:
                pass

    def close(self) -> None:
        self.stop.set()
        self.srv.close()


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":", 1)[1])
    return 0


def _hang(conn: socket.socket, stop: threading.Event) -> None:
    stop.wait(65)


def _reset(conn: socket.socket, stop: threading.Event) -> None:
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    raise OSError("reset")


def _slow(conn: socket.socket, stop: threading.Event) -> None:
    if not stop.wait(5):
        conn.sendall(OK)


def _trickle(conn: socket.socket, stop: threading.Event) -> None:
    for byte in HEAD_202 + b"X-A: " + b"a" * 10_000:
        if stop.wait(0.5):
            return
        conn.sendall(bytes([byte]))


def _endless(conn: socket.socket, stop: threading.Event) -> None:
    conn.sendall(HEAD_202 + b"Transfer-Encoding: chunked\r\n\r\n")
    end, sent = time.monotonic() + 60, 0
    while not stop.is_set() and time.monotonic() < end and sent < 3 * 1024 * MiB:
        conn.sendall(BLOCK)
        sent += MiB


ANSWERS: dict[str, Callable[[socket.socket, threading.Event], None]] = {
    "ok": lambda conn, stop: conn.sendall(OK),
    "hang": _hang,
    "500": lambda conn, stop: conn.sendall(ERROR),
    "reset": _reset,
    "slow": _slow,
    "trickle": _trickle,
    "endless": _endless,
}


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return -1


def _percentiles(times: array.array[int]) -> dict[str, float]:
    ns = sorted(times)
    n = len(ns)
    return {
        "p50": ns[n // 2] / 1000,
        "p99": ns[int(n * 0.99)] / 1000,
        "p999": ns[int(n * 0.999)] / 1000,
        "max": ns[-1] / 1000,
    }


def child(url: str, calls: int) -> None:
    """One mode's measurement, in a fresh process; prints one JSON line."""
    import mlwatch
    from mlwatch.client import runtime

    mlwatch.configure(sidecar_url=url, send_timeout_s=5, retry_timeout_s=30)

    @mlwatch.monitor(model="bench", version="1")
    def predict(x: dict[str, float]) -> int:
        return 1

    def bare(x: dict[str, float]) -> int:
        return 1

    features = {f"f{i:02d}": float(i) for i in range(20)}
    predict(features)  # the one-off setup is not part of the figures
    timed, plain = array.array("q", bytes(8 * calls)), array.array("q", bytes(8 * calls))
    rss_before = _status_kib("VmRSS")  # the timing arrays are allocated: not growth
    timer = time.perf_counter_ns
    raised = 0
    for i in range(calls):
        start = timer()
        try:
            predict(features)
        except Exception:
            raised += 1
        timed[i] = timer() - start
    rss_calls = _status_kib("VmRSS")
    for i in range(calls):
        start = timer()
        bare(features)
        plain[i] = timer() - start
    rt = runtime._current
    shipper = getattr(rt, "shipper", None)
    drops: dict[str, int] = {}
    for (_, reason), n in (shipper.drops.snapshot() if shipper else {}).items():
        drops[reason] = drops.get(reason, 0) + n
    start = time.monotonic()
    shut = mlwatch.shutdown(5)
    out = {
        "call": _percentiles(timed),
        "bare": _percentiles(plain),
        "rss_before_mib": rss_before / 1024,
        "rss_calls_mib": rss_calls / 1024,
        "rss_after_mib": _status_kib("VmRSS") / 1024,
        "hwm_mib": _status_kib("VmHWM") / 1024,
        "shutdown": shut,
        "shutdown_s": time.monotonic() - start,
        "drops": drops,
        "raised": raised,
    }
    print(json.dumps(out))


def run_mode(mode: str, calls: int, tree: Path) -> dict[str, Any]:
    peer = None
    if mode == "down":
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
    else:
        peer = Peer(ANSWERS[mode])
        port = peer.port
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLWATCH_")}
    env["PYTHONPATH"] = str(tree)
    cmd = [sys.executable, __file__, "--child", f"http://127.0.0.1:{port}", "--calls", str(calls)]
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, env=env, timeout=600, check=False
        )
    finally:
        if peer is not None:
            peer.close()
    if proc.returncode != 0:
        raise SystemExit(f"mode {mode}: the client process failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--tree", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--child", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.calls)
        return
    modes = args.modes.split(",")
    print(f"mlwatch client under misbehaving peers: {args.calls:,} calls a mode, tree {args.tree}")
    results = {mode: run_mode(mode, args.calls, args.tree) for mode in modes}
    base = results.get("ok")
    print(
        f"{'mode':8} {'p50 µs':>7} {'p99':>6} {'p99.9':>6} {'max µs':>9} {'added':>6} "
        f"{'vs ok':>6} {'RSS MiB':>12} {'peak':>7} {'shutdown':>12} {'raised':>6}  drops"
    )
    for mode, r in results.items():
        call, bare = r["call"], r["bare"]
        added = call["p50"] - bare["p50"]
        ratio = added / (base["call"]["p50"] - base["bare"]["p50"]) if base else float("nan")
        print(
            f"{mode:8} {call['p50']:7.2f} {call['p99']:6.2f} {call['p999']:6.1f} "
            f"{call['max']:9.0f} {added:6.2f} {ratio:6.2f} "
            f"{r['rss_before_mib']:5.0f} → {r['rss_after_mib']:4.0f} {r['hwm_mib']:7.0f} "
            f"{r['shutdown']!s:>5} {r['shutdown_s']:5.2f} s {r['raised']:6d}  "
            + ", ".join(f"{k} {v:,}" for k, v in sorted(r["drops"].items()))
        )


if __name__ == "__main__":
    main()
