"""The configs shipped under exporters/ are accepted by the real tools."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.helpers import REPO, require_binary

ROOT = REPO


def test_prometheus_scrape_config_passes_promtool(tmp_path: Path) -> None:
    promtool = require_binary("promtool")
    config = tmp_path / "prometheus.yml"
    shutil.copy(ROOT / "exporters/prometheus/prometheus.yml", config)
    (tmp_path / "token").write_text("secret\n")
    config.write_text(config.read_text().replace("/etc/mlwatch/token", str(tmp_path / "token")))
    proc = subprocess.run(
        [promtool, "check", "config", str(config)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout + proc.stderr
