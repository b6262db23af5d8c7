"""The loop closed on real servers: a sidecar runs the drift jobs and exports the result,
a real Prometheus with the rules ``mlwatch alerts build`` generated scrapes it, the
alert fires, a real Alertmanager with the generated routing posts it to the sidecar, and
the sidecar starts each model's pipeline — at fakes that check every request as GitHub,
GitLab, Jenkins and Standard Webhooks document it (the signature verified with the
``standardwebhooks`` package).

The timings on the way (drift injected → gauge set → alert firing → webhook received)
are printed; ``-s`` shows them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from tests.alerting.providers import (
    FakeGitHub,
    FakeGitLab,
    FakeJenkins,
    FakeProvider,
    FakeWebhookReceiver,
    new_whsec,
)
from tests.helpers import free_port, wait_until
from tests.integration.servers import AlertmanagerProcess, PrometheusProcess, SidecarProcess

pytestmark = pytest.mark.integration
TOKEN = "loop-token-123456789"
GITHUB, GITLAB, JENKINS = "ghp_LoopGitHub0123456789", "glptt-Loop0123456789", "11LoopJenkins99"
MODELS = {"gh": "github", "gl": "gitlab", "jk": "jenkins", "wh": "webhook"}


@pytest.fixture
def fakes() -> Iterator[dict[str, FakeProvider]]:
    secret = new_whsec()
    providers: dict[str, FakeProvider] = {
        "github": FakeGitHub(token=GITHUB),
        "gitlab": FakeGitLab(token=GITLAB),
        "jenkins": FakeJenkins(api_tokens={"bot": JENKINS}, passwords={}, jobs={"job/retrain": ()}),
        "webhook": FakeWebhookReceiver(secret=secret),
    }
    providers["webhook"].secret_text = secret  # type: ignore[attr-defined]
    for fake in providers.values():
        fake.start()
    yield providers
    for fake in providers.values():
        fake.stop()


def targets(fakes: dict[str, FakeProvider], tmp: Path) -> list[dict[str, Any]]:
    (tmp / "hook.secret").write_text(fakes["webhook"].secret_text)  # type: ignore[attr-defined]
    return [
        {
            "name": "github",
            "kind": "github_workflow",
            "base_url": fakes["github"].url,
            "repo": "acme/models",
            "workflow": "retrain.yml",
            "ref": "main",
            "token_env": "GH_TOKEN",
        },
        {
            "name": "gitlab",
            "kind": "gitlab",
            "base_url": fakes["gitlab"].url,
            "project": "ml/churn-models",
            "ref": "main",
            "token_env": "GL_TOKEN",
        },
        {
            "name": "jenkins",
            "kind": "jenkins",
            "url": f"{fakes['jenkins'].url}/job/retrain",
            "user": "bot",
            "api_token_env": "JK_TOKEN",
        },
        {
            "name": "webhook",
            "kind": "webhook",
            "url": fakes["webhook"].url,
            "secret_file": str(tmp / "hook.secret"),
        },
    ]


def model(name: str, target: str, tmp: Path) -> dict[str, Any]:
    return {
        "name": name,
        "features": ["x"],
        "reference": str(tmp / "ref.csv"),
        "schedule": "1s",
        "window": "5m",
        "sliding": True,
        "alerts": {"for": "1s", "drift": {"for": "1s"}},
        "retrain": {"target": target, "on": [{"alert": "MlwatchFeatureDrift"}], "cooldown": "1h"},
    }


def build(tmp: Path, config: Path, token_file: Path, env: dict[str, str]) -> Path:
    out = tmp / "alerts"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "mlwatch",
            "alerts",
            "build",
            "--config",
            str(config),
            "--out",
            str(out),
            "--credentials-file",
            str(token_file),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},  # loading the config reads the targets' secrets
    )
    return out


def quick_routing(path: Path) -> dict[str, Any]:
    """The generated Alertmanager config, grouping in seconds instead of minutes."""
    doc = yaml.safe_load(path.read_text())
    for route in [doc["route"], *doc["route"].get("routes", [])]:
        route.update(group_wait="1s", group_interval="1s", repeat_interval="1h")
    return dict(doc)


def post_events(sc: SidecarProcess, name: str, rng: np.random.Generator) -> None:
    events = [
        {"model": name, "version": "1", "latency_ms": 1.0, "features": {"x": float(v)}}
        for v in rng.normal(3.0, 1.0, 300)  # the reference is N(0, 1): drifted
    ]
    req = urllib.request.Request(
        sc.url + "/v1/events",
        data=json.dumps(events).encode(),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 202


def gauge_set(sc: SidecarProcess, name: str) -> bool:
    req = urllib.request.Request(sc.url + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        text = r.read().decode()
    return (
        f'mlwatch_feature_drift_detected{{environment="default",feature="x",model="{name}",version="1"}} 1.0'
        in text
    )


def test_drift_to_alert_to_alertmanager_to_every_pipeline(
    tmp_path: Path, fakes: dict[str, FakeProvider]
) -> None:
    rng = np.random.default_rng(7)
    (tmp_path / "ref.csv").write_text("x\n" + "\n".join(str(v) for v in rng.normal(0, 1, 2000)))
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    port = free_port()
    config = tmp_path / "mlwatch.yaml"
    config.write_text(
        json.dumps(
            {
                "port": port,
                "models": [model(name, target, tmp_path) for name, target in MODELS.items()],
                "targets": targets(fakes, tmp_path),
            }
        )
    )
    env = {
        "MLWATCH_TOKEN": TOKEN,
        "MLWATCH_CONFIG": str(config),
        "GH_TOKEN": GITHUB,
        "GL_TOKEN": GITLAB,
        "JK_TOKEN": JENKINS,
    }
    sc = SidecarProcess(tmp_path / "data", port=port, **env).start()
    alerts = build(tmp_path, config, token_file, env)
    am = AlertmanagerProcess(tmp_path, quick_routing(alerts / "alertmanager.yml")).start()
    scrape = {
        "job_name": "mlwatch",
        "static_configs": [{"targets": [f"127.0.0.1:{port}"]}],
        "authorization": {"type": "Bearer", "credentials_file": str(token_file)},
    }
    prom = PrometheusProcess(
        tmp_path,
        [scrape],
        rule_files=[str(p) for p in sorted((alerts / "rules").glob("*.yml"))],
        alertmanager=am.address,
        args=("--rules.alert.resend-delay=1s",),
    ).start()
    try:
        t0 = time.monotonic()
        for name in MODELS:
            post_events(sc, name, rng)
        wait_until(lambda: all(gauge_set(sc, n) for n in MODELS), timeout=60, what="drift gauges")
        t_gauge = time.monotonic()
        wait_until(
            lambda: (
                {
                    a["labels"]["model"]
                    for a in prom.alerts()
                    if a["labels"]["alertname"] == "MlwatchFeatureDrift" and a["state"] == "firing"
                }
                >= set(MODELS)
            ),
            timeout=60,
            what="MlwatchFeatureDrift firing for every model",
        )
        t_fire = time.monotonic()
        wait_until(
            lambda: all(f.effect_keys() for f in fakes.values()),
            timeout=60,
            what="every pipeline started",
        )
        t_hook = time.monotonic()
        time.sleep(3)  # Alertmanager resends every group_interval: still one run each
        for target in MODELS.values():
            keys = fakes[target].effect_keys()
            assert len(keys) == 1, (target, keys)
            assert all(r.status and r.status < 300 for r in fakes[target].requests), target
        github_inputs = fakes["github"].requests[0].json()["inputs"]
        assert github_inputs["model"] == "gh" and github_inputs["version"] == "1"
        assert "MlwatchFeatureDrift" in github_inputs["evidence"]
        print(
            f"\ndrift injected -> gauge {t_gauge - t0:.1f} s (scheduler: first run 10 s after "
            f"start, then every 1 s) -> firing {t_fire - t_gauge:.1f} s (scrape 1 s, for 1s) "
            f"-> pipelines {t_hook - t_fire:.1f} s (group_wait 1s, outbox); "
            f"total {t_hook - t0:.1f} s"
        )
        for log in (sc.log(), prom.log(), am.log()):
            assert TOKEN not in log and GITHUB not in log and GITLAB not in log
    finally:
        prom.stop()
        am.stop()
        sc.stop()
