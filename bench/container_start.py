"""The sidecar image: its size, and its cold start (``podman run`` to ``/readyz`` 200),
against the base image starting a bare ``python3 -c pass`` in the same run (what any
Python container costs on this host).

    python bench/container_start.py [--image localhost/mlwatch-sidecar:0.1.0] [--runs 10]

Needs podman and an image built by sidecar/build-image.sh.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "CONTAINERS_CONF": str(REPO / "sidecar" / "containers.conf")}
BASE = "localhost/mlwatch-base:bookworm-v1"


def podman(*args: str) -> str:
    return subprocess.run(
        ["podman", *args], check=True, capture_output=True, text=True, env=ENV
    ).stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def sidecar_start(image: str) -> float:
    """Seconds from ``podman run`` to ``/readyz`` 200, on a fresh volume."""
    port = free_port()
    volume = podman("volume", "create").strip()
    began = time.perf_counter()
    name = podman(
        "run", "-d", "--network=host", "--read-only", "--user", "10001:10001",
        "--cap-drop=ALL", "-v", f"{volume}:/var/lib/mlwatch", "-e", f"MLWATCH_PORT={port}",
        image,
    ).strip()  # fmt: skip
    try:
        while not ready(f"http://127.0.0.1:{port}/readyz"):
            if time.perf_counter() - began > 60:
                raise SystemExit(f"not ready after 60 s:\n{podman('logs', name)}")
            time.sleep(0.01)
        return time.perf_counter() - began
    finally:
        podman("rm", "-f", "-t", "0", name)
        podman("volume", "rm", "-f", volume)


def bare_start() -> float:
    began = time.perf_counter()
    podman("run", "--rm", "--network=host", BASE, "python3", "-c", "pass")
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default="localhost/mlwatch-sidecar:0.1.0")
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    size = json.loads(podman("image", "inspect", args.image))[0]["Size"]
    base = json.loads(podman("image", "inspect", BASE))[0]["Size"]
    bare = [bare_start() for _ in range(args.runs)]
    cold = [sidecar_start(args.image) for _ in range(args.runs)]
    print(f"image {args.image}: {size / 1e6:.0f} MB (base {base / 1e6:.0f} MB)")
    for label, values in (
        ("bare python3 -c pass (run to exit)", bare),
        ("sidecar run to /readyz", cold),
    ):
        print(
            f"{label}: p50 {statistics.median(values):.2f} s, max {max(values):.2f} s "
            f"over {len(values)} runs"
        )
    print(f"ratio sidecar/bare (p50): {statistics.median(cold) / statistics.median(bare):.2f}")


if __name__ == "__main__":
    main()
