"""The sidecar image and podman for the container tests: the image built once per session
by sidecar/build-image.sh, containers run with the settings this host needs
(sidecar/containers.conf), each removed at the end."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import IN_CI, REPO

TAG = "localhost/mlwatch-sidecar:test"
ENV = {
    **os.environ,
    "CONTAINERS_CONF": os.environ.get("CONTAINERS_CONF", str(REPO / "sidecar" / "containers.conf")),
}
TOKEN = "container-test-token-0123456789"


def require_tools() -> None:
    missing = [t for t in ("podman", "buildah", "mmdebstrap") if shutil.which(t) is None]
    if missing:
        message = (
            f"{', '.join(missing)} not installed (apt-get install podman buildah mmdebstrap runc)"
        )
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


def podman(
    *args: str, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    run = subprocess.run(
        ["podman", *args], capture_output=True, text=True, env=ENV, timeout=timeout
    )
    if check and run.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)}: {run.stderr.strip()}")
    return run


def build_image() -> str:
    """The image of this checkout (the base is cached in ~/.cache/mlwatch); the previous
    test image is removed rather than left dangling."""
    old = podman("image", "inspect", "--format", "{{.Id}}", TAG, check=False).stdout.strip()
    run = subprocess.run(
        ["bash", str(REPO / "sidecar" / "build-image.sh"), TAG],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=1800,
    )
    if run.returncode != 0:
        raise AssertionError(f"sidecar/build-image.sh failed:\n{run.stderr[-4000:]}")
    new = podman("image", "inspect", "--format", "{{.Id}}", TAG).stdout.strip()
    if old and old != new:
        podman("rmi", old, check=False)
    return TAG


def inspect(image: str) -> dict[str, Any]:
    return dict(json.loads(podman("image", "inspect", image).stdout)[0])


def get(url: str, token: str | None = None, timeout: float = 5) -> tuple[int, Any]:
    """(status, JSON body or text) of a GET; never raises for an HTTP error."""
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read().decode()
            status = response.status
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.read().decode()
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body


def post_events(url: str, events: list[dict[str, Any]], token: str = TOKEN) -> int:
    request = urllib.request.Request(
        url + "/v1/events",
        data=json.dumps(events).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return int(json.loads(response.read())["accepted"])


def token_file(directory: Path) -> Path:
    path = directory / "token"
    path.write_text(TOKEN)
    path.chmod(0o644)
    return path
