"""The report's figures are those of ``mlwatch drift --format json`` on the same files,
in its embedded data and in its visible text; the page escapes what came from the data."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import pytest

from mlwatch.report.model import CategoryBar, CategoryShares
from mlwatch.report.render import embedded_json
from mlwatch.report.svg import category_svg, fmt
from tests.report.conftest import XSS, embedded, run_cli, write_pair

OPTIONS = [
    [],
    ["--method", "psi"],
    ["--correction", "bh", "--min-effect", "0.05"],
    ["--columns", "x,color", "--categorical", "color", "--alpha", "0.01"],
]


class Cells(HTMLParser):
    """``{feature name: {data-key: visible text}}`` of the feature sections."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: dict[str, dict[str, str]] = {}
        self.feature: str | None = None
        self.key: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "details" and "feature" in (a.get("class") or ""):
            self.feature = a["data-name"]
            self.cells[self.feature or ""] = {}
        elif tag == "td" and a.get("data-key") and self.feature is not None:
            self.key = a["data-key"]

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self.key = None

    def handle_data(self, data: str) -> None:
        if self.key is not None and self.feature is not None:
            cells = self.cells[self.feature]
            cells[self.key] = cells.get(self.key, "") + data


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: " ".join(o) or "defaults")
def test_figures_equal_the_drift_json(tmp_path: Path, options: list[str]) -> None:
    ref, cur = write_pair(tmp_path)
    code, out, err = run_cli("drift", str(ref), str(cur), "--format", "json", *options)
    assert code == 0, err
    expected = json.loads(out)
    html_path = tmp_path / "r.html"
    code, _, err = run_cli("report", str(ref), str(cur), "-o", str(html_path), *options)
    assert code == 0, err
    html = html_path.read_text(encoding="utf-8")
    drift = embedded(html)["drift"]
    by_name = {f["name"]: f["figures"] for f in drift["features"]}
    assert by_name == {f["name"]: f for f in expected["features"]}
    for key, value in expected.items():
        if key != "features":
            assert drift["summary"][key] == value, key
    parser = Cells()
    parser.feed(html)
    assert set(parser.cells) == set(by_name)
    for name, figures in by_name.items():
        shown = parser.cells[name]
        for key in ("score", "p_value", "threshold"):
            assert shown[key] == fmt(figures[key]), (name, key)
        assert shown["drifted"] == ("yes" if figures["drifted"] else "no")
        assert shown["method"].startswith(figures["method"] + " ")


def test_the_summary_shows_the_dataset_decision(tmp_path: Path) -> None:
    ref, cur = write_pair(tmp_path)
    _, out, _ = run_cli("drift", str(ref), str(cur), "--format", "json")
    expected = json.loads(out)
    html_path = tmp_path / "r.html"
    run_cli("report", str(ref), str(cur), "-o", str(html_path))
    html = html_path.read_text(encoding="utf-8")
    assert f'<td data-key="drift_share">{fmt(expected["drift_share"])}</td>' in html
    assert f'<td data-key="n_drifted">{expected["n_drifted"]}</td>' in html
    top = embedded(html)["drift"]["summary"]["top_changed"]
    assert top[0] in {"x", "color"}  # the two features given a drift


def test_markup_in_names_and_categories_is_escaped(tmp_path: Path) -> None:
    ref, cur = write_pair(tmp_path)
    html_path = tmp_path / "r.html"
    run_cli("report", str(ref), str(cur), "-o", str(html_path))
    html = html_path.read_text(encoding="utf-8")
    assert XSS not in html
    assert "<b>violet</b>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert html.count("<script") == 2  # the data block and the filter script only


def test_embedded_json_cannot_close_its_script_element() -> None:
    text = str(embedded_json({"name": "</script><script>alert(1)</script>", "a&b": 1}))
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == {"name": "</script><script>alert(1)</script>", "a&b": 1}


def test_category_plot_escapes_category_names() -> None:
    shares = CategoryShares([CategoryBar('"><img src=x onerror=alert(1)>', 0.0, 1.0, True)])
    svg = str(category_svg(shares))
    assert "<img" not in svg
    assert "&#34;&gt;&lt;img" in svg
