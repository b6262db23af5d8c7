"""Fixtures of the report tests: data files with a known drift, the ``mlwatch report``
command run in process, and Debian's Chromium driven by Playwright (its own browser
download is not needed: ``executable_path`` points at the system's ``chromium``).

A missing ``chromium`` fails the browser tests with the command that installs it (never
a skip: .ci/run installs it, and a report nobody opened in a browser is not tested).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlwatch.cli import build_parser

XSS = "<script>alert(1)</script>"
ARTIFACTS = Path(os.environ.get("MLWATCH_TEST_ARTIFACTS", "test-artifacts"))


def write_pair(directory: Path, n: int = 4000, seed: int = 3) -> tuple[Path, Path]:
    """Reference and current Parquet files: ``x`` shifted by half a standard deviation,
    ``color`` with a new category, ``y`` unchanged, and a column named like markup."""
    rng = np.random.default_rng(seed)
    ref = pd.DataFrame(
        {
            "x": rng.normal(size=n),
            "y": rng.exponential(size=n),
            "color": rng.choice(["red", "green", "blue"], size=n),
            XSS: rng.normal(size=n),
        }
    )
    cur = pd.DataFrame(
        {
            "x": rng.normal(0.5, 1.0, size=n),
            "y": rng.exponential(size=n),
            "color": rng.choice(["red", "green", "<b>violet</b>"], size=n),
            XSS: rng.normal(size=n),
        }
    )
    cur.loc[:9, "y"] = np.nan
    paths = directory / "reference.parquet", directory / "current.parquet"
    ref.to_parquet(paths[0])
    cur.to_parquet(paths[1])
    return paths


def run_cli(*argv: str) -> tuple[int, str, str]:
    """``mlwatch ARGV`` in process: (exit code, stdout, stderr)."""
    args = build_parser().parse_args(list(argv))
    out, err = io.StringIO(), io.StringIO()
    if args.command == "report":
        from mlwatch.cli import report

        try:
            code = report.run(args, out=out, err=err)
        except Exception as exc:  # what main() turns into exit 2, kept visible here
            err.write(f"{type(exc).__name__}: {exc}\n")
            code = 2
        return code, out.getvalue(), err.getvalue()
    from mlwatch.cli import drift

    return drift.run(args, out=out, err=err), out.getvalue(), err.getvalue()


def parse(argv: list[str]) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def embedded(html: str) -> dict[str, Any]:
    """The report's data model, read back from its JSON block."""
    m = re.search(
        r'<script type="application/json" id="mlwatch-report-data">(.*?)</script>', html, re.S
    )
    assert m is not None, "no embedded data block"
    data: dict[str, Any] = json.loads(m.group(1))
    return data


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """A headless Chromium (Debian's), shared by a module's tests."""
    path = shutil.which("chromium")
    if path is None:
        pytest.fail(
            "chromium is not installed: apt-get install -y --no-install-recommends chromium "
            "(.ci/run installs it); the report tests need a real browser"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=path, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


class Opened:
    """A page with what it logged and requested while it opened."""

    def __init__(self, browser: Any, path: Path) -> None:
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.dialogs: list[str] = []
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.page = self.context.new_page()
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("dialog", self._dialog)
        self.page.goto(path.resolve().as_uri(), wait_until="load")

    def _console(self, msg: Any) -> None:
        if msg.type in ("error", "warning"):
            self.errors.append(f"{msg.type}: {msg.text}")

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def open_page(chromium: Any) -> Iterator[Any]:
    pages: list[Opened] = []

    def opener(path: Path) -> Opened:
        pages.append(Opened(chromium, path))
        return pages[-1]

    yield opener
    for p in pages:
        p.close()


def save_screenshot(page: Any, name: str) -> Path:
    """A full-page screenshot kept as a test artifact (test-artifacts/, gitignored)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    return path
