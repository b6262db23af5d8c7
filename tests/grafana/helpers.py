"""Builds of the example config for the Grafana tests."""

from __future__ import annotations

from pathlib import Path

import yaml

from mlwatch.grafana.build import build_dashboards
from mlwatch.grafana.common import Options
from mlwatch.grafana.render import render_files
from mlwatch.settings import load_config
from tests.helpers import REPO

EXAMPLE = "alerts/example.mlwatch.yaml"
DASHBOARDS = REPO / "dashboards"
REBUILD = f"rebuild: mlwatch dashboards build --config {EXAMPLE} --out dashboards"


def example() -> dict:
    """The example config as data, to change in a test."""
    return yaml.safe_load((REPO / EXAMPLE).read_text(encoding="utf-8"))


def build(raw: dict | None = None, tmp: Path | None = None) -> dict[str, str]:
    """Every file of a build of ``raw`` (default: the example as committed)."""
    path = REPO / EXAMPLE
    if raw is not None:
        assert tmp is not None
        path = tmp / "mlwatch.yaml"
        path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    config = load_config(path, env={})
    options = Options(source=EXAMPLE)
    return render_files(build_dashboards(config, options), config, options)
