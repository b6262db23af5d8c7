"""The README's quickstart runs as written: its ``serve.py`` block beside its shell block,
against a real sidecar started by that block.

Only what cannot run here changes: ``pip install`` lines are skipped (the test
environment has the packages), port 8765 becomes a free port and the block runs in a
temporary directory. A token set on one side only, a wrong URL or a sidecar that is not
ready would make ``serve.py`` print ``delivered: False`` and fail the test.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from tests.helpers import REPO, free_port

pytestmark = pytest.mark.integration


def quickstart_blocks() -> dict[str, str]:
    """The fenced blocks of the quickstart section, by language."""
    text = (REPO / "README.md").read_text()
    section = text.split("## Five-minute quickstart", 1)[1].split("\n## ", 1)[0]
    blocks: dict[str, str] = {}
    for lang, body in re.findall(r"```(\w+)\n(.*?)```", section, flags=re.S):
        blocks.setdefault(lang, body)
    return blocks


def test_the_quickstart_runs_as_written(tmp_path: Path) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    blocks = quickstart_blocks()
    port = str(free_port())
    (tmp_path / "serve.py").write_text(blocks["python"].replace("8765", port))
    shell = "\n".join(
        line for line in blocks["bash"].splitlines() if not line.startswith("pip install")
    ).replace("8765", port)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLWATCH_")}
    out_path, err_path = tmp_path / "stdout", tmp_path / "stderr"
    with out_path.open("w") as out_file, err_path.open("w") as err_file:
        proc = subprocess.Popen(  # files, not pipes: the background sidecar keeps them open
            ["bash", "-ec", shell],
            cwd=tmp_path,
            env=env,
            stdout=out_file,
            stderr=err_file,
            start_new_session=True,  # the sidecar is in this group: stopped below
        )
        try:
            proc.wait(timeout=180)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
    out, err = out_path.read_text(), err_path.read_text()
    assert proc.returncode == 0, out + err
    assert "delivered: True" in out, out + err
    status = json.loads(out.strip().splitlines()[-1])
    assert status["model"] == "iris" and status["events_stored"] > 0, status
    assert "not delivered" not in err and "rejected" not in err, err
