"""The repository's Kubernetes Deployment as a pod podman can play: the pod template of
``base`` with the classic-sidecar component (podman 4.3 has no native sidecars), its
images set to the test image, and what podman cannot take from a cluster given as host
paths (the ConfigMap, the Secret: podman's secretKeyRef does not work) and host ports."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml


def playable_pod(
    deployment: dict[str, Any], image: str, files: dict[str, Path], ports: dict[str, int]
) -> dict[str, Any]:
    """A Pod from ``deployment``: ``files`` maps volume names to host paths, ``ports``
    container port names to host ports on 127.0.0.1."""
    template = copy.deepcopy(deployment["spec"]["template"])
    spec = template["spec"]
    assert not spec.pop("initContainers", None), "render with the classic-sidecar component"
    for container in spec["containers"]:
        container["image"] = image
        for port in container.get("ports", []):
            if port["name"] in ports:
                port.update(hostPort=ports[port["name"]], hostIP="127.0.0.1")
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            container.pop(probe, None)  # podman runs them with curl, which the image has not
    spec["volumes"] = [
        {"name": v["name"], "hostPath": {"path": str(files[v["name"]])}}
        if v["name"] in files
        else v
        for v in spec["volumes"]
    ]
    metadata = {"name": "mlwatch-pod-test", "labels": template["metadata"]["labels"]}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def deployment_of(rendered: str) -> dict[str, Any]:
    return next(d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "Deployment")
