"""The sidecar image, built from this checkout and run with podman as a user runs it:
non-root, read-only root filesystem, every capability dropped, the spool on a volume. It
answers, loses no acknowledged event across ``kill -9`` and a restart, and stops on
SIGTERM within a bound."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pytest

from tests.container.podman import (
    TOKEN,
    get,
    inspect,
    podman,
    post_events,
    token_file,
)
from tests.helpers import event, free_port, wait_until

pytestmark = pytest.mark.integration
STOP_BOUND_S = 10.0


class Sidecar:
    """One container of the image on the host network (127.0.0.1 only), its volume kept
    across restarts."""

    def __init__(self, image: str, tmp: Path, *env: str) -> None:
        self.name = f"mlwatch-test-{uuid.uuid4().hex[:8]}"
        self.volume = self.name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.image, self.tmp, self.env = image, tmp, env
        podman("volume", "create", self.volume)

    def create(self) -> None:
        """A new container on the volume (as Kubernetes makes one after a crash)."""
        podman("rm", "-f", "-t", "0", self.name, check=False)
        podman(
            "create",
            "--name", self.name,
            "--network=host",
            "--read-only",
            "--user", "10001:10001",
            "--cap-drop=ALL",
            "--security-opt", "no-new-privileges",
            "-v", f"{self.volume}:/var/lib/mlwatch",
            "-v", f"{token_file(self.tmp)}:/run/secrets/token:ro",
            "-e", "MLWATCH_TOKEN_FILE=/run/secrets/token",
            "-e", f"MLWATCH_PORT={self.port}",
            *[arg for pair in (("-e", e) for e in self.env) for arg in pair],
            self.image,
        )  # fmt: skip

    def start(self) -> float:
        """Start; the seconds until /readyz answers 200."""
        began = time.monotonic()
        podman("start", self.name)
        wait_until(lambda: get(self.url + "/readyz")[0] == 200, 60, what="sidecar ready")
        return time.monotonic() - began

    def stored(self, model: str) -> int:
        status, body = get(f"{self.url}/v1/models/{model}/status", TOKEN)
        return int(body["events_stored"]) if status == 200 else -1

    def remove(self) -> None:
        podman("rm", "-f", "-t", "0", self.name, check=False)
        podman("volume", "rm", "-f", self.volume, check=False)


@pytest.fixture
def sidecar(image: str, tmp_path: Path) -> Iterator[Sidecar]:
    running = Sidecar(image, tmp_path)
    try:
        running.create()
        yield running
    finally:
        running.remove()


def test_the_image_says_what_it_is_and_runs_as_a_fixed_user(image: str) -> None:
    config = inspect(image)["Config"]
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["mlwatch", "sidecar"]
    assert "/var/lib/mlwatch" in config["Volumes"]
    labels = config["Labels"]
    for key in ("title", "version", "revision", "created", "licenses"):
        assert labels.get(f"org.opencontainers.image.{key}"), key
    assert labels["org.opencontainers.image.version"] == version("mlwatch")


def test_read_only_non_root_it_answers_and_writes_only_its_volume(sidecar: Sidecar) -> None:
    cold = sidecar.start()
    assert get(sidecar.url + "/healthz")[0] == 200
    assert get(sidecar.url + "/metrics")[0] == 401  # the token is required
    assert post_events(sidecar.url, [event(i) for i in range(20)]) == 20
    wait_until(lambda: sidecar.stored("iris") == 20, 30, what="20 events stored")
    status, metrics = get(sidecar.url + "/metrics", TOKEN)
    assert (
        status == 200 and 'mlwatch_predictions_total{environment="default",model="iris"' in metrics
    )
    whoami = podman("exec", sidecar.name, "id", "-u").stdout.strip()
    assert whoami == "10001"
    refused = podman("exec", sidecar.name, "touch", "/opt/mlwatch/x", check=False)
    assert refused.returncode != 0 and "Read-only file system" in refused.stderr
    print(f"\ncold start to /readyz: {cold:.2f} s")


def test_kill_9_and_a_restart_lose_no_acknowledged_event(sidecar: Sidecar) -> None:
    sidecar.start()
    acknowledged = 0
    for batch in range(30):
        events = [event(batch * 50 + i, request_id=f"b{batch}-{i}") for i in range(50)]
        acknowledged += post_events(sidecar.url, events)
    podman("kill", "-s", "KILL", sidecar.name)
    podman("wait", sidecar.name, timeout=30)
    sidecar.create()  # a new container on the same volume
    sidecar.start()
    wait_until(lambda: sidecar.stored("iris") == acknowledged, 60, what="every event stored")
    assert acknowledged == 1500


def test_sigterm_stops_it_within_the_bound_and_keeps_the_events(sidecar: Sidecar) -> None:
    sidecar.start()
    assert post_events(sidecar.url, [event(i) for i in range(100)]) == 100
    began = time.monotonic()
    podman("stop", "-t", "30", sidecar.name)
    took = time.monotonic() - began
    state = podman("inspect", "--format", "{{.State.ExitCode}}", sidecar.name).stdout.strip()
    assert took < STOP_BOUND_S, f"stop took {took:.1f} s"
    assert state == "0", f"exit code {state} (137 would be the SIGKILL after the timeout)"
    sidecar.start()
    wait_until(lambda: sidecar.stored("iris") == 100, 30, what="100 events stored")


def test_with_elasticsearch_configured_and_down_it_serves_and_keeps_events(
    image: str, tmp_path: Path
) -> None:
    """The image has the Elasticsearch client; a node that does not answer costs no event
    (the spool keeps them for it) and the store still takes them."""
    down = Sidecar(image, tmp_path, "MLWATCH_ELASTICSEARCH_URL=http://127.0.0.1:9")
    try:
        down.create()
        podman("start", down.name)
        wait_until(lambda: get(down.url + "/healthz")[0] == 200, 60, what="sidecar up")
        assert post_events(down.url, [event(i) for i in range(10)]) == 10
        wait_until(lambda: down.stored("iris") == 10, 30, what="10 events stored")
        status, body = get(f"{down.url}/v1/models/iris/status", TOKEN)
        assert status == 200 and body["sinks"]["elasticsearch"]["lag_bytes"] > 0
    finally:
        down.remove()
