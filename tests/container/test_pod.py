"""The repository's Deployment run as a two-container pod under ``podman kube play``: a
model server with the mlwatch decorator in one container, the sidecar image in the other,
sharing localhost; every prediction ends up in the sidecar's store and /metrics."""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.container.pod import deployment_of, playable_pod
from tests.container.podman import TOKEN, get, podman, token_file
from tests.helpers import REPO, free_port, wait_until
from tests.kubernetes.cluster import Tools, Unavailable, base_with, skip_or_fail, tools_dir

pytestmark = pytest.mark.integration
KUSTOMIZE = REPO / "sidecar" / "kubernetes"


def rendered_classic(tmp: Path, *components: str) -> str:
    """base with ``components`` and classic-sidecar, through kustomize."""
    try:
        tools = Tools(tools_dir(), tmp)
    except Unavailable as exc:
        skip_or_fail(str(exc))
    return tools.kustomize(base_with(tmp / "classic", KUSTOMIZE, *components, "classic-sidecar"))


def call(port: int, path: str, body: object) -> object:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


#: mode -> (components, the model container's command, how a caller predicts x)
MODES = {
    "decorator": ((), "server.py", lambda port, x: call(port, "/predict", {"x": x})["prediction"]),
    "proxy": (
        ("proxy-mode",),
        "tfserving.py",
        lambda port, x: call(port, "/v1/models/model:predict", {"instances": [[x]]})["predictions"][
            0
        ],
    ),
}


@pytest.fixture(params=list(MODES))
def pod(
    request: pytest.FixtureRequest, image: str, tmp_path: Path
) -> Iterator[tuple[str, int, int]]:
    """(mode, the port callers use, the sidecar's port) of the running pod."""
    if os.geteuid() != 0:
        pytest.skip("the pod's host-path spool is given to UID 10001: needs root")
    mode = request.param
    components, server, _ = MODES[mode]
    rendered = rendered_classic(tmp_path, *components)
    config = tmp_path / "config"
    config.mkdir()
    config_map = next(d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "ConfigMap")
    (config / "mlwatch.yaml").write_text(config_map["data"]["mlwatch.yaml"])
    secret = tmp_path / "secret"
    secret.mkdir()
    token_file(secret)
    spool = tmp_path / "spool"
    spool.mkdir()
    os.chown(spool, 10001, 10001)
    ports = {"http": free_port(), "proxy": free_port(), "mlwatch": free_port()}
    manifest = playable_pod(
        deployment_of(rendered),
        image,
        {"config": config, "token": secret, "spool": spool, "tmp": tmp_path / "podtmp"},
        ports,
    )
    (tmp_path / "podtmp").mkdir()
    (tmp_path / "podtmp").chmod(0o1777)
    model = next(c for c in manifest["spec"]["containers"] if c["name"] == "model")
    model["command"] = ["python3", f"/model/{server}"]
    model["volumeMounts"].append({"name": "model", "mountPath": "/model", "readOnly": True})
    manifest["spec"]["volumes"].append(
        {"name": "model", "hostPath": {"path": str(Path(__file__).parent / "model")}}
    )
    path = tmp_path / "pod.yaml"
    path.write_text(yaml.safe_dump(manifest))
    try:
        podman("kube", "play", "--replace", str(path), timeout=120)
        wait_until(
            lambda: get(f"http://127.0.0.1:{ports['mlwatch']}/readyz")[0] == 200,
            60,
            what="sidecar in the pod ready",
        )
        yield mode, ports["proxy" if mode == "proxy" else "http"], ports["mlwatch"]
    finally:
        podman("kube", "down", str(path), check=False, timeout=120)


def test_the_model_in_the_pod_is_monitored_by_the_sidecar(pod: tuple[str, int, int]) -> None:
    mode, model_port, sidecar_port = pod
    predict = MODES[mode][2]
    wait_until(lambda: predict(model_port, 0.9) == 1, 30, what="model server answers")
    answers = [predict(model_port, x / 100) for x in range(100)]
    assert answers == [int(x / 100 > 0.5) for x in range(100)]

    def stored() -> int:
        status, body = get(f"http://127.0.0.1:{sidecar_port}/v1/models/model/status", TOKEN)
        return int(body["events_stored"]) if status == 200 else -1

    wait_until(lambda: stored() == 101, 30, what="101 predictions stored")
    status, metrics = get(f"http://127.0.0.1:{sidecar_port}/metrics", TOKEN)
    assert status == 200
    line = next(
        ln
        for ln in metrics.splitlines()
        if ln.startswith("mlwatch_predictions_total{")
        and 'model="model"' in ln
        and 'status="ok"' in ln
    )
    assert float(line.rsplit(" ", 1)[1]) == 101
