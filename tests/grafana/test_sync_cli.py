"""``mlwatch dashboards sync`` end to end: the example config's dashboards written to the
fake Grafana through the command, then synced again unchanged, after a hand edit, with
--force, --dry-run and --prune after a model is removed. The token never reaches the output."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

pytest.importorskip("grafana_client")

from tests.grafana.fake_grafana import FakeGrafana
from tests.helpers import REPO

TOKEN = "glsa_cli_test_token_c0ffee42"
EXAMPLE = REPO / "alerts" / "example.mlwatch.yaml"
MLWATCH = (sys.executable, "-m", "mlwatch", "dashboards")


@pytest.fixture
def fake() -> Iterator[FakeGrafana]:
    with FakeGrafana(token=TOKEN) as grafana:
        yield grafana


def sync(config: Path, fake: FakeGrafana, *args: str, token: str = TOKEN) -> tuple[int, str]:
    env = {"PATH": "/usr/bin:/bin", "MLWATCH_GRAFANA_TOKEN": token}
    run = subprocess.run(
        [*MLWATCH, "sync", "--config", str(config), "--url", fake.url, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=REPO,
    )
    assert not token or token not in run.stdout + run.stderr
    return run.returncode, run.stdout + run.stderr


def committed(uid: str) -> dict[str, object]:
    return dict(json.loads((REPO / "dashboards" / f"{uid}.json").read_text()))


def committed_rule_uids() -> set[str]:
    path = REPO / "dashboards" / "provisioning" / "alerting" / "mlwatch-rules.yml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return {rule["uid"] for group in data["groups"] for rule in group["rules"]}


def test_the_example_config_synced_then_kept_equal(fake: FakeGrafana, tmp_path: Path) -> None:
    code, out = sync(EXAMPLE, fake)
    assert code == 0, out
    assert set(fake.folders) == {"mlwatch", "mlwatch-churn", "mlwatch-eta"}
    assert fake.dashboards["mlwatch-overview-churn"].folder_uid == "mlwatch-churn"
    assert fake.dashboards["mlwatch-fleet"].folder_uid == "mlwatch"
    built = sorted(p.stem for p in (REPO / "dashboards").glob("*.json"))
    assert sorted(fake.dashboards) == built  # every dashboard the build writes, no other
    stored = fake.dashboards["mlwatch-drift-churn"].content
    assert stored["panels"] == committed("mlwatch-drift-churn")["panels"]
    assert set(fake.rules) == committed_rule_uids()  # the rules of the provisioning file
    assert {r["folderUID"] for r in fake.rules.values()} == set(fake.folders)

    writes = len(fake.writes())
    code, out = sync(EXAMPLE, fake)
    assert code == 0 and len(fake.writes()) == writes, out  # unchanged: nothing posted

    fake.hand_edit("mlwatch-overview-eta")
    code, out = sync(EXAMPLE, fake)
    assert code == 1 and "mlwatch-overview-eta" in out, out  # reported, kept
    assert any(
        p.get("title") == "added by hand"
        for p in fake.dashboards["mlwatch-overview-eta"].content["panels"]
    )  # type: ignore[union-attr]
    code, out = sync(EXAMPLE, fake, "--force")
    assert code == 0, out
    panels = fake.dashboards["mlwatch-overview-eta"].content["panels"]
    assert all(p.get("title") != "added by hand" for p in panels)  # type: ignore[union-attr]

    spec = yaml.safe_load(EXAMPLE.read_text())
    spec["models"] = [m for m in spec["models"] if m["name"] != "eta"]
    smaller = tmp_path / "mlwatch.yaml"
    smaller.write_text(yaml.safe_dump(spec))
    writes = len(fake.writes())
    code, out = sync(smaller, fake, "--prune", "--dry-run")
    assert code == 0 and "dry run" in out and "mlwatch-overview-eta" in out, out
    assert len(fake.writes()) == writes  # a dry run writes nothing
    code, out = sync(smaller, fake)
    assert "mlwatch-overview-eta" in fake.dashboards  # kept without --prune
    code, out = sync(smaller, fake, "--prune")
    assert code == 0, out
    assert not any(uid.endswith("-eta") for uid in fake.dashboards)
    assert fake.rules and not any(r["folderUID"] == "mlwatch-eta" for r in fake.rules.values())


def test_a_refused_token_is_one_clear_line(fake: FakeGrafana) -> None:
    code, out = sync(EXAMPLE, fake, token="glsa_wrong_token_0000")
    assert code == 2, out
    assert "token" in out.lower() and "Traceback" not in out


def test_no_url_and_no_token_are_configuration_errors(fake: FakeGrafana) -> None:
    run = subprocess.run(
        [*MLWATCH, "sync", "--config", str(EXAMPLE)],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin"},
        cwd=REPO,
    )
    assert run.returncode == 2 and "grafana_url" in run.stderr, run.stderr
    code, out = sync(EXAMPLE, fake, token="")
    assert code == 2 and "grafana_token" in out, out
