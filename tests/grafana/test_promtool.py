"""Every panel's PromQL parses: each expression becomes a recording rule of a throwaway
rule file that the real ``promtool check rules`` reads (it parses without a server).
test_live_queries.py runs them against a real Prometheus with data."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from mlwatch.grafana.build import build_dashboards, panel_queries
from mlwatch.grafana.common import Options
from mlwatch.settings import load_config
from tests.grafana.helpers import EXAMPLE
from tests.helpers import IN_CI, REPO

PROMTOOL = shutil.which("promtool")
pytestmark = pytest.mark.skipif(
    PROMTOOL is None and not IN_CI, reason="promtool (Debian package prometheus) is not on PATH"
)


def check(exprs: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    rules = [{"record": f"mlwatch_dashboard:expr{i}", "expr": e} for i, e in enumerate(exprs)]
    path = tmp_path / "exprs.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    return subprocess.run(
        [PROMTOOL or "promtool", "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_every_panel_expression_parses(tmp_path: Path) -> None:
    config = load_config(REPO / EXAMPLE, env={})
    queries = panel_queries(build_dashboards(config, Options()))
    run = check([q.expr for q in queries], tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr


def test_a_broken_expression_fails(tmp_path: Path) -> None:
    run = check(['sum by (model (rate(mlwatch_predictions_total{model="$model"}[5m]))'], tmp_path)
    assert run.returncode != 0
