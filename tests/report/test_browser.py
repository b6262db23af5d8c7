"""The report opened in a real headless Chromium: it loads without errors or requests,
shows its sections and plots, its filter filters, and 1,000 features open quickly."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.report.conftest import XSS, run_cli, save_screenshot, write_pair

pytestmark = pytest.mark.chromium


@pytest.fixture(scope="module")
def small_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("report")
    ref, cur = write_pair(directory)
    out = directory / "report.html"
    code, _, err = run_cli("report", str(ref), str(cur), "-o", str(out))
    assert code == 0, err
    return out


def visible_names(page: Any) -> list[str]:
    return list(
        page.eval_on_selector_all(
            "details.feature:not([hidden])", "els => els.map(e => e.dataset.name)"
        )
    )


def test_opens_offline_without_errors_and_shows_every_section(
    small_report: Path, open_page: Any
) -> None:
    opened = open_page(small_report)
    page = opened.page
    assert opened.errors == []
    assert opened.requests == [small_report.resolve().as_uri()]
    assert opened.dialogs == []  # the feature named <script>alert(1)</script> ran nothing
    assert page.locator("#summary").is_visible()
    assert page.locator("#verdict").inner_text().strip() == "Dataset drift"
    assert sorted(visible_names(page)) == sorted(["x", "y", "color", XSS])
    names = page.locator("details.feature .name").all_inner_texts()
    assert XSS in names  # shown as text, not run as markup
    assert page.locator("script").count() == 2  # the data block and the filter, no more
    save_screenshot(page, "report-small.png")


def test_plots_are_inline_svg_on_the_features(small_report: Path, open_page: Any) -> None:
    page = open_page(small_report).page
    x = page.locator('details.feature[data-name="x"]')
    assert x.locator("svg.histogram rect.ref").count() == 30
    assert x.locator("svg.histogram path.cur").count() == 1
    color = page.locator('details.feature[data-name="color"]')
    unseen = color.locator("svg.categories g.unseen")
    assert unseen.count() == 1
    assert unseen.get_attribute("data-category") == "<b>violet</b>"
    assert unseen.locator("rect.cur.unseen").count() == 1
    assert "<b>violet</b>" in color.locator(".unseen-list").inner_text()
    seen = color.locator("svg.categories g:not(.unseen)").evaluate_all(
        "gs => gs.map(g => g.dataset.category)"
    )
    assert sorted(seen) == ["blue", "green", "red"]
    box = x.locator("svg.histogram").bounding_box()
    assert box is not None and box["width"] > 100 and box["height"] > 100


def test_filter_box_and_drifted_only_filter_the_sections(
    small_report: Path, open_page: Any
) -> None:
    page = open_page(small_report).page
    page.fill("#feature-filter", "COL")
    assert visible_names(page) == ["color"]
    assert page.locator("#shown-count").inner_text() == "1 of 4 shown"
    page.fill("#feature-filter", "")
    assert len(visible_names(page)) == 4
    page.check("#drifted-only")
    assert sorted(visible_names(page)) == ["color", "x"]
    page.fill("#feature-filter", "zzz")
    assert visible_names(page) == []
    assert page.locator("#shown-count").inner_text() == "0 of 4 shown"


def test_features_are_sorted_drifted_first_then_by_effect(
    small_report: Path, open_page: Any
) -> None:
    page = open_page(small_report).page
    rows = page.eval_on_selector_all(
        "details.feature",
        "els => els.map(e => [e.dataset.drifted, "
        "parseFloat(e.querySelector('[data-key=effect]').textContent)])",
    )
    drifted = [d == "true" for d, _ in rows]
    assert drifted == sorted(drifted, reverse=True)
    for flag in (True, False):
        effects = [e for d, e in rows if (d == "true") == flag]
        assert effects == sorted(effects, reverse=True)


def test_a_thousand_features_open_in_under_five_seconds(tmp_path: Path, open_page: Any) -> None:
    rng = np.random.default_rng(0)
    n, cols = 500, 1000
    ref = {f"f{i:04d}": rng.normal(size=n) for i in range(cols - 200)}
    cur = {f"f{i:04d}": rng.normal(0.2 * (i % 3), 1, size=n) for i in range(cols - 200)}
    for i in range(cols - 200, cols):
        ref[f"c{i:04d}"] = rng.choice(list("abcdefgh"), size=n)
        cur[f"c{i:04d}"] = rng.choice(list("abcdefghij"), size=n)
    pd.DataFrame(ref).to_parquet(tmp_path / "ref.parquet")
    pd.DataFrame(cur).to_parquet(tmp_path / "cur.parquet")
    out = tmp_path / "wide.html"
    code, _, err = run_cli(
        "report", str(tmp_path / "ref.parquet"), str(tmp_path / "cur.parquet"), "-o", str(out)
    )
    assert code == 0, err
    started = time.perf_counter()
    opened = open_page(out)
    elapsed = time.perf_counter() - started
    page = opened.page
    timing = page.evaluate(
        "() => { const t = performance.getEntriesByType('navigation')[0];"
        " return [t.domContentLoadedEventEnd, t.loadEventEnd]; }"
    )
    assert opened.errors == []
    assert page.locator("details.feature").count() == cols
    assert elapsed < 5.0, f"the page took {elapsed:.2f}s to load"
    assert max(timing) < 5000, f"DOM ready / load at {timing} ms"
    page.fill("#feature-filter", "c09")
    assert len(visible_names(page)) == 100
    save_screenshot(page, "report-1000-features.png")


def test_served_model_report_opens_with_its_plots(
    tmp_path: Path, open_page: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.report.test_store_report import seed

    for key in [k for k in os.environ if k.startswith("MLWATCH_")]:
        monkeypatch.delenv(key)
    seed(tmp_path / "data")
    out = tmp_path / "served.html"
    code, _, err = run_cli(
        "report",
        "--model",
        "churn",
        "--data-dir",
        str(tmp_path / "data"),
        "--since",
        "2026-01-01T00:00:00Z",
        "--until",
        "2026-01-01T03:00:00Z",
        "-o",
        str(out),
    )
    assert code == 0, err
    opened = open_page(out)
    page = opened.page
    assert opened.errors == [] and opened.requests == [out.resolve().as_uri()]
    assert page.locator("figure.kpi svg path.line").count() >= 1
    assert page.locator("figure.kpi svg path.band").count() >= 1
    assert page.locator("figure.traffic svg rect.cur").count() >= 3
    assert page.locator("#versions-table tr").count() == 3
    assert "kpi:accuracy" in page.locator("#triggers-table").inner_text()
    assert page.locator("details.feature").count() == 2
    save_screenshot(page, "report-served.png")
