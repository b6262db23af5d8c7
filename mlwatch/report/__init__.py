"""The HTML monitoring report of ``mlwatch report``: computation apart from rendering.

:mod:`.model` holds the plain data a report shows (dataclasses, JSON-able);
:mod:`.drift` builds its drift part from the result of ``mlwatch drift`` and the prepared
columns, :mod:`.distributions` the histograms and category shares, :mod:`.served` the
served model's part from the embedded store. :mod:`.render` turns the model into one
self-contained HTML file (Jinja2 templates with autoescaping, inline style and script,
static SVG plots from :mod:`.svg`); nothing in it computes a statistic.
"""

from __future__ import annotations

from mlwatch.report.model import (
    DriftSection,
    FeatureSection,
    Report,
    ServedSection,
)

__all__ = ["DriftSection", "FeatureSection", "Report", "ServedSection"]
