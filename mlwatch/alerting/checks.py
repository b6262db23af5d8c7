"""``mlwatch alerts test``: the real tools judge the generated files.

``promtool check rules`` on every rule file, ``promtool test rules`` on the unit tests in
``tests/``, and ``amtool check-config`` on the Alertmanager configuration. Each command is
printed before it runs and a failure shows the tool's own message: the point is that what
Prometheus and Alertmanager would refuse is found before they are given the files.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from mlwatch.alerting.render import ALERTMANAGER_FILE, RULES_DIR
from mlwatch.errors import MlwatchError

#: Each tool and the Debian package that provides it.
PACKAGES = {"promtool": "prometheus", "amtool": "prometheus-alertmanager"}
TIMEOUT_S = 300


class CheckError(MlwatchError):
    """A tool is missing, or a file it should check is not there."""


def commands(directory: Path, which: Callable[[str], str | None] = shutil.which) -> list[list[str]]:
    """The commands to run, tools resolved; a missing tool or file raises
    :class:`CheckError` saying what to install or build."""
    tools = {}
    for tool, package in PACKAGES.items():
        path = which(tool)
        if path is None:
            raise CheckError(
                f"{tool} is not installed: it comes with the Debian package {package} "
                f"(apt-get install {package})"
            )
        tools[tool] = path
    rules = sorted((directory / RULES_DIR).glob("*.yml"))
    tests = sorted((directory / "tests").glob("*.yml"))
    config = directory / ALERTMANAGER_FILE
    if not rules or not config.is_file():
        raise CheckError(
            f"no rule files in {directory / RULES_DIR} or no {config}: "
            f"run mlwatch alerts build --out {directory} first"
        )
    if not tests:
        raise CheckError(f"no promtool unit tests (*.yml) in {directory / 'tests'}")
    out = [[tools["promtool"], "check", "rules", str(path)] for path in rules]
    out.append([tools["promtool"], "test", "rules", *map(str, tests)])
    out.append([tools["amtool"], "check-config", str(config)])
    return out


def run_checks(
    directory: Path, out: TextIO, which: Callable[[str], str | None] = shutil.which
) -> bool:
    """Run every check, printing each command and, when it fails, the tool's output;
    True when all passed. All run even after a failure, so one pass shows every problem."""
    ok = True
    for argv in commands(directory, which):
        shown = " ".join([Path(argv[0]).name, *argv[1:]])
        print(f"$ {shown}", file=out, flush=True)
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            print(f"FAILED: no answer within {TIMEOUT_S}s", file=out)
            ok = False
            continue
        if proc.returncode != 0:
            ok = False
            message = (proc.stdout + proc.stderr).strip()
            print(f"FAILED (exit {proc.returncode}):\n{message}", file=out)
    print("all checks passed" if ok else "some checks failed", file=out)
    return ok
