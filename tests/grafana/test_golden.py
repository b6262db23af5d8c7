"""The committed dashboards/ directory equals a fresh build of the example config."""

from __future__ import annotations

import shutil
from pathlib import Path

from mlwatch.cli import main
from mlwatch.grafana.render import differences
from tests.grafana.helpers import DASHBOARDS, EXAMPLE, REBUILD, build
from tests.helpers import REPO


def test_the_committed_files_equal_a_fresh_build() -> None:
    assert differences(build(), DASHBOARDS) == [], REBUILD


def test_the_comparison_sees_a_change_and_a_leftover(tmp_path: Path) -> None:
    out = tmp_path / "dashboards"
    shutil.copytree(DASHBOARDS, out)
    overview = out / "mlwatch-overview-churn.json"
    overview.write_text(overview.read_text().replace("Traffic", "Trafic"))
    (out / "mlwatch-overview-gone.json").write_text("{}\n")
    (out / "team-made.json").write_text("{}\n")  # not generated: left alone
    assert differences(build(), out) == [
        "mlwatch-overview-churn.json",
        "mlwatch-overview-gone.json",
    ]


def test_the_command_writes_then_checks(tmp_path: Path, capsys) -> None:
    out = tmp_path / "dashboards"
    config = str(REPO / EXAMPLE)
    assert main(["dashboards", "build", "--config", config, "--out", str(out)]) == 0
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.*")) == sorted(build())
    assert main(["dashboards", "build", "--config", config, "--out", str(out), "--check"]) == 0
    (out / "mlwatch-fleet.json").unlink()
    assert main(["dashboards", "build", "--config", config, "--out", str(out), "--check"]) == 1
    assert "mlwatch-fleet.json" in capsys.readouterr().out


def test_the_command_needs_a_config(monkeypatch) -> None:
    monkeypatch.delenv("MLWATCH_CONFIG", raising=False)
    assert main(["dashboards", "build"]) == 2
