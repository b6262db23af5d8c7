"""What tests share besides fixtures: free ports, waiting for a condition, real-server
binaries, sample records. Fixtures are in conftest.py."""

from __future__ import annotations

import gzip
import json
import os
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(
    predicate: Callable[[], Any],
    timeout: float = 30.0,
    interval: float = 0.05,
    what: str = "condition",
) -> Any:
    """Poll ``predicate`` until it returns a truthy value, or fail after ``timeout``.

    For state no event announces (a server coming up, a row reaching a store): it waits
    for the condition, never for a fixed margin. Other exceptions count as "not yet"; an
    ``AssertionError`` from the predicate means "never" and fails at once.
    """
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except AssertionError:
            raise
        except Exception as exc:  # the server may not be up yet
            last_exc = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last error: {last_exc!r}")


def require_binary(name: str) -> str:
    """Path of a server binary; missing means skip locally but fail in CI."""
    import shutil

    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (apt-get install {name})"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


def event(i: int = 0, **overrides: Any) -> dict[str, Any]:
    """A valid wire-format event."""
    ev: dict[str, Any] = {
        "model": "iris",
        "version": "1",
        "request_id": f"r{i}",
        "latency_ms": 1.5,
        "status": "ok",
        "prediction": i % 3,
        "features": {"x": float(i), "color": "red"},
    }
    ev.update(overrides)
    return ev


def gz(records: list[Any]) -> bytes:
    return gzip.compress(json.dumps(records).encode())


def forward_port(sc: Any) -> int:
    """The bound port of a sidecar's forward input."""
    [fwd] = sc.inputs
    return int(fwd.port)


def make_certs(directory: Path) -> None:
    """A CA and a server certificate for 127.0.0.1 / localhost."""
    openssl = require_binary("openssl")
    directory.mkdir(parents=True, exist_ok=True)

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True, cwd=directory)

    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=mlwatch-test-ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
    )
    run(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "node.key",
        "-out",
        "node.csr",
    )
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run(
        "x509",
        "-req",
        "-in",
        "node.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "node.crt",
    )
